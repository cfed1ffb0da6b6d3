"""The reputation index: every feed's indicators, looked up in time independent of feed size.

Exact IPs and hosts are hash lookups; networks are grouped by prefix length, so
a lookup costs one hash probe per prefix length present (at most 33 for IPv4,
129 for IPv6), never one per entry; domains are found by walking a host's
parent domains. An index is built completely and then swapped in by its owner
with one assignment; it is never changed after `build` returns.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import ClassVar, NamedTuple

from clickguard.feeds import Indicator, Kind
from clickguard.urls import NormalizedURL, parent_domains


class Attribution(NamedTuple):
    """Which feed listed an indicator, and with which tags."""

    feed: str
    category: str
    tags: tuple[str, ...]


class Match(NamedTuple):
    """One hit: what of the request matched which indicator of which feed."""

    subject: str  # the host, address, URL or path of the request that matched
    kind: Kind
    indicator: str  # the feed's entry that matched, e.g. "203.0.113.0/24"
    attribution: Attribution


# A slot holds one Attribution or, when several feeds list the same key, a tuple of them.
type Slot = Attribution | tuple[Attribution, ...]


def _attributions(slot: Slot) -> tuple[Attribution, ...]:
    """The attributions held in one slot."""
    return slot if isinstance(slot, tuple) and not isinstance(slot, Attribution) else (slot,)


def ip_to_int(address: str) -> tuple[int, int]:
    """(version, integer) of an IPv4 or IPv6 address string; ValueError if it is not one."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except OSError:
        pass
    try:
        return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
    except OSError:
        raise ValueError(f"not an IP address: {address!r}") from None


class NetworkMap:
    """Maps addresses and networks (IPv4 and IPv6) to values; lookups by address."""

    __slots__ = ("_exact", "_nets", "_prefixes")

    _BITS: ClassVar[dict[int, int]] = {4: 32, 6: 128}

    def __init__(self) -> None:
        self._exact: dict[int, dict[int, Slot]] = {4: {}, 6: {}}
        # per version: prefix length -> {network integer >> host bits: slot}
        self._nets: dict[int, dict[int, dict[int, Slot]]] = {4: {}, 6: {}}
        self._prefixes: dict[int, tuple[int, ...]] = {4: (), 6: ()}

    def __len__(self) -> int:
        exact = sum(len(d) for d in self._exact.values())
        return exact + sum(len(t) for v in self._nets.values() for t in v.values())

    def add_address(self, address: str, value: Attribution, merge: _Merger) -> None:
        """List one address; ValueError if it is not an IP address."""
        version, number = ip_to_int(address)
        table = self._exact[version]
        old = table.setdefault(number, value)
        if old is not value:
            table[number] = merge(old, value)

    def add_network(self, network: str, value: Attribution, merge: _Merger) -> None:
        """List one network in CIDR notation (host bits are ignored); ValueError if malformed."""
        net = ipaddress.ip_network(network, strict=False)
        bits = self._BITS[net.version]
        if net.prefixlen == bits:
            self.add_address(str(net.network_address), value, merge)
            return
        table = self._nets[net.version].setdefault(net.prefixlen, {})
        key = int(net.network_address) >> (bits - net.prefixlen)
        old = table.setdefault(key, value)
        if old is not value:
            table[key] = merge(old, value)

    def freeze(self) -> None:
        """Fix the order of prefix lengths to probe (most specific first)."""
        for version, tables in self._nets.items():
            self._prefixes[version] = tuple(sorted(tables, reverse=True))

    def lookup(self, address: str) -> Iterator[tuple[str, Slot]]:
        """Every (entry, slot) listing this address: the address itself, then its networks."""
        try:
            version, number = ip_to_int(address)
        except ValueError:
            return
        slot = self._exact[version].get(number)
        if slot is not None:
            yield address, slot
        bits = self._BITS[version]
        tables = self._nets[version]
        for prefixlen in self._prefixes[version]:
            shift = bits - prefixlen
            slot = tables[prefixlen].get(number >> shift)
            if slot is not None:
                network_class = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
                yield str(network_class((number >> shift << shift, prefixlen))), slot


