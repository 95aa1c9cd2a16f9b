"""Who is asking: roles and the biobanks an identity belongs to or is approved for."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.Enum):
    """Roles a disclosure policy distinguishes, from least to most trusted for a biobank."""

    ANONYMOUS = "anonymous"
    REGISTERED = "registered"  # a signed-in researcher
    APPROVED = "approved"  # a researcher with an approved access request at that biobank
    BIOBANK_ADMIN = "biobank_admin"  # an administrator of that biobank
    NETWORK_OPERATOR = "network_operator"  # runs the network; sees counts, audits searches


@dataclass(frozen=True)
class Identity:
    """An authenticated (or anonymous) caller."""

    subject: str = "anonymous"
    authenticated: bool = False
    operator: bool = False
    admin_of: frozenset[str] = field(default_factory=frozenset)
    approved_for: frozenset[str] = field(default_factory=frozenset)
    via: str = "none"  # "api_key" | "oidc" | "none"

    def role_for(self, biobank_id: str) -> Role:
        """The role this identity has toward one biobank: its most trusted applicable role."""
        if biobank_id in self.admin_of:
            return Role.BIOBANK_ADMIN
        if biobank_id in self.approved_for:
            return Role.APPROVED
        if self.operator:
            return Role.NETWORK_OPERATOR
        if self.authenticated:
            return Role.REGISTERED
        return Role.ANONYMOUS

    @property
    def roles(self) -> tuple[Role, ...]:
        out = [Role.REGISTERED] if self.authenticated else [Role.ANONYMOUS]
        if self.approved_for:
            out.append(Role.APPROVED)
        if self.admin_of:
            out.append(Role.BIOBANK_ADMIN)
        if self.operator:
            out.append(Role.NETWORK_OPERATOR)
        return tuple(out)


ANONYMOUS = Identity()
