"""The reputation index: every feed's indicators, looked up in time independent of feed size.

Exact IPv4 addresses, the bulk of big feeds, sit in roaring bitmaps and one sorted
array of integers (no Python object an entry; see `NetworkMap`); other exact IPs and
hosts are hash lookups; networks are grouped by prefix length, so a lookup costs one
hash probe per prefix length present (at most 33 for IPv4, 129 for IPv6), never one
per entry; domains are found by walking a host's parent domains. An index is built
completely and then swapped in by its owner with one assignment; it is never changed
after `build` returns.
"""

from __future__ import annotations

import gc
import io
import ipaddress
import socket
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import ClassVar, NamedTuple

from pyroaring import BitMap, FrozenBitMap

from clickguard.intel.parsers import Indicator, Kind
from clickguard.urls import IPV4_MAPPED, NormalizedURL, embedded_ipv4, parent_domains


class Attribution(NamedTuple):
    """Which feed listed an indicator, and with which tags."""

    feed: str
    category: str
    tags: tuple[str, ...]


class Match(NamedTuple):
    """One hit: what of the request matched which indicator of which feed."""

    # The host, address, URL or path of the request that matched; an IPv6 address matched
    # by the IPv4 inside it says so: "64:ff9b::c633:6401 (the NAT64 form of 198.51.100.1)".
    subject: str
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
    except (OSError, ValueError):  # ValueError: a NUL or a lone surrogate in the text
        pass
    try:
        return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
    except (OSError, ValueError):
        raise ValueError(f"not an IP address: {address!r}") from None


