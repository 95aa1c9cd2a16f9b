"""Releasing counts under a role's rule: threshold, noise fixed per row set, rounding.

Noise is Laplace-distributed with the rule's scale, drawn from an HMAC of the server
secret and the counted row set (`CountedSet`: biobank, kind of figure, count, the exact
fingerprint of the counted donors, the published generation) and the rule. Not the words of the
question, the facet or the purpose: every question, alias, facet bucket, consent split or
total that counts the same rows releases the same value, so rewording and averaging learn
nothing. Totals are sums of released figures only, so no total recovers a withheld cell.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable
from dataclasses import dataclass

from federation.disclosure.count import Count, Precision
from federation.disclosure.policy import Granularity, RoleRule
from federation.i18n import Message

# The order in which imprecision dominates when released cells are summed: a total that
# leaves withheld answers out can be far below the truth, which matters more than noise.
_DOMINANCE = (Precision.LOWER_BOUND, Precision.NOISED, Precision.ROUNDED)


@dataclass(frozen=True)
class CountedSet:
    """What a released figure counts: the rows, identified by their count and the exact
    fingerprint of their donors (a sample figure's too: search/fingerprint.py)."""

    biobank_id: str
    kind: str  # "donors" | "samples"
    count: int
    fingerprint: int
    generation: str | None


def rule_words(rule: RoleRule) -> str:
    """The parts of a rule that change a released value, in a stable form."""
    return f"{rule.granularity.value}/{rule.min_count}/{rule.rounding}/{rule.noise!r}"


def _row_set_message(counted: CountedSet, rule: RoleRule) -> bytes:
    # Each part length-prefixed, so no two row sets encode alike (a quarter of the cost
    # of json.dumps, which was a tenth of a noised search's time).
    parts = (
        counted.biobank_id,
        counted.kind,
        str(counted.count),
        str(counted.fingerprint),
        "-" if counted.generation is None else "=" + counted.generation,
        rule_words(rule),
    )
    return "".join(f"{len(p)}:{p}" for p in parts).encode()


def noise_key(secret: str, counted: CountedSet, rule: RoleRule) -> bytes:
    """The key a figure's noise is drawn from: a function of the row set, never the words."""
    return hmac.new(secret.encode(), _row_set_message(counted, rule), hashlib.sha256).digest()


def charge_id(counted: CountedSet, rule: RoleRule) -> str:
    """The ledger's id of a released figure: the row set and the rule, as the noise key has
    them but without the secret (it never leaves the server either)."""
    return hashlib.sha256(_row_set_message(counted, rule)).hexdigest()


@dataclass(frozen=True)
class FigureKeys:
    """A figure's noise key and ledger charge id, from one encoding of its row set."""

    noise: bytes
    charge: str

    @classmethod
    def of(cls, secret: str, counted: CountedSet, rule: RoleRule) -> FigureKeys:
        """Both keys of a figure (as `noise_key` and `charge_id` give them)."""
        message = _row_set_message(counted, rule)
        return cls(
            hmac.new(secret.encode(), message, hashlib.sha256).digest(),
            hashlib.sha256(message).hexdigest(),
        )


def laplace(key: bytes, scale: float) -> int:
    """A Laplace(0, scale) draw, rounded, determined entirely by `key`."""
    # 53 bits so that u is exact in a float and strictly inside (0, 1): log never sees 0.
    u = ((int.from_bytes(key[:8], "big") >> 11) + 0.5) / 2**53
    draw = scale * math.log(2 * u) if u < 0.5 else -scale * math.log(2 * (1 - u))
    return round(draw)


def release(true: int, rule: RoleRule, key: bytes) -> Count:
    """One count as the rule lets it be seen."""
    if rule.granularity is Granularity.NONE:
        return Count.explained(None, Precision.HIDDEN, (Message.of("count.hidden"),))
    if rule.granularity is Granularity.BOOLEAN:
        return Count.explained(
            None, Precision.BOOLEAN, (Message.of("count.boolean"),), exists=true > 0
        )
    if true == 0:
        return Count(0, Precision.EXACT)
    if true < rule.min_count:
        below = Message.of(
            "count.below_threshold", largest_withheld=rule.min_count - 1, min_count=rule.min_count
        )
        return Count.explained(None, Precision.BELOW_THRESHOLD, (below,))
    value, precision, reasons = true, Precision.EXACT, []
    if rule.noise > 0:
        # Never below the threshold: a noised small number must not look suppressible.
        value = max(rule.min_count, value + laplace(key, rule.noise))
        precision = Precision.NOISED
        reasons.append(Message.of("count.noised", scale=rule.noise))
    if rule.rounding > 1:
        step = rule.rounding
        # Rounding must not carry a count into the withheld range 1..k-1 either: the
        # smallest multiple of the step that is at least k is the floor.
        value = max(step * round(value / step), step * math.ceil(rule.min_count / step))
        precision = Precision.NOISED if precision is Precision.NOISED else Precision.ROUNDED
        reasons.append(Message.of("count.rounded", step=rule.rounding))
    return Count.explained(value, precision, tuple(reasons))


def coarse_release(true: int, rule: RoleRule, fallback: str, refills: str) -> Count:
    """A figure the privacy budget cannot pay for, released without noise as `fallback`
    says: "threshold_only" tells 0, below k, or at least k; "boolean" only whether any."""
    spent = f"your privacy budget for this biobank is spent until {refills}"
    if true == 0 and fallback == "threshold_only":
        return Count(0, Precision.EXACT)
    if true < rule.min_count and fallback == "threshold_only":
        return release(true, rule, b"")
    if fallback == "threshold_only":
        return Count(
            None, Precision.BUDGET_SPENT, f"at least {rule.min_count}; {spent}", exists=True
        )
    return Count(None, Precision.BUDGET_SPENT, f"{spent}; only whether there are any", true > 0)


def release_pair(
    donors: int, samples: int, rule: RoleRule, keys: tuple[bytes, bytes]
) -> tuple[Count, Count]:
    """Donor and sample counts of one cell; samples are withheld whenever donors are,
    since many samples of one donor would otherwise reveal that donor."""
    released_donors = release(donors, rule, keys[0])
    if released_donors.precision is Precision.BELOW_THRESHOLD:
        return released_donors, Count.explained(
            None, Precision.BELOW_THRESHOLD, (Message.of("count.withheld_with_donors"),)
        )
    return released_donors, release(samples, rule, keys[1])


def total(cells: Iterable[Count]) -> Count:
    """Sum released cells; say how imprecise the sum is and what it leaves out."""
    value, withheld, kinds, exists = 0, 0, set(), False
    numeric = False
    for cell in cells:
        if cell.value is not None:
            value += cell.value
            numeric = True
            if cell.precision is not Precision.EXACT:
                kinds.add(cell.precision)
        else:
            withheld += 1
            exists = exists or bool(cell.exists) or cell.precision is Precision.BELOW_THRESHOLD
    if not numeric and withheld:
        return Count.explained(
            None,
            Precision.BOOLEAN if exists else Precision.HIDDEN,
            (Message.of("total.all_withheld", withheld=withheld),),
            exists=exists,
        )
    reasons = []
    if withheld:
        kinds.add(Precision.LOWER_BOUND)
        reasons.append(Message.of("total.leaves_out", withheld=withheld))
    if Precision.NOISED in kinds:
        reasons.append(Message.of("total.includes_noised"))
    if Precision.ROUNDED in kinds:
        reasons.append(Message.of("total.includes_rounded"))
    precision = next((p for p in _DOMINANCE if p in kinds), Precision.EXACT)
    summed = (Message.of("total.sum"), *reasons) if reasons else ()
    return Count.explained(value, precision, summed)


def declared(count: Count, collections: int, undeclared: int) -> Count:
    """A count released from what `collections` collections declare, marked as such.

    The policy's rule has already been applied (threshold, rounding, noise): a withheld
    figure stays withheld and keeps its precision, with the declared reason added.
    `undeclared` collections matched but declare no such number (counted as none).
    """
    reasons = [Message.of("count.declared", collections=collections)]
    if undeclared:
        reasons.append(Message.of("count.declared_unknown", undeclared=undeclared))
    if count.value is None:
        return Count.explained(None, count.precision, (*count.messages, *reasons), count.exists)
    return Count.explained(count.value, Precision.DECLARED, (*reasons, *count.messages))


def declared_total(cells: Iterable[Count]) -> Count | None:
    """The network sum of declared counts, kept apart from the sample-level total; None
    when no collection-level biobank matched."""
    parts = list(cells)
    if not parts:
        return None
    summed = total(parts)
    reasons = (Message.of("total.declared"), *summed.messages)
    if summed.value is None:
        return Count.explained(None, summed.precision, reasons, summed.exists)
    return Count.explained(summed.value, Precision.DECLARED, reasons)
