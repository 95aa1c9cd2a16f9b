"""Saved searches and alerts: a signed-in researcher saves a question; after each publish
the question is asked again, as that researcher, and new matching samples at a biobank
become one alert (in the API and by e-mail).

The check is a fresh search through the normal search service: the owner's role toward
each biobank, its release rules, the privacy budget, the audit log. An alert states only
what that search released, so it never tells more than the researcher could see by
searching; a count the policy withholds stays withheld, and an increase hidden below a
threshold raises no alert. Released figures are compared, never true ones: "new samples"
means the released sample count went up (from nothing, or from withheld to a number, or
from one number to a larger one).

The identity an alert is computed as is the one the owner had when saving (their
memberships then); deleting and saving again takes their current one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from federation.consent import ResearchPurpose
from federation.disclosure.count import Count
from federation.disclosure.permissions import require_signed_in
from federation.disclosure.roles import Identity
from federation.errors import BadInput, NotFound, check_range, check_text
from federation.i18n import LANGUAGES
from federation.requests.config import RequestsSettings
from federation.requests.notices import EMAIL
from federation.search.backend import GenerationInfo
from federation.search.query import MAX_PAGE_SIZE, SampleQuery
from federation.search.service import SearchService
from federation.state.access_requests import Notification
from federation.state.saved_searches import Alert, SavedSearch, SavedSearches

log = logging.getLogger(__name__)

MAX_NAME = 200
MAX_SAVED_PER_OWNER = 100
DEFAULT_ALERTS = 20
SEARCH_ID_BYTES = 8


def _released(count: Count) -> dict[str, Any]:
    return {"value": count.value, "precision": count.precision.value, "exists": count.exists}


def _more(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether a released sample count says there are more than before."""
    if new.get("value") is None:
        # Withheld (or only presence told): more only when presence is new.
        return new.get("exists") is True and (old is None or old.get("exists") is False)
    if old is None:
        return int(new["value"]) > 0
    if old.get("value") is None:
        # From withheld below a threshold (or presence only) to a released number.
        return int(new["value"]) > 0 and old.get("exists") is not False
    return int(new["value"]) > int(old["value"])


def identity_record(identity: Identity) -> dict[str, Any]:
    """What a saved search keeps of its owner's identity."""
    return {
        "subject": identity.subject,
        "via": identity.via,
        "operator": identity.operator,
        "admin_of": sorted(identity.admin_of),
        "approved_for": sorted(identity.approved_for),
    }


def identity_of(record: Mapping[str, Any]) -> Identity:
    """The identity a saved search's checks run as."""
    return Identity(
        subject=str(record["subject"]),
        authenticated=True,
        operator=bool(record["operator"]),
        admin_of=frozenset(record["admin_of"]),
        approved_for=frozenset(record["approved_for"]),
        via=str(record["via"]),
    )


@dataclass(frozen=True)
class Checked:
    """What one check found: per biobank the generation and the released figures."""

    generations: dict[str, str]
    baseline: dict[str, Any]


