"""One asker's view of a search: their rule per biobank, the keys noise is drawn with, and
the release of each figure (counted rows and what collections declare)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from federation.disclosure.policy import (
    DisclosurePolicy,
    Granularity,
    RoleRule,
)
from federation.disclosure.release import (
    CountedSet,
    FigureKeys,
    coarse_release,
    declared,
    noise_key,
    release_pair,
)
from federation.disclosure.roles import Identity
from federation.search.backend import Fingerprints
from federation.search.declared import (
    DeclaredCell,
)
from federation.search.query import (
    Cell,
)
from federation.search.result import (
    Count,
    Declared,
)

PolicyLookup = Callable[[str], DisclosurePolicy]


@dataclass(frozen=True)
class Asker:
    """The asking identity's rule for each biobank, and the keys its noise is drawn with."""

    identity: Identity
    policies: PolicyLookup
    secret: str
    generations: Mapping[str, str]
    # Row sets (charge ids) the privacy budget could not pay for, and per biobank the
    # coarser release they fall back to and when the budget refills.
    refused: frozenset[str] = frozenset()
    fallbacks: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # One answer releases hundreds of facet cells: look each biobank's rule up once, and
    # encode each row set once for both its noise key and its ledger charge.
    _rules: dict[str, RoleRule] = field(default_factory=dict, compare=False)
    _keys: dict[tuple[str, Cell, str | None], tuple[FigureKeys, FigureKeys]] = field(
        default_factory=dict, compare=False
    )

    def keys(self, biobank_id: str, cell: Cell, rule: RoleRule) -> tuple[FigureKeys, FigureKeys]:
        """The noise keys and charge ids of a cell's donor and sample figures, computed once
        per answer (the same cell comes back as a row, a facet bucket, a consent split)."""
        asked = (biobank_id, cell, self.generations.get(biobank_id))
        found = self._keys.get(asked)
        if found is None:
            donors, samples = self.counted(biobank_id, cell)
            found = (
                FigureKeys.of(self.secret, donors, rule),
                FigureKeys.of(self.secret, samples, rule),
            )
            self._keys[asked] = found
        return found

    def rule(self, biobank_id: str) -> RoleRule:
        rule = self._rules.get(biobank_id)
        if rule is None:
            rule = self.policies(biobank_id).rule(self.identity.role_for(biobank_id))
            self._rules[biobank_id] = rule
        return rule

    def noised(self, biobank_id: str) -> bool:
        """Whether this asker's counts of the biobank carry noise (and need fingerprints)."""
        rule = self.rule(biobank_id)
        return rule.noise > 0 and rule.granularity.allows(Granularity.COUNT)

    def counted(self, biobank_id: str, cell: Cell) -> tuple[CountedSet, CountedSet]:
        """The donor and sample row sets of a cell, as noise and the ledger key them: the
        sample figure by its donors' fingerprint with the sample count (search/fingerprint)."""
        generation = self.generations.get(biobank_id)
        return (
            CountedSet(biobank_id, "donors", cell.donors, cell.donor_fp, generation),
            CountedSet(biobank_id, "samples", cell.samples, cell.donor_fp, generation),
        )

    def charges(self, biobank_id: str, cell: Cell) -> list[str]:
        """Charge ids of the cell's figures that would be released with fresh noise."""
        rule = self.rule(biobank_id)
        if rule.noise <= 0 or cell.donors < rule.min_count:
            return []  # exact, rounded, zero or withheld: no noise, nothing to pay
        if not rule.granularity.allows(Granularity.COUNT):
            return []
        donors, samples = self.keys(biobank_id, cell, rule)
        return [donors.charge, samples.charge]

    def release(self, biobank_id: str, cell: Cell) -> tuple[Count, Count]:
        rule = self.rule(biobank_id)
        # The keys only seed noise; without noise their HMACs would be wasted work.
        if rule.noise > 0:
            if self.refused and self.refused.intersection(self.charges(biobank_id, cell)):
                fallback, refills = self.fallbacks[biobank_id]
                return (
                    coarse_release(cell.donors, rule, fallback, refills),
                    coarse_release(cell.samples, rule, fallback, refills),
                )
            donors, samples = self.keys(biobank_id, cell, rule)
            keys = (donors.noise, samples.noise)
        else:
            keys = NO_NOISE
        return release_pair(cell.donors, cell.samples, rule, keys)

    def release_declared(self, biobank_id: str, found: DeclaredCell) -> Declared:
        """What collections declare, under the same rule as counted rows (threshold,
        rounding, noise keyed on the matched collections), marked DECLARED. No budget is
        spent: the figures are the collections' own published declarations."""
        rule = self.rule(biobank_id)
        keys = NO_NOISE
        if rule.noise > 0:
            generation = self.generations.get(biobank_id)
            keys = tuple(  # type: ignore[assignment]
                noise_key(
                    self.secret,
                    CountedSet(
                        biobank_id, f"declared_{kind}", value, found.fingerprint, generation
                    ),
                    rule,
                )
                for kind, value in (("donors", found.donors), ("samples", found.samples))
            )
        donors, samples = release_pair(found.donors, found.samples, rule, keys)
        n = len(found.collections)
        return Declared(
            declared(donors, n, found.donors_unknown),
            declared(samples, n, found.samples_unknown),
            found.collections,
        )


NO_NOISE = (b"", b"")


def keyed_biobanks(asker: Asker, biobanks: Iterable[str]) -> Fingerprints:
    """The biobanks whose cells need fingerprints for `asker` (those noising its figures):
    every one (True), none (False), or the set of them."""
    listed = frozenset(biobanks)
    noised = frozenset(bb for bb in listed if asker.noised(bb))
    if not noised:
        return False
    return True if noised == listed else noised
