"""The index's compact IPv4 tables answer exactly what plain dicts and sets answer.

The exact IPv4 listings live in one sorted array split into buckets, the plain address
lists in roaring bitmaps, and the `ip` parser packs addresses a chunk of text at a time:
each is checked here against a reference built the obvious way, on a generated corpus
with the edge cases (the first and last address, neighbours, bucket boundaries, one
address in several feeds, a /32 beside the same feed's exact entry, IPv4-mapped IPv6),
and on a real feed.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections import defaultdict
from pathlib import Path

import pytest

from clickguard.intel import parsers
from clickguard.intel.index import Attribution, FeedInput, NetworkMap, ReputationIndex, _Merger
from clickguard.intel.parsers import DEFAULT_KINDS, Indicator, Kind, parse_feed

ALL_KINDS = frozenset(Kind)
# (kind, indicator, feed, tags as a set): what one match says, subject left aside.
type Said = tuple[Kind, str, str, frozenset[str]]


def _dotted(number: int) -> str:
    """The dotted quad of a 32-bit number."""
    return str(ipaddress.IPv4Address(number))


class Corpus:
    """Feeds generated from a seed, and the reference answers built from them with dicts and sets."""

    def __init__(self, seed: int) -> None:
        """Generate the feeds; every listed address is remembered in the reference tables."""
        rng = random.Random(seed)
        self.feeds: list[FeedInput] = []
        self.exact: dict[int, dict[str, set[str]]] = defaultdict(dict)  # address -> feed -> tags
        self.plain: dict[str, set[int]] = defaultdict(set)  # feed -> its plain addresses
        self.nets: dict[ipaddress.IPv4Network, dict[str, set[str]]] = defaultdict(dict)
        edges = [0, 1, 2**32 - 2, 2**32 - 1, 0x7F000001, 0xC0000200, 0xC0000201, 0xC0000202]
        clustered = [0x0A000000 + rng.randrange(4096) for _ in range(3000)]  # crowded buckets
        spread = [rng.randrange(2**32) for _ in range(6000)]
        pool = edges + clustered + spread
        for n in range(4):
            name = f"feed{n}"
            plain = [rng.choice(pool) for _ in range(2500)] + edges[n::2]
            plain += plain[:50]  # listed twice by the same feed
            indicators = []
            for _ in range(800):
                number, tags = rng.choice(pool), (f"t{rng.randrange(3)}",)
                indicators.append(Indicator(Kind.IP, _dotted(number), tags))
                self.exact[number].setdefault(name, set()).update(tags)
            for number in rng.sample(plain, 40):  # the same feed lists it as a /32 too
                indicators.append(Indicator(Kind.CIDR, f"{_dotted(number)}/32", ("slash32",)))
                self.exact[number].setdefault(name, set()).add("slash32")
            for _ in range(30):
                prefixlen = rng.choice((8, 16, 24, 31))
                network = ipaddress.IPv4Network((rng.choice(pool) >> (32 - prefixlen) << (32 - prefixlen),
                                                 prefixlen))
                indicators.append(Indicator(Kind.CIDR, str(network), ("net",)))
                self.nets[network].setdefault(name, set()).add("net")
            mapped = rng.choice(pool)
            indicators.append(Indicator(Kind.IP, f"::ffff:{_dotted(mapped)}", ("mapped",)))
            self.exact[mapped].setdefault(name, set()).add("mapped")
            self.plain[name].update(plain)
            strings = [_dotted(a) for a in plain]
            half = len(strings) // 2
            packed = b"".join(socket.inet_aton(a) for a in strings[half:])
            self.feeds.append(FeedInput(name, "thingbot", ALL_KINDS, indicators, strings[:half], packed))
        self.pool = pool

    def expected(self, number: int) -> set[Said]:
        """What a lookup of this IPv4 address should say, from the reference tables."""
        address = _dotted(number)
        said: set[Said] = {(Kind.IP, address, feed, frozenset(tags))
                           for feed, tags in self.exact.get(number, {}).items()}
        exact_feeds = set(self.exact.get(number, {}))
        said |= {(Kind.IP, address, feed, frozenset())
                 for feed, listed in self.plain.items() if number in listed and feed not in exact_feeds}
        said |= {(Kind.CIDR, str(network), feed, frozenset(tags))
                 for network, feeds in self.nets.items() if ipaddress.IPv4Address(number) in network
                 for feed, tags in feeds.items()}
        return said

    def entries(self) -> int:
        """How many entries the index should hold: addresses once per table, networks once."""
        return len(self.exact) + sum(len(s) for s in self.plain.values()) + len(self.nets)


def _said(index: ReputationIndex, address: str) -> set[Said]:
    """What the index says about an address, subject left aside."""
    matches = index.match_ip(address)
    said = {(m.kind, m.indicator, m.attribution.feed, frozenset(m.attribution.tags)) for m in matches}
    assert len(said) == len(matches), f"{address}: a listing reported twice: {matches}"
    return said


def _probes(corpus: Corpus, networks: NetworkMap) -> list[int]:
    """Every listed address, its neighbours, and the first and last address of many buckets."""
    listed = set(corpus.pool) | set(corpus.exact)
    neighbours = {n + d for n in listed for d in (-1, 1) if 0 <= n + d < 2**32}
    shift = networks._v4_shift
    firsts = {b << shift for b in range(0, 2**(32 - shift), max(1, 2**(32 - shift) // 4096))}
    boundaries = firsts | {first - 1 for first in firsts if first}
    return sorted(listed | neighbours | boundaries | {0, 2**32 - 1})


@pytest.mark.parametrize("seed", [1, 2])
def test_lookups_match_the_reference(seed: int) -> None:
    corpus = Corpus(seed)
    index = ReputationIndex.build(corpus.feeds)
    assert index.networks._v4_shift < 32  # the corpus fills more than one bucket
    for number in _probes(corpus, index.networks):
        address = _dotted(number)
        expected = corpus.expected(number)
        assert _said(index, address) == expected, address
        # The IPv4-mapped form finds the same listings, in the same words.
        assert _said(index, f"::ffff:{address}") == expected, f"::ffff:{address}"
    assert len(index.networks) == corpus.entries()
    counted = {f.name: len(list(f.indicators)) + len(f.plain_ipv4) + len(f.plain_ipv4_packed) // 4
               for f in corpus.feeds}
    assert index.counts == counted


def test_the_feed_order_of_several_listings_is_kept() -> None:
    feeds = [FeedInput(f"f{n}", "thingbot", ALL_KINDS, [], ["192.0.2.1", "192.0.2.2"]) for n in range(3)]
    feeds.append(FeedInput("tagged", "thingbot", ALL_KINDS, [Indicator(Kind.IP, "192.0.2.1", ("x",))]))
    index = ReputationIndex.build(feeds)
    # The exact slot first, then the plain lists in feed order: as before the tables were compact.
    assert [m.attribution.feed for m in index.match_ip("192.0.2.1")] == ["tagged", "f0", "f1", "f2"]
    assert [m.attribution.feed for m in index.match_ip("192.0.2.2")] == ["f0", "f1", "f2"]
    assert index.match_ip("192.0.2.3") == []


def test_a_feed_listed_exactly_and_plainly_is_said_once_with_its_tags() -> None:
    feed = FeedInput("f", "thingbot", ALL_KINDS, [Indicator(Kind.CIDR, "198.51.100.7/32", ("c2",))],
                     ["198.51.100.7", "198.51.100.7"], socket.inet_aton("198.51.100.7"))
    index = ReputationIndex.build([feed])
    assert [(m.indicator, m.attribution.tags) for m in index.match_ip("198.51.100.7")] == [
        ("198.51.100.7", ("c2",))]
    assert len(index.networks) == 2  # the exact table's entry and the plain list's, each once


def test_no_feed_at_all_and_an_empty_plain_list() -> None:
    empty = ReputationIndex.build([FeedInput("f", "thingbot", ALL_KINDS, [], [], b"")])
    assert len(empty) == 0
    for address in ("0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4", "2001:db8::1", "not an address"):
        assert empty.match_ip(address) == []


def test_network_map_for_allow_and_deny_lists() -> None:
    """What the judge's host lists use: add_network (a /32 too), freeze, lookup."""
    merge, listed = _Merger(), Attribution("allow", "policy", ())
    networks = NetworkMap()
    for network in ("10.0.0.5/32", "10.1.0.0/16", "::ffff:192.0.2.0/120", "2001:db8::/32", "2001:db8::7/128"):
        networks.add_network(network, listed, merge)
    networks.freeze()
    assert [entry for entry, _slot in networks.lookup("10.0.0.5")] == ["10.0.0.5"]
    assert [entry for entry, _slot in networks.lookup("::ffff:10.0.0.5")] == ["10.0.0.5"]
    assert [entry for entry, _slot in networks.lookup("10.1.2.3")] == ["10.1.0.0/16"]
    assert [entry for entry, _slot in networks.lookup("192.0.2.9")] == ["192.0.2.0/24"]
    assert [entry for entry, _slot in networks.lookup("2001:db8::7")] == ["2001:db8::7", "2001:db8::/32"]
    assert list(networks.lookup("10.0.0.4")) == list(networks.lookup("10.0.0.6")) == []
    assert len(networks) == 5
    networks.freeze()  # a second freeze with nothing new keeps the tables
    assert [entry for entry, _slot in networks.lookup("10.0.0.5")] == ["10.0.0.5"]
    assert list(NetworkMap().lookup("10.0.0.5")) == []  # never frozen, nothing listed