def _fold_mapped(version: int, number: int) -> tuple[int, int]:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it reaches."""
    if version == 6 and number >> 32 == 0xFFFF:
        return 4, number & 0xFFFFFFFF
    return version, number


# An exact IPv4 table entry is the address shifted left by this many bits, plus the number of
# its slot: the table sorts by address, and an entry's slot travels with it.
_SLOT_BITS = 24
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_BUCKET_BITS = 16  # at most 2**16 buckets (256 KiB of offsets)
_BUCKET_SIZE_BITS = 3  # about 2**3 entries a bucket: a bisection of three steps


def _packed(addresses: Sequence[str]) -> bytes:
    """Canonical dotted quads packed, 4 big-endian bytes each (no bytes object kept per address)."""
    out = io.BytesIO()
    out.writelines(map(socket.inet_pton, repeat(socket.AF_INET), addresses))
    return out.getvalue()


def _bitmap(packed: bytes) -> FrozenBitMap:
    """The set of big-endian packed IPv4 addresses as a roaring bitmap."""
    numbers = array("I")
    numbers.frombytes(packed)
    if sys.byteorder == "little":
        numbers.byteswap()
    # The bitmap takes addresses in random order slowly: each one searches all its
    # containers (one per /16 in use) and grows one. Handed over a first octet at a time,
    # the containers in play are few and in cache: more than twice as fast for 1M addresses.
    by_octet = [array("I") for _ in range(256)]
    add = [octet.append for octet in by_octet]
    for number in numbers:
        add[number >> 24](number)
    bitmap = BitMap()
    for octet in by_octet:
        bitmap.update(octet)
    return FrozenBitMap(bitmap)


class NetworkMap:
    """Maps addresses and networks (IPv4 and IPv6) to values; lookups by address.

    IPv4 addresses, by far the most entries of big feeds, are never a Python object each
    once frozen: a feed's plain address list is one roaring bitmap (about 2.5 bytes an
    address); the other exact IPv4 listings are one sorted `array` (8 bytes an entry)
    split into buckets by the top address bits, so finding one is a `bisect` of about
    three steps; and one more bitmap holds every address of both, so an address listed
    nowhere, the common case, costs one probe in C. All are shared page by page between
    forked workers. Lookups answer after `freeze`.
    """

    __slots__ = ("_exact", "_nets", "_plain4", "_prefixes", "_v4_any", "_v4_by_octet", "_v4_entries",
                 "_v4_offsets", "_v4_plain", "_v4_shift", "_v4_slots")

    _BITS: ClassVar[dict[int, int]] = {4: 32, 6: 128}

    def __init__(self) -> None:
        # Exact addresses while building; freeze() moves the IPv4 ones to the table below.
        self._exact: dict[int, dict[int, Slot]] = {4: {}, 6: {}}
        # per version: prefix length -> {network integer >> host bits: slot}
        self._nets: dict[int, dict[int, dict[int, Slot]]] = {4: {}, 6: {}}
        self._prefixes: dict[int, tuple[int, ...]] = {4: (), 6: ()}
        self._v4_by_octet: tuple[tuple[int, ...], ...] = ((),) * 256
        # Plain address lists while building: one attribution and the packed addresses a feed.
        self._plain4: list[tuple[Attribution, bytes]] = []
        # The frozen exact IPv4 table: sorted entries, bucket b spans offsets[b]:offsets[b + 1]
        # (b = address >> shift), an entry's low bits number its slot in slots.
        self._v4_entries = array("Q")
        self._v4_offsets = array("I", (0, 0))
        self._v4_shift = 32
        self._v4_slots: tuple[Slot, ...] = ()
        # The frozen plain lists, in feed order, and every address of the table and the lists.
        self._v4_plain: tuple[tuple[FrozenBitMap, Attribution], ...] = ()
        self._v4_any = FrozenBitMap()

    def __len__(self) -> int:
        exact = sum(len(d) for d in self._exact.values()) + sum(len(p) // 4 for _a, p in self._plain4)
        exact += len(self._v4_entries) + sum(len(bitmap) for bitmap, _a in self._v4_plain)
        return exact + sum(len(t) for v in self._nets.values() for t in v.values())

    def add_address(self, address: str, value: Attribution, merge: _Merger) -> None:
        """List one address; ValueError if it is not an IP address."""
        version, number = _fold_mapped(*ip_to_int(address))
        table = self._exact[version]
        old = table.setdefault(number, value)
        if old is not value:
            table[number] = merge(old, value)

    def add_plain_ipv4(self, addresses: Sequence[str], value: Attribution) -> None:
        """List canonical dotted-quad addresses of one feed, all with the same attribution."""
        self.add_packed_ipv4(_packed(addresses), value)

    def add_packed_ipv4(self, packed: bytes, value: Attribution) -> None:
        """List IPv4 addresses of one feed packed 4 big-endian bytes each, all with the same attribution."""
        if len(packed) % 4:
            raise ValueError(f"packed IPv4 addresses are 4 bytes each, got {len(packed)} bytes")
        self._plain4.append((value, packed))

    def add_network(self, network: str, value: Attribution, merge: _Merger) -> None:
        """List one network in CIDR notation (host bits are ignored); ValueError if malformed."""
        net = ipaddress.ip_network(network, strict=False)
        version, number, prefixlen = net.version, int(net.network_address), net.prefixlen
        if version == 6 and prefixlen >= 96 and number >> 32 == 0xFFFF:
            version, number, prefixlen = 4, number & 0xFFFFFFFF, prefixlen - 96  # ::ffff:a.b.c.d/n
        bits = self._BITS[version]
        if prefixlen == bits:
            table = self._exact[version]
            old = table.setdefault(number, value)
            if old is not value:
                table[number] = merge(old, value)
            return
        table = self._nets[version].setdefault(prefixlen, {})
        key = number >> (bits - prefixlen)
        old = table.setdefault(key, value)
        if old is not value:
            table[key] = merge(old, value)

    def freeze(self) -> None:
        """Build the IPv4 tables and fix the prefix lengths to probe; call it once, after every add."""
        if self._exact[4] or self._plain4:
            listed = self._freeze_exact_ipv4()
            for bitmap, _a in self._freeze_plain_ipv4():
                listed |= bitmap  # in place: FrozenBitMap.union(*many) takes ten times longer
            self._v4_any = FrozenBitMap(listed)
        for version, tables in self._nets.items():
            self._prefixes[version] = tuple(sorted(tables, reverse=True))
        # An address only needs the prefix lengths that have a network in its /8: DROP
        # alone has twelve lengths, but rarely more than two within one /8.
        by_octet: list[set[int]] = [set() for _ in range(256)]
        for prefixlen, table in self._nets[4].items():
            if prefixlen >= 8:
                for key in table:
                    by_octet[key >> (prefixlen - 8)].add(prefixlen)
            else:
                for key in table:
                    first = key << (8 - prefixlen)
                    for octet in range(first, first + (1 << (8 - prefixlen))):
                        by_octet[octet].add(prefixlen)
        self._v4_by_octet = tuple(tuple(sorted(s, reverse=True)) for s in by_octet)

    def _freeze_exact_ipv4(self) -> BitMap:
        """Move the exact IPv4 listings from their dict into the sorted table; their addresses."""
        exact = self._exact[4]
        numbers = sorted(exact)
        slot_numbers: dict[Slot, int] = {}
        entries = array("Q", [number << _SLOT_BITS | slot_numbers.setdefault(exact[number], len(slot_numbers))
                              for number in numbers])
        if len(slot_numbers) > _SLOT_MASK + 1:
            raise ValueError(f"{len(slot_numbers)} distinct IPv4 listings: at most {_SLOT_MASK + 1}")
        bits = min(_BUCKET_BITS, max(0, len(entries).bit_length() - _BUCKET_SIZE_BITS))
        shift = 32 - bits
        self._v4_offsets = array("I", [bisect_left(entries, b << (shift + _SLOT_BITS))
                                       for b in range((1 << bits) + 1)])
        self._v4_entries, self._v4_shift, self._v4_slots = entries, shift, tuple(slot_numbers)
        self._exact[4] = {}
        return BitMap(numbers)

    def _freeze_plain_ipv4(self) -> tuple[tuple[FrozenBitMap, Attribution], ...]:
        """Turn each plain address list into a bitmap (repeated addresses count once)."""
        self._v4_plain = tuple((_bitmap(packed), attribution) for attribution, packed in self._plain4)
        self._plain4 = []
        return self._v4_plain

    def lookup(self, address: str) -> Iterator[tuple[str, Slot]]:
        """Every (entry, slot) listing this address: the address itself, then its networks."""
        try:
            version, number = ip_to_int(address)
        except ValueError:
            return
        if version == 6 and number >> 32 == 0xFFFF:
            version, number = _fold_mapped(version, number)
            address = socket.inet_ntop(socket.AF_INET, number.to_bytes(4, "big"))
        if version == 4:
            if number in self._v4_any:
                yield from self._ipv4_listings(address, number)
        else:
            slot = self._exact[6].get(number)
            if slot is not None:
                yield address, slot
        bits = self._BITS[version]
        tables = self._nets[version]
        prefixes = self._v4_by_octet[number >> 24] if version == 4 else self._prefixes[version]
        for prefixlen in prefixes:
            shift = bits - prefixlen
            slot = tables[prefixlen].get(number >> shift)
            if slot is not None:
                network_class = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
                yield str(network_class((number >> shift << shift, prefixlen))), slot

    def _exact_ipv4(self, number: int) -> Slot | None:
        """The slot of the exact IPv4 table listing this address, or None."""
        entries, offsets = self._v4_entries, self._v4_offsets
        bucket = number >> self._v4_shift
        end = offsets[bucket + 1]
        # The first entry of the address, if listed, is the first at or above its slot 0.
        i = bisect_left(entries, number << _SLOT_BITS, offsets[bucket], end)
        if i < end and entries[i] >> _SLOT_BITS == number:
            return self._v4_slots[entries[i] & _SLOT_MASK]
        return None

    def _ipv4_listings(self, address: str, number: int) -> Iterator[tuple[str, Slot]]:
        """The exact table's slot for one IPv4 address, then the plain lists of the other feeds."""
        slot = self._exact_ipv4(number)
        listed: set[str] = set()
        if slot is not None:
            listed.update(a.feed for a in _attributions(slot))
            yield address, slot
        for bitmap, attribution in self._v4_plain:
            # One feed, one attribution: it may also list the address as "a.b.c.d/32".
            if number in bitmap and attribution.feed not in listed:
                listed.add(attribution.feed)
                yield address, attribution


