"""Disclosure policies: per biobank and role, what may be seen and how counts are released."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from marshmallow import ValidationError, fields

from federation.disclosure.roles import Role
from federation.errors import FederationError
from federation.i18n import Message, render_all
from federation.model.config import SectionSchema, WholeNumber, section_errors

DEFAULT_MIN_COUNT = 5
MAX_NOISE_SCALE = 100.0


class Granularity(enum.Enum):
    """How much a role may learn about a biobank's matches, from least to most."""

    NONE = "none"  # the biobank does not answer this role at all
    BOOLEAN = "boolean"  # whether there are matches, no number
    COUNT = "count"  # released counts
    RECORD = "record"  # counts and sample records

    def allows(self, other: Granularity) -> bool:
        order = list(Granularity)
        return order.index(self) >= order.index(other)


class PolicyError(FederationError, ValueError):
    """A disclosure policy entry is invalid; names the role and the setting."""

    code = "INVALID_POLICY"


@dataclass(frozen=True)
class RoleRule:
    """How counts are released to one role: k, rounding and noise."""

    granularity: Granularity
    min_count: int = DEFAULT_MIN_COUNT  # counts 1..min_count-1 are not released as numbers
    rounding: int = 1  # released counts are multiples of this
    noise: float = 0.0  # scale of the fixed Laplace noise; 0 = none

    @property
    def exact(self) -> bool:
        return self.min_count <= 1 and self.rounding <= 1 and self.noise == 0


# A network-wide default that a biobank's policy overrides role by role. Conservative for
# the public, exact for those who already hold a data access agreement.
DEFAULT_RULES: dict[Role, RoleRule] = {
    Role.ANONYMOUS: RoleRule(Granularity.COUNT, min_count=10, rounding=10),
    Role.REGISTERED: RoleRule(Granularity.COUNT, min_count=5, rounding=1, noise=1.0),
    Role.APPROVED: RoleRule(Granularity.RECORD, min_count=1),
    Role.BIOBANK_ADMIN: RoleRule(Granularity.RECORD, min_count=1),
    Role.NETWORK_OPERATOR: RoleRule(Granularity.COUNT, min_count=1),
}


@dataclass(frozen=True)
class DisclosurePolicy:
    """One biobank's rules, per role."""

    rules: dict[Role, RoleRule] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def rule(self, role: Role) -> RoleRule:
        return self.rules.get(role, DEFAULT_RULES[role])

    @classmethod
    def parse(
        cls,
        raw: Mapping[str, Any] | None,
        base: DisclosurePolicy | None = None,
        where: str = "disclosure",
    ) -> DisclosurePolicy:
        """Read `{role: {granularity, min_count, rounding, noise}}`, over a base policy."""
        rules = dict((base or cls()).rules)
        for role_name, entry in (raw or {}).items():
            try:
                role = Role(role_name)
            except ValueError:
                known = ", ".join(r.value for r in Role)
                raise PolicyError(f"{where}: {role_name!r} is not a role ({known})") from None
            if not isinstance(entry, Mapping):
                raise PolicyError(f"{where}.{role_name} must be a mapping")
            rules[role] = _rule(entry, rules[role], f"{where}.{role_name}")
        # Biobank admins see their own data in full; nobody can configure that away from them.
        rules[Role.BIOBANK_ADMIN] = RoleRule(Granularity.RECORD, min_count=1)
        return cls(rules)


class _GranularityField(fields.Field):  # type: ignore[type-arg]
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Granularity:
        try:
            return Granularity(str(value))
        except ValueError:
            known = ", ".join(g.value for g in Granularity)
            raise ValidationError(f"{value!r} is not one of {known}") from None


class _NoiseField(fields.Field):  # type: ignore[type-arg]
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> float:
        if not isinstance(value, int | float) or not 0 <= float(value) <= MAX_NOISE_SCALE:
            raise ValidationError(f"{value!r} must be a number in 0..{MAX_NOISE_SCALE}")
        return float(value)


class _RoleRuleSchema(SectionSchema):
    """One role's entry: only the settings given override the base rule."""

    granularity = _GranularityField()
    min_count = WholeNumber(1, "must be an integer >= {low}")
    rounding = WholeNumber(1, "must be an integer >= {low}")
    noise = _NoiseField()


def _rule(entry: Mapping[str, Any], base: RoleRule, where: str) -> RoleRule:
    try:
        changes: dict[str, Any] = _RoleRuleSchema().load(entry)
    except ValidationError as err:
        raise PolicyError("; ".join(section_errors(err.messages, where))) from None
    return replace(base, **changes)


def explain_rule(rule: RoleRule) -> str:
    """The rule in a researcher's words (English), for the `access` of each biobank row."""
    return render_all(rule_messages(rule)) or ""


def rule_messages(rule: RoleRule) -> tuple[Message, ...]:
    """The rule as catalogue messages: what is withheld, noised, rounded; whether records."""
    if rule.granularity is Granularity.NONE:
        return (Message.of("access.none"),)
    if rule.granularity is Granularity.BOOLEAN:
        return (Message.of("access.boolean"),)
    parts = []
    if rule.min_count > 1:
        parts.append(Message.of("access.min_count", largest_withheld=rule.min_count - 1))
    if rule.noise > 0:
        parts.append(Message.of("access.noise", scale=rule.noise))
    if rule.rounding > 1:
        parts.append(Message.of("access.rounding", step=rule.rounding))
    if not parts:
        parts.append(Message.of("access.exact"))
    records = "access.records" if rule.granularity is Granularity.RECORD else "access.no_records"
    return (*parts, Message.of(records))