class _Merger:
    """Combines the attributions of a key listed more than once, sharing equal tuples."""

    def __init__(self) -> None:
        self._interned: dict[frozenset[Attribution], tuple[Attribution, ...]] = {}

    def __call__(self, old: Slot, new: Attribution) -> Slot:
        combined = frozenset((*_attributions(old), new))
        if len(combined) == 1:
            return new
        return self._interned.setdefault(combined, tuple(sorted(combined)))


class FeedInput(NamedTuple):
    """One feed's indicators and how to index them."""

    name: str
    category: str
    kinds: frozenset[Kind]
    indicators: Iterable[Indicator]


class ReputationIndex:
    """All feeds' indicators, for lookups that do not grow with feed size."""

    def __init__(self) -> None:
        self.networks = NetworkMap()
        self._hosts: dict[str, Slot] = {}
        self._domains: dict[str, Slot] = {}
        self._urls: dict[str, Slot] = {}
        self._paths: dict[str, Slot] = {}
        self.counts: dict[str, int] = {}  # feed name -> indicators indexed

    @classmethod
    def build(cls, feeds: Iterable[FeedInput]) -> ReputationIndex:
        """Index every feed's indicators of the kinds it asks for; bad entries were parsers' job."""
        index = cls()
        merge = _Merger()
        attributions: dict[tuple[str, str, tuple[str, ...]], Attribution] = {}
        tables: Mapping[Kind, dict[str, Slot]] = {
            Kind.HOST: index._hosts,
            Kind.DOMAIN: index._domains,
            Kind.URL: index._urls,
            Kind.PATH: index._paths,
        }
        for feed in feeds:
            count = 0
            for kind, value, tags in feed.indicators:
                if kind not in feed.kinds:
                    continue
                key = (feed.name, feed.category, tags)
                attribution = attributions.get(key)
                if attribution is None:
                    attribution = attributions[key] = Attribution(*key)
                if kind is Kind.IP:
                    index.networks.add_address(value, attribution, merge)
                elif kind is Kind.CIDR:
                    index.networks.add_network(value, attribution, merge)
                else:
                    table = tables[kind]
                    old = table.setdefault(value, attribution)
                    if old is not attribution:
                        table[value] = merge(old, attribution)
                count += 1
            index.counts[feed.name] = index.counts.get(feed.name, 0) + count
        index.networks.freeze()
        return index

    def __len__(self) -> int:
        return (len(self.networks) + len(self._hosts) + len(self._domains)
                + len(self._urls) + len(self._paths))

    def match_ip(self, address: str) -> list[Match]:
        """Matches for one IP address (exact entries and the networks containing it)."""
        return [
            Match(address, Kind.CIDR if "/" in entry else Kind.IP, entry, a)
            for entry, slot in self.networks.lookup(address)
            for a in _attributions(slot)
        ]

    def match_host(self, host: str) -> list[Match]:
        """Matches for a host name: the exact host, then it and each parent as a listed domain."""
        matches: list[Match] = []
        slot = self._hosts.get(host)
        if slot is not None:
            matches += [Match(host, Kind.HOST, host, a) for a in _attributions(slot)]
        if self._domains:
            for domain in parent_domains(host):
                slot = self._domains.get(domain)
                if slot is not None:
                    matches += [Match(host, Kind.DOMAIN, domain, a) for a in _attributions(slot)]
        return matches

    def match_url(self, url: NormalizedURL) -> list[Match]:
        """Matches for a whole URL: host or address, exact URL (with and without query), path."""
        matches = self.match_ip(url.host) if url.is_ip else self.match_host(url.host)
        for candidate in (url.url, url.url.partition("?")[0]) if url.query else (url.url,):
            slot = self._urls.get(candidate)
            if slot is not None:
                matches += [Match(url.url, Kind.URL, candidate, a) for a in _attributions(slot)]
        slot = self._paths.get(url.path)
        if slot is not None:
            matches += [Match(url.path, Kind.PATH, url.path, a) for a in _attributions(slot)]
        return matches