MAX_TAGS = 8


class _Merger:
    """Combines the attributions of a key listed more than once: one per feed, tags united.

    A feed may list one address many times (maltrail gives one line per port); keeping
    one attribution per feed keeps a slot small whatever the feed repeats.
    """

    def __init__(self) -> None:
        self._attributions: dict[Attribution, Attribution] = {}
        self._tuples: dict[tuple[Attribution, ...], tuple[Attribution, ...]] = {}

    def __call__(self, old: Slot, new: Attribution) -> Slot:
        olds = _attributions(old)
        for i, a in enumerate(olds):
            if a.feed == new.feed:
                if a.tags == new.tags or set(new.tags) <= set(a.tags) or len(a.tags) >= MAX_TAGS:
                    return old
                tags = tuple(dict.fromkeys((*a.tags, *new.tags)))[:MAX_TAGS]
                merged = Attribution(a.feed, a.category, tags)
                merged = self._attributions.setdefault(merged, merged)
                combined = (*olds[:i], merged, *olds[i + 1:])
                break
        else:
            combined = (*olds, new)
        if len(combined) == 1:
            return combined[0]
        return self._tuples.setdefault(combined, combined)


class FeedInput(NamedTuple):
    """One feed's indicators and how to index them."""

    name: str
    category: str
    kinds: frozenset[Kind]
    indicators: Iterable[Indicator]
    plain_ipv4: Sequence[str] = ()  # canonical dotted quads without tags (`ParsedFeed.plain_ipv4`)
    plain_ipv4_packed: bytes = b""  # more of them packed 4 bytes each (`ParsedFeed.plain_ipv4_packed`)


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
        # Indicators are tuples the cyclic GC would scan again and again while a million
        # of them are alive; none of them can be part of a cycle.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            index._fill(feeds, merge)
        finally:
            if gc_was_enabled:
                gc.enable()
        index.networks.freeze()
        return index

    def _fill(self, feeds: Iterable[FeedInput], merge: _Merger) -> None:
        """Add every feed's indicators (the body of `build`); the hot loop avoids enum hashing."""
        attributions: dict[tuple[str, str, tuple[str, ...]], Attribution] = {}
        tables: dict[str, dict[str, Slot]] = {
            Kind.HOST.value: self._hosts,
            Kind.DOMAIN.value: self._domains,
            Kind.URL.value: self._urls,
            Kind.PATH.value: self._paths,
        }
        ipv4 = self.networks._exact[4]
        pton, af_inet, from_bytes = socket.inet_pton, socket.AF_INET, int.from_bytes
        ip_kind, cidr_kind = Kind.IP, Kind.CIDR
        for feed in feeds:
            count = 0
            by_tags: dict[tuple[str, ...], Attribution] = {}
            want_ip = ip_kind in feed.kinds
            want = {k.value for k in feed.kinds}
            if want_ip and (feed.plain_ipv4 or feed.plain_ipv4_packed):
                untagged: tuple[str, str, tuple[str, ...]] = (feed.name, feed.category, ())
                packed = feed.plain_ipv4_packed
                if feed.plain_ipv4:
                    packed = _packed(feed.plain_ipv4) + packed  # one list a feed
                plain = attributions.setdefault(untagged, Attribution(*untagged))
                self.networks.add_packed_ipv4(packed, plain)
                count += len(packed) // 4
            for kind, value, tags in feed.indicators:
                if kind is ip_kind:
                    if not want_ip:
                        continue
                elif str.__str__(kind) not in want:
                    continue
                attribution = by_tags.get(tags)
                if attribution is None:
                    key = (feed.name, feed.category, tags)
                    attribution = by_tags[tags] = attributions.setdefault(key, Attribution(*key))
                count += 1
                if kind is ip_kind:
                    try:  # inlined fast path: most entries of big feeds are IPv4 addresses
                        number = from_bytes(pton(af_inet, value), "big")
                    except OSError:
                        self.networks.add_address(value, attribution, merge)
                        continue
                    old = ipv4.setdefault(number, attribution)
                    if old is not attribution:
                        ipv4[number] = merge(old, attribution)
                elif kind is cidr_kind:
                    self.networks.add_network(value, attribution, merge)
                else:
                    table = tables[str.__str__(kind)]
                    old = table.setdefault(value, attribution)
                    if old is not attribution:
                        table[value] = merge(old, attribution)
            self.counts[feed.name] = self.counts.get(feed.name, 0) + count

    def __len__(self) -> int:
        return (len(self.networks) + len(self._hosts) + len(self._domains)
                + len(self._urls) + len(self._paths))

    def match_ip(self, address: str) -> list[Match]:
        """Matches for one IP address (exact entries and the networks containing it).

        An IPv6 address that embeds IPv4 addresses (NAT64, 6to4, Teredo, mapped…; see
        `clickguard.urls.embedded_ipv4`) is judged as itself and as each of them: a
        listing of either counts, and the match's subject names the form.
        """
        inside = embedded_ipv4(address)
        # The map reads a mapped address as its IPv4 already: looked up once, below, in words.
        mapped = bool(inside) and inside[0].form == IPV4_MAPPED
        matches = [] if mapped else self._match_address(address, address)
        for inner in inside:
            matches += self._match_address(inner.ipv4, f"{address} ({inner})")
        return matches

    def _match_address(self, address: str, subject: str) -> list[Match]:
        """Matches for one address, reported with subject."""
        return [
            Match(subject, Kind.CIDR if "/" in entry else Kind.IP, entry, a)
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
