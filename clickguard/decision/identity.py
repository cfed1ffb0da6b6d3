"""Who made a request, as the proxy authenticated them.

The proxy stores an `Identity` on each flow it authenticated (flow.metadata["clickguard_identity"]);
the group whose rules apply and the audit record's ``user`` and ``group`` follow from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user and the directory groups they belong to (empty without LDAP)."""

    user: str
    ldap_groups: frozenset[str] = frozenset()
