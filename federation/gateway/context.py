"""The per-request context resolvers share: the runtime and what one request loads once.

Created for each request and dropped after it (the way saleor's dataloaders live on the
request): nothing here is shared between threads or users, so a memoised value can never
leak one request's view into another's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from federation.disclosure.budget import BudgetStatus
from federation.disclosure.roles import ANONYMOUS, Identity
from federation.errors import NotFound
from federation.requests.alerts import SavedSearchService
from federation.requests.service import AccessRequestService
from federation.runtime import Runtime
from federation.search.audit import AuditLog, NoAuditLog
from federation.search.backend import GenerationInfo
from federation.search.service import SearchService
from federation.settings import BiobankSource, Network
from federation.state.access_requests import AccessRequestRecords
from federation.sync.admin import SyncAdministration


@dataclass
class GatewayContext:
    """What resolvers of one request reach: the services, and loaders memoised per request."""

    runtime: Runtime
    # Who is asking, as authenticated by the endpoint (federation/gateway/auth.py).
    identity: Identity = ANONYMOUS
    # The client's address as the rate limit and the audit log see it (limits.client_address).
    client_ip: str | None = None
    # The app's audit log; a search is not answered when it cannot be recorded here.
    audit: AuditLog | None = None
    # The language of server-written texts (reasons, explanations, notes, errors): from
    # Accept-Language, or a `language` argument (federation/i18n).
    language: str = "en"
    # What is left of the privacy budgets this request's searches spent from, by budget.
    budget: dict[tuple[str, str, str], BudgetStatus] = field(default_factory=dict, init=False)
    _network: Network | None = field(default=None, init=False)
    _generations: dict[str, GenerationInfo] | None = field(default=None, init=False)
    _search: SearchService | None = field(default=None, init=False)

    @property
    def search(self) -> SearchService:
        """The search service, recording each search in the audit log with this client's address.

        Without an audit log it answers no search (fail-closed), whatever the runtime does.
        """
        if self._search is None:
            sink = self.audit if self.audit is not None else NoAuditLog()
            self._search = self.runtime.search.audited(sink, self.client_ip)
        return self._search

    def note_budget(self, statuses: tuple[BudgetStatus, ...]) -> None:
        """Remember the budgets a search spent from, for the response's `extensions`."""
        for status in statuses:
            self.budget[(status.role, status.scope, status.period)] = status

    @property
    def sync_admin(self) -> SyncAdministration:
        """Sync history, quarantine and sync requests, with their permission checks."""
        return SyncAdministration(
            self.runtime.state, self.network, lambda: self.runtime.backend.published()
        )

    @property
    def access_requests(self) -> AccessRequestService:
        """Access requests, with their permission checks; consent checks through this
        request's audited search service. The store is opened on first use, after the
        service has checked who is asking."""
        runtime = self.runtime

        def records() -> AccessRequestRecords:
            runtime.deliverer.start()  # idempotent: one deliverer per process
            return runtime.state_store.access_requests

        return AccessRequestService(records, self.search, self.network, runtime.requests_settings)

    @property
    def saved_searches(self) -> SavedSearchService:
        """Saved searches and alerts; the first check of a new one is this request's
        audited search."""
        runtime = self.runtime
        runtime.deliverer.start()  # it checks saved searches after each publish
        return SavedSearchService(
            runtime.state_store.saved_searches,
            self.search,
            lambda: self.generations(),
            runtime.requests_settings,
        )

    def network(self) -> Network:
        """The network file as of this request (read once, even if edited meanwhile)."""
        if self._network is None:
            self._network = self.runtime.network()
        return self._network

    def biobank(self, biobank_id: str) -> BiobankSource | None:
        """A biobank of the network, or None when the network file does not list it."""
        for source in self.network().biobanks:
            if source.biobank.id == biobank_id:
                return source
        return None

    def require_biobank(self, biobank_id: str, argument: str) -> BiobankSource:
        """A biobank named by an argument; NOT_FOUND naming the argument otherwise."""
        source = self.biobank(biobank_id)
        if source is None:
            raise NotFound(argument, biobank_id, "biobank in this network with id")
        return source

    def generations(self) -> dict[str, GenerationInfo]:
        """The generation each biobank serves, with its published metadata."""
        if self._generations is None:
            self._generations = self.runtime.backend.published()
        return self._generations
