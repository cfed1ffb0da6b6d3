"""Groups of users whose rules differ from the top-level policy (issue 12), policy ``groups:``.

A group names who it is for (``members``: proxy user names, ``ldap_groups``: directory
groups, ``networks``: client addresses) and the keys that differ for them (``actions``,
``allow``, ``deny``, ``warn``, ``inspect``). The first group, in file order, that matches a
request's user, one of the user's directory groups, or its client address applies.

How a group's keys combine with the top-level policy (`clickguard.decision.groups.group_policy`):

- ``actions``, ``warn``, ``inspect``: key by key; what the group leaves out keeps the
  top-level value (a group saying ``landing.thingbot: warn`` keeps every other action).
- ``allow``, ``deny``: extend the top-level lists. The organisation's deny list holds for
  everyone (a group cannot lift it by listing hosts of its own), and a group's allow entry
  adds a site that group needs without dropping the ones everybody needs. The deny list
  still beats the allow list, as at the top level.

User names and directory groups compare case-insensitively (directories do; a user typed
``Alice`` in the policy is the ``alice`` who logs in).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import AfterValidator, model_validator

from clickguard.policy.sections import (
    HostList,
    InspectConfig,
    NetworkEntry,
    WarnConfig,
    _Model,
    _reason_code,
)
from clickguard.policy.yamlfile import FieldProblems, Loc
from clickguard.reasons import Action

GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # what a group's name may be (fullmatch)


def _group_name(value: str) -> str:
    """A group name: plain characters only, as it appears in audit records, reports and URLs."""
    if not GROUP_NAME.fullmatch(value):
        raise ValueError(f"a group name is 1-64 letters, digits, '_', '.' or '-' (got {value!r})")
    return value


def _principal(value: str) -> str:
    """A user or directory group name, compared case-insensitively (kept as written for messages)."""
    text = value.strip()
    if not text or len(text) > 256:
        raise ValueError(f"must be a name of 1-256 characters (got {value!r})")
    return text


type Principal = Annotated[str, AfterValidator(_principal)]


class GroupConfig(_Model):
    """One group: who it is for, and the top-level keys that differ for them."""

    name: Annotated[str, AfterValidator(_group_name)]
    members: frozenset[Principal] = frozenset()  # proxy user names
    ldap_groups: frozenset[Principal] = frozenset()  # directory groups (their cn, or their DN)
    networks: tuple[NetworkEntry, ...] = ()  # client addresses; the only match without proxy auth
    # None: the key is not set for this group and the top-level value holds.
    actions: Mapping[Annotated[str, AfterValidator(_reason_code)], Action] | None = None
    allow: HostList | None = None  # added to the top-level allow list
    deny: HostList | None = None  # added to the top-level deny list
    warn: WarnConfig | None = None  # the keys given override the top-level warn's
    inspect: InspectConfig | None = None  # the keys given override the top-level inspect's

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Refuse a group that matches no one, or sets what only the whole proxy can.

        The policy checks its actions' codes (they depend on the feeds).
        """
        found: list[tuple[Loc, str]] = []
        if not (self.members or self.ldap_groups or self.networks):
            found.append(((), "a group needs members, ldap_groups or networks, or it matches no one"))
        if self.inspect is not None and "fingerprints" in self.inspect.model_fields_set:
            found.append((("inspect", "fingerprints"),
                          "fingerprints apply to the whole proxy: list them in the top-level inspect"))
        if found:
            raise FieldProblems(found)
        return self

    @property
    def overrides(self) -> tuple[str, ...]:
        """The top-level keys this group changes, in policy order."""
        return tuple(key for key in ("actions", "allow", "deny", "warn", "inspect")
                     if getattr(self, key) is not None)


def unique_names(groups: tuple[GroupConfig, ...]) -> list[tuple[Loc, str]]:
    """A problem for each group whose name an earlier group has (names compare case-insensitively)."""
    found: list[tuple[Loc, str]] = []
    first: dict[str, int] = {}
    for i, group in enumerate(groups):
        key = group.name.casefold()
        if key in first:
            found.append((("groups", i, "name"),
                          f"duplicate group name {group.name!r} (also groups[{first[key]}])"))
        first.setdefault(key, i)
    return found