def test_packed_and_dotted_plain_lists_are_the_same() -> None:
    addresses = ["0.0.0.0", "255.255.255.255", "10.0.0.1", "10.0.0.2", "10.0.0.1"]
    dotted, packed = NetworkMap(), NetworkMap()
    dotted.add_plain_ipv4(addresses, Attribution("f", "thingbot", ()))
    packed.add_packed_ipv4(b"".join(map(socket.inet_aton, addresses)), Attribution("f", "thingbot", ()))
    for networks in (dotted, packed):
        networks.freeze()
        assert len(networks) == 4
        for address in addresses:
            assert [entry for entry, _slot in networks.lookup(address)] == [address]
        assert list(networks.lookup("10.0.0.3")) == []
    with pytest.raises(ValueError, match="4 bytes each"):
        NetworkMap().add_packed_ipv4(b"\x01\x02\x03", Attribution("f", "thingbot", ()))


def _reference_ip_parse(text: str) -> tuple[list[str], list[tuple[int, str]], list[int]]:
    """(plain dotted quads, other entries with their kinds, numbers of skipped lines), line by line."""
    plain, others, skipped = [], [], []
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
    for number, line in enumerate(lines, 1):
        try:
            socket.inet_pton(socket.AF_INET, line)
        except OSError:
            pass
        else:
            plain.append(line)
            continue
        value = line.partition("#")[0].strip()
        if not value:
            continue
        try:
            others.append((number, str(ipaddress.ip_network(value, strict=False) if "/" in value
                                        else ipaddress.ip_address(value))))
        except ValueError:
            skipped.append(number)
    return plain, others, skipped


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_the_ip_parser_reads_chunk_by_chunk_what_a_line_loop_reads(newline: str) -> None:
    rng = random.Random(7)
    lines: list[str] = []
    size = 0
    while size < 3 * parsers._CHUNK:  # a few chunks, odd lines at their seams too
        size += len(lines[-1]) + 1 if lines else 0
        pick = rng.random()
        if pick < 0.9:
            lines.append(_dotted(rng.randrange(2**32)))
        elif pick < 0.93:
            lines.append("# a comment")
        elif pick < 0.95:
            lines.append("")
        elif pick < 0.97:
            lines.append(f"{_dotted(rng.randrange(2**32))}/24")
        elif pick < 0.98:
            lines.append("2001:db8::1")
        else:
            lines.append("not an address")
    text = "\ufeff" + newline.join(lines) + newline
    parsed = parse_feed("ip", text)
    plain, others, skipped = _reference_ip_parse(text)
    assert parsed.plain_ipv4 == plain
    assert parsed.size == len(plain) + len(others)
    assert [s.line for s in parsed.skipped] == skipped
    assert [i.value for i in parsed.indicators] == [value for _number, value in others]


def test_a_real_feed_through_the_compact_tables(feeds_dir: Path) -> None:
    text = (feeds_dir / "criticalpath_feeds" / "abuse-ch-ipblocklist.txt").read_text()
    parsed = parse_feed("ip", text)
    index = ReputationIndex.build([FeedInput("abuse-ch", "botnet", DEFAULT_KINDS["ip"], parsed.indicators,
                                             plain_ipv4_packed=parsed.plain_ipv4_packed)])
    listed = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(listed) == 7980
    for address in ("67.213.75.205", "192.73.238.101", "217.165.123.47", "27.133.154.218", *listed):
        [match] = index.match_ip(address)
        assert (match.kind, match.indicator, match.attribution.feed) == (Kind.IP, address, "abuse-ch")
    assert len(index) == len(set(listed))
    numbers = {int(ipaddress.IPv4Address(a)) for a in listed}
    unlisted = [_dotted(n) for n in range(2**32 - 1, 0, -99_991) if n not in numbers][:2000]
    assert all(index.match_ip(address) == [] for address in unlisted)