class SavedSearchService:
    """Saving, listing and deleting searches; checking them after a publish."""

    def __init__(
        self,
        store: SavedSearches,
        search: SearchService,
        published: Callable[[], Mapping[str, GenerationInfo]],
        settings: RequestsSettings,
    ) -> None:
        self.store = store
        self.search = search
        self.published = published
        self.settings = settings

    def _owner(self, identity: Identity) -> str:
        return f"{identity.via}:{identity.subject}"

    def _ask(self, saved: SavedSearch, identity: Identity) -> Checked:
        purpose = None
        if saved.purpose is not None:
            purpose = ResearchPurpose.parse(saved.purpose)
        result = self.search.search(
            SampleQuery.parse(saved.query), identity=identity, purpose=purpose, facets=()
        )
        baseline = {
            row.biobank_id: {"donors": _released(row.donors), "samples": _released(row.samples)}
            for row in result.by_biobank
        }
        generations = {b: info.generation for b, info in sorted(self.published().items())}
        return Checked(generations, baseline)

    def save(
        self,
        identity: Identity,
        name: str,
        query: SampleQuery,
        purpose: ResearchPurpose | None = None,
        language: str = "en",
    ) -> SavedSearch:
        """Save a question; its first check sets what later alerts compare with."""
        require_signed_in(identity, "saved searches")
        check_text("name", name)
        if not name.strip() or len(name) > MAX_NAME:
            raise BadInput("name", name[:40], f"must be 1 to {MAX_NAME} characters")
        if language not in LANGUAGES:
            raise BadInput("language", language, f"not one of {', '.join(LANGUAGES)}")
        owner = self._owner(identity)
        if len(self.store.of_owner(owner)) >= MAX_SAVED_PER_OWNER:
            raise BadInput("name", name, f"at most {MAX_SAVED_PER_OWNER} saved searches each")
        draft = SavedSearch(
            id=f"ss-{secrets.token_hex(SEARCH_ID_BYTES)}",
            owner=owner,
            owner_email=identity.subject if "@" in identity.subject else None,
            identity=identity_record(identity),
            name=name.strip(),
            query=query.normalised(),
            purpose=None if purpose is None else purpose.normalised(),
            language=language,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        )
        checked = self._ask(draft, identity)
        saved = dataclasses.replace(
            draft, generations=checked.generations, baseline=checked.baseline
        )
        self.store.save(saved)
        return saved

    def mine(self, identity: Identity) -> list[SavedSearch]:
        """The caller's saved searches."""
        require_signed_in(identity, "saved searches")
        return self.store.of_owner(self._owner(identity))

    def delete(self, identity: Identity, search_id: str) -> None:
        """Delete one of the caller's saved searches (NOT_FOUND for anyone else's)."""
        require_signed_in(identity, "saved searches")
        if not self.store.delete(self._owner(identity), search_id):
            raise NotFound("id", search_id, "saved search of yours with id")

    def alerts(self, identity: Identity, first: int = DEFAULT_ALERTS) -> list[Alert]:
        """The caller's most recent alerts."""
        require_signed_in(identity, "saved search alerts")
        check_range("first", first, 1, MAX_PAGE_SIZE)
        return self.store.alerts(self._owner(identity), first)

    # --- after a publish -----------------------------------------------------------------

    def check_all(self) -> int:
        """Check every saved search whose biobanks published since its last check; the
        number of alerts recorded."""
        searches = self.store.all()
        if not searches:
            return 0  # nothing to check: not even the backend is asked
        current = {b: info.generation for b, info in self.published().items()}
        recorded = 0
        for saved in searches:
            if saved.generations == current:
                continue
            try:
                recorded += self.check(saved)
            except Exception:  # one broken search must not stop the others' alerts
                log.exception("saved search %s could not be checked", saved.id)
        return recorded

    def check(self, saved: SavedSearch) -> int:
        """Ask one saved search again; record an alert per biobank with new samples."""
        checked = self._ask(saved, identity_of(saved.identity))
        at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        alerts = []
        for biobank_id, released in sorted(checked.baseline.items()):
            generation = checked.generations.get(biobank_id, "")
            if generation == saved.generations.get(biobank_id):
                continue  # not published since: nothing new there
            before = saved.baseline.get(biobank_id)
            if _more(released["samples"], before["samples"] if before else None):
                alerts.append(Alert(saved.id, saved.owner, at, biobank_id, generation, released))
        notes = [self._mail(saved, alert) for alert in alerts if saved.owner_email]
        if self.settings.email.mode == "off":
            notes = []
        if not self.store.advance(saved, (checked.generations, checked.baseline), alerts, notes):
            return 0  # another process checked this publish first
        return len(alerts)

    def _mail(self, saved: SavedSearch, alert: Alert) -> Notification:
        samples = alert.released["samples"]
        figure = samples["value"] if samples["value"] is not None else samples["precision"]
        body = (
            f"Your saved search {saved.name!r} has new matching samples at {alert.biobank_id} "
            f"(samples now: {figure}, as your role may see them).\n"
            f"Search again at {self.settings.public_url}/\n"
        )
        assert saved.owner_email is not None
        return Notification(
            EMAIL, saved.owner_email, f"[biofed] new samples for {saved.name!r}", body
        )
