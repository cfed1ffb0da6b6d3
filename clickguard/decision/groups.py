"""Which group a request belongs to, and the policy that group is judged by.

`GroupMatcher` is built once per policy: an exact table for user names, one for
directory groups, and the groups' networks grouped by prefix length, each entry
holding the first group (in file order) that lists it. Finding a request's group is
then a handful of dict lookups, whatever the number of groups or entries; the first
group matching by any of the three wins. A policy without groups costs one test.

`group_policy` derives a group's whole policy from the top-level one (how the keys
combine: `clickguard.policy.groups`); the judge builds one judge per group from them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from clickguard.intel.index import ip_to_int
from clickguard.policy.groups import GroupConfig
from clickguard.policy.model import Policy
from clickguard.policy.sections import HostList

type _Prefixes = tuple[tuple[int, Mapping[int, int]], ...]  # (prefix length, {network bits: group})
# Client addresses (and sets of directory groups) whose group is remembered; past it all are forgotten.
CLIENTS_REMEMBERED = 65_536
_BITS = {4: 32, 6: 128}
_NO_PREFIXES: _Prefixes = ()


def _rdn_value(name: str) -> str | None:
    """The first value of a distinguished name (``cn=Sales,ou=groups,…`` gives ``sales``), else None."""
    head, sep, _ = name.partition(",")
    key, eq, value = head.partition("=")
    return value.strip().casefold() if sep and eq and key.strip() else None


class GroupMatcher:
    """The first group matching a user, one of their directory groups, or a client address."""

    __slots__ = ("_by_client", "_by_ldap", "_ldap", "_members", "_networks", "groups")

    def __init__(self, groups: Iterable[GroupConfig]) -> None:
        self.groups = tuple(groups)
        self._members: dict[str, int] = {}
        self._ldap: dict[str, int] = {}
        nets: dict[int, dict[int, dict[int, int]]] = {4: {}, 6: {}}
        for i, group in enumerate(self.groups):
            for user in group.members:
                self._members.setdefault(user.casefold(), i)
            for name in group.ldap_groups:
                self._ldap.setdefault(name.casefold(), i)
            for network in group.networks:
                version, number, prefix = _folded(network)
                by_prefix = nets[version].setdefault(prefix, {})
                by_prefix.setdefault(number >> (_BITS[version] - prefix), i)
        self._networks: dict[int, _Prefixes] = {
            version: tuple(sorted(tables.items(), reverse=True)) for version, tables in nets.items()}
        self._by_client: dict[str, int | None] = {}
        self._by_ldap: dict[frozenset[str], int | None] = {}

    def index(self, user: str | None, ldap_groups: Iterable[str], client: str | None) -> int | None:
        """The position of the first group matching, or None."""
        best: int | None = None
        if user is not None and self._members:
            best = self._members.get(user.casefold())
        if self._ldap and ldap_groups:
            found = self._ldap_index(ldap_groups)
            if found is not None and (best is None or found < best):
                best = found
        if client is not None and best != 0:
            found = self._network_index(client)
            if found is not None and (best is None or found < best):
                best = found
        return best

    def _ldap_index(self, ldap_groups: Iterable[str]) -> int | None:
        """The first group listing one of these directory groups (remembered per set, as an Identity has)."""
        key = ldap_groups if isinstance(ldap_groups, frozenset) else None
        if key is not None and key in self._by_ldap:
            return self._by_ldap[key]
        best: int | None = None
        for name in ldap_groups:
            for spelling in (name.casefold(), _rdn_value(name)):
                found = self._ldap.get(spelling) if spelling else None
                if found is not None and (best is None or found < best):
                    best = found
        if key is not None:
            if len(self._by_ldap) >= CLIENTS_REMEMBERED:
                self._by_ldap.clear()
            self._by_ldap[key] = best
        return best

    def _network_index(self, client: str) -> int | None:
        """The first group one of whose networks holds the client address (remembered per address)."""
        try:
            return self._by_client[client]
        except KeyError:
            pass
        if len(self._by_client) >= CLIENTS_REMEMBERED:
            self._by_client.clear()  # bounded: a flood of new addresses costs a parse each, no memory
        found = self._by_client[client] = self._lookup(client)
        return found

    def _lookup(self, client: str) -> int | None:
        """The first group one of whose networks holds the client address."""
        try:
            version, number = ip_to_int(client.partition("%")[0])
        except ValueError:
            return None
        if version == 6 and number >> 32 == 0xFFFF:  # ::ffff:a.b.c.d, a dual-stack listener's IPv4 client
            version, number = 4, number & 0xFFFFFFFF
        best: int | None = None
        for prefix, table in self._networks.get(version, _NO_PREFIXES):
            found = table.get(number >> (_BITS[version] - prefix))
            if found is not None and (best is None or found < best):
                best = found
        return best


def _folded(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int, int]:
    """(IP version, network number, prefix length), an IPv4-mapped IPv6 network as IPv4."""
    number, prefix = int(network.network_address), network.prefixlen
    if network.version == 6 and prefix >= 96 and number >> 32 == 0xFFFF:
        return 4, number & 0xFFFFFFFF, prefix - 96
    return network.version, number, prefix


def matcher_of(policy: Policy) -> GroupMatcher | None:
    """The policy's group matcher, built at first use and kept with the policy; None without groups."""
    if not policy.groups:
        return None
    matcher = policy._group_matcher
    if not isinstance(matcher, GroupMatcher):
        matcher = GroupMatcher(policy.groups)
        policy._group_matcher = matcher
    return matcher


def group_for(policy: Policy, user: str | None, ldap_groups: Iterable[str],
              client_ip: str | None) -> GroupConfig | None:
    """The first group of the policy matching the user, a directory group of theirs, or the client."""
    matcher = matcher_of(policy)
    if matcher is None:
        return None
    index = matcher.index(user, ldap_groups, client_ip)
    return None if index is None else matcher.groups[index]


def _extended(top: HostList, extra: HostList) -> HostList:
    """The top-level allow or deny list with a group's entries added (both validated already)."""
    return HostList.model_construct(hosts=top.hosts | extra.hosts, domains=top.domains | extra.domains,
                                    networks=(*top.networks, *extra.networks))


def group_policy(policy: Policy, group: GroupConfig) -> Policy:
    """The whole policy a group's users are judged by: the top-level one with the group's keys over it.

    Validated as a new Policy (model_copy would skip the action table, see Policy); the
    sections it keeps are the top-level's own objects, already validated.
    """
    data: dict[str, Any] = {name: getattr(policy, name) for name in Policy.model_fields}
    data["groups"] = ()
    if group.actions is not None:
        data["actions"] = {**policy.actions, **group.actions}
    for key in ("allow", "deny"):
        extra = getattr(group, key)
        if extra is not None:
            data[key] = _extended(getattr(policy, key), extra)
    for key in ("warn", "inspect"):
        over = getattr(group, key)
        if over is not None:
            data[key] = getattr(policy, key).model_copy(
                update={name: getattr(over, name) for name in over.model_fields_set})
    return Policy.model_validate(data)
