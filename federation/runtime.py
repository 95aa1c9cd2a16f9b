"""Wiring from settings to the parts: the one place that picks the backend and stores."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from federation.disclosure.ledger import BudgetLedger
from federation.requests.alerts import SavedSearchService
from federation.requests.config import RequestsSettings
from federation.requests.deliver import Deliverer
from federation.search.audit import AuditLog
from federation.search.backend import SearchBackend
from federation.search.service import SearchService
from federation.search.warm import PublishedAnswers
from federation.settings import Network, Settings, SettingsError, load_network
from federation.state import StateStore, open_state_store
from federation.sync.state import SyncState


@dataclass
class Runtime:
    """The backend, sync state and network a process works with, built lazily."""

    settings: Settings
    # Every search through `search` is written to the audit log; only measurements of the
    # service itself (bench/) switch this off.
    audited: bool = True
    _network: Network | None = field(default=None, init=False)

    @cached_property
    def backend(self) -> SearchBackend:
        if self.settings.backend == "embedded":
            from federation.search.embedded import EmbeddedBackend

            return EmbeddedBackend(
                self.settings.index_dir,
                threads=self.settings.embedded_reader_threads,
                answer_cache=self.settings.embedded_answer_cache,
            )
        if self.settings.backend in ("elasticsearch", "opensearch"):
            from federation.search.engine import EngineBackend

            return EngineBackend.from_settings(self.settings)
        raise SettingsError(f"backend {self.settings.backend!r} is not available in this build yet")

    @cached_property
    def store(self) -> StateStore:
        """The state store the settings name: `state_url`, else state.db in the data folder."""
        return open_state_store(self.settings.state_url, self.settings.data_dir)

    @cached_property
    def state(self) -> SyncState:
        return SyncState(self.store)

    @cached_property
    def ledger(self) -> BudgetLedger:
        """The privacy ledger, shared by every process and host (docs/privacy.md)."""
        return self.store.ledger

    @cached_property
    def audit(self) -> AuditLog:
        """The audit log of answered searches, in the state store."""
        return AuditLog(self.store.audit)

    @cached_property
    def requests_settings(self) -> RequestsSettings:
        """The `requests` section: e-mail, webhooks, the Negotiator (docs/requests.md)."""
        return RequestsSettings.parse(self.settings.requests, self.settings.webhook_secret)

    @cached_property
    def saved_searches(self) -> SavedSearchService:
        """Saved searches, checked again after each publish (docs/requests.md)."""
        return SavedSearchService(
            self.store.saved_searches,
            self.search,
            lambda: self.backend.published(),
            self.requests_settings,
        )

    @cached_property
    def deliverer(self) -> Deliverer:
        """This process's deliverer of the notification outbox, which also checks saved
        searches after a publish (started by the gateway)."""
        return Deliverer(
            self.store.outbox,
            self.requests_settings,
            tasks=(self.saved_searches.check_all,),
        )

    @cached_property
    def search(self) -> SearchService:
        service = SearchService(
            self.backend,
            policies=lambda biobank_id: self.network().policy(biobank_id),
            secret=self.secret(),
            record_biobanks=lambda: [s.biobank.id for s in self.network().biobanks],
        )
        service.budgets = lambda: self.network().budgets
        service.countries = lambda: {
            s.biobank.id: s.biobank.country for s in self.network().biobanks
        }
        service.ledger = self.ledger
        service.live_biobanks = self.live_biobanks
        # Published generations and warm answers read once per publish (search/warm.py).
        service.source = PublishedAnswers(self.backend, self.store.publications)
        return service.audited(self.audit) if self.audited else service

    def live_biobanks(self) -> set[str]:
        """Biobanks of the network that some sync published: every answer must cover them."""
        network = {source.biobank.id for source in self.network().biobanks}
        return self.state.published_biobanks() & network

    def secret(self) -> str:
        """The server secret noise is keyed with: from the environment, else one kept on disk.

        It must be the same in every worker and across restarts, or repeating a query would
        draw fresh noise and averaging could recover the true count.
        """
        if self.settings.secret_key:
            return self.settings.secret_key
        path = Path(self.settings.data_dir) / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".secret.{os.getpid()}")
            tmp.write_text(secrets.token_hex(32))
            tmp.chmod(0o600)
            try:
                # Atomic, and fails when another worker won the race: theirs is kept.
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                tmp.unlink()
        return path.read_text().strip()

    def network(self) -> Network:
        """The network file, re-read when it changes on disk (admins edit it)."""
        path = self.settings.network
        if path is None:
            raise SettingsError("no network file configured (setting `network`)")
        if self._network is None or self._network_stamp != _stamp(path):
            # One broken entry must not stop the other biobanks from syncing or serving.
            self._network = load_network(path, skip_invalid=True)
            self._network_stamp = _stamp(path)
        return self._network

    _network_stamp: int = field(default=-1, init=False)


def _stamp(path: object) -> int:
    from pathlib import Path

    try:
        return Path(str(path)).stat().st_mtime_ns
    except FileNotFoundError:
        return -1
