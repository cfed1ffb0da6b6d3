"""The reputation index: exact, network, domain, URL and path lookups, on small tables and real feeds."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from clickguard.intel.index import MAX_TAGS, Attribution, FeedInput, ReputationIndex, Slot
from clickguard.intel.parsers import DEFAULT_KINDS, Indicator, Kind, parse_feed
from clickguard.urls import normalize_url

ALL_KINDS = frozenset(Kind)


def _feed(name: str, indicators: Iterable[Indicator], *, kinds: frozenset[Kind] = ALL_KINDS,
          plain_ipv4: Sequence[str] = (), category: str = "thingbot") -> FeedInput:
    return FeedInput(name, category, kinds, list(indicators), plain_ipv4)


def _index(*feeds: FeedInput) -> ReputationIndex:
    return ReputationIndex.build(feeds)


# --- addresses and networks ------------------------------------------------------------------

NETWORKS = _index(_feed("nets", [
    Indicator(Kind.IP, "198.51.100.7", ("exact",)),
    Indicator(Kind.CIDR, "198.51.100.0/24", ("p24",)),
    Indicator(Kind.CIDR, "198.51.0.0/16", ("p16",)),
    Indicator(Kind.CIDR, "198.0.0.0/8", ("p8",)),
    Indicator(Kind.CIDR, "64.0.0.0/2", ("p2",)),  # shorter than /8: spans first octets 64-127
    Indicator(Kind.CIDR, "203.0.113.128/25", ("p25",)),
    Indicator(Kind.IP, "2001:db8::1", ("v6exact",)),
    Indicator(Kind.CIDR, "2001:db8:1::/48", ("v6p48",)),
    Indicator(Kind.CIDR, "2001:db8::/32", ("v6p32",)),
]))


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        # most specific first: the exact entry, then each containing network, longest prefix first
        ("198.51.100.7", [("198.51.100.7", Kind.IP), ("198.51.100.0/24", Kind.CIDR),
                          ("198.51.0.0/16", Kind.CIDR), ("198.0.0.0/8", Kind.CIDR)]),
        ("198.51.100.8", [("198.51.100.0/24", Kind.CIDR), ("198.51.0.0/16", Kind.CIDR),
                          ("198.0.0.0/8", Kind.CIDR)]),
        ("198.51.7.1", [("198.51.0.0/16", Kind.CIDR), ("198.0.0.0/8", Kind.CIDR)]),
        ("198.200.1.1", [("198.0.0.0/8", Kind.CIDR)]),
        ("100.1.2.3", [("64.0.0.0/2", Kind.CIDR)]),
        ("127.255.255.255", [("64.0.0.0/2", Kind.CIDR)]),
        ("128.0.0.0", []),
        ("203.0.113.200", [("203.0.113.128/25", Kind.CIDR)]),
        ("203.0.113.127", []),
        ("2001:db8::1", [("2001:db8::1", Kind.IP), ("2001:db8::/32", Kind.CIDR)]),
        ("2001:db8:1::99", [("2001:db8:1::/48", Kind.CIDR), ("2001:db8::/32", Kind.CIDR)]),
        ("2001:db9::1", []),
        # IPv4-mapped IPv6 reaches the IPv4 host, so it is judged as that address (and says so)
        ("::ffff:198.51.100.7", [("198.51.100.7", Kind.IP), ("198.51.100.0/24", Kind.CIDR),
                                 ("198.51.0.0/16", Kind.CIDR), ("198.0.0.0/8", Kind.CIDR)]),
        ("::ffff:c633:6408", [("198.51.100.0/24", Kind.CIDR), ("198.51.0.0/16", Kind.CIDR),
                              ("198.0.0.0/8", Kind.CIDR)]),
        ("not an address", []),
        ("", []),
    ],
)
def test_match_ip_most_specific_first(address: str, expected: list[tuple[str, Kind]]) -> None:
    matches = NETWORKS.match_ip(address)
    assert [(m.indicator, m.kind) for m in matches] == expected
    mapped = {"::ffff:198.51.100.7": "198.51.100.7", "::ffff:c633:6408": "198.51.100.8"}
    subject = f"{address} (the IPv4-mapped form of {mapped[address]})" if address in mapped else address
    assert all(m.subject == subject for m in matches)
    assert all(m.attribution.feed == "nets" for m in matches)


# 198.51.100.7 is c633:6407 in hex; flipped for Teredo's client field, 39cc:9bf8.
EMBEDDED = _index(
    _feed("nets", [Indicator(Kind.IP, "198.51.100.7", ("exact",)),
                   Indicator(Kind.CIDR, "198.51.100.0/24", ("p24",))]),
    _feed("v6", [Indicator(Kind.CIDR, "64:ff9b::/96", ("nat64",)),
                 Indicator(Kind.IP, "2002:c633:6407::1", ("six",))]),
)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        # judged as itself, then as the IPv4 inside: a listing of either counts
        ("64:ff9b::c633:6407", [
            ("64:ff9b::c633:6407", "64:ff9b::/96"),
            ("64:ff9b::c633:6407 (the NAT64 form of 198.51.100.7)", "198.51.100.7"),
            ("64:ff9b::c633:6407 (the NAT64 form of 198.51.100.7)", "198.51.100.0/24")]),
        ("64:ff9b:1:0:1::c633:6408", [
            ("64:ff9b:1:0:1::c633:6408 (the local-use NAT64 form of 198.51.100.8)", "198.51.100.0/24")]),
        ("2002:c633:6407::1", [
            ("2002:c633:6407::1", "2002:c633:6407::1"),
            ("2002:c633:6407::1 (the 6to4 form of 198.51.100.7)", "198.51.100.7"),
            ("2002:c633:6407::1 (the 6to4 form of 198.51.100.7)", "198.51.100.0/24")]),
        ("::c633:6407", [
            ("::c633:6407 (the IPv4-compatible form of 198.51.100.7)", "198.51.100.7"),
            ("::c633:6407 (the IPv4-compatible form of 198.51.100.7)", "198.51.100.0/24")]),
        ("2001:0:4136:e378:8000:63bf:39cc:9bf8", [
            ("2001:0:4136:e378:8000:63bf:39cc:9bf8 (the Teredo client 198.51.100.7)", "198.51.100.7"),
            ("2001:0:4136:e378:8000:63bf:39cc:9bf8 (the Teredo client 198.51.100.7)", "198.51.100.0/24")]),
        ("2001:0:c633:6409::ffff:fffe", [
            ("2001:0:c633:6409::ffff:fffe (the Teredo server 198.51.100.9)", "198.51.100.0/24")]),
        ("64:ff9b::c634:1", [("64:ff9b::c634:1", "64:ff9b::/96")]),  # the IPv4 inside is not listed
        ("2001:db8::c633:6407", []),  # not a form that carries IPv4
        ("::1", []),
    ],
)
def test_match_ip_judges_the_ipv4_an_ipv6_address_embeds(address: str,
                                                          expected: list[tuple[str, str]]) -> None:
    assert [(m.subject, m.indicator) for m in EMBEDDED.match_ip(address)] == expected


def test_match_url_judges_the_ipv4_an_ipv6_literal_host_embeds() -> None:
    matches = EMBEDDED.match_url(normalize_url("http://[2002:c633:6408::]:8080/bins/x"))
    assert [(m.subject, m.indicator) for m in matches] == [
        ("2002:c633:6408:: (the 6to4 form of 198.51.100.8)", "198.51.100.0/24")]


def test_plain_ipv4_lane() -> None:
    index = _index(_feed("plain", [], plain_ipv4=["192.0.2.1", "192.0.2.2"]))
    (match,) = index.match_ip("192.0.2.2")
    assert match == (
        "192.0.2.2", Kind.IP, "192.0.2.2", Attribution("plain", "thingbot", ()))
    assert [m.indicator for m in index.match_ip("::ffff:192.0.2.1")] == ["192.0.2.1"]
    assert index.match_ip("192.0.2.3") == []
    assert index.counts == {"plain": 2}


def test_plain_lane_and_indicator_give_one_attribution() -> None:
    parsed = parse_feed("ip", "192.0.2.1\n192.0.2.1/32\n")  # one address written twice
    index = _index(_feed("list", parsed.indicators, kinds=DEFAULT_KINDS["ip"],
                         plain_ipv4=parsed.plain_ipv4))
    assert len(index.match_ip("192.0.2.1")) == 1


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("::ffff:198.51.100.0/120", "198.51.100.5"),
        ("::ffff:198.51.100.0/120", "::ffff:198.51.100.5"),
    ],
)
def test_ipv4_mapped_feed_entry_matches(entry: str, address: str) -> None:
    parsed = parse_feed("ip", entry + "\n")
    index = _index(_feed("mapped", parsed.indicators, kinds=DEFAULT_KINDS["ip"]))
    assert len(index.match_ip(address)) == 1


# --- host names ------------------------------------------------------------------------------

HOSTS = _index(_feed("names", [
    Indicator(Kind.DOMAIN, "evil.example"),
    Indicator(Kind.HOST, "exact.example"),
    Indicator(Kind.DOMAIN, "xn--bcher-kva.example"),
]))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("evil.example", [(Kind.DOMAIN, "evil.example")]),
        ("sub.evil.example", [(Kind.DOMAIN, "evil.example")]),
        ("a.b.c.evil.example", [(Kind.DOMAIN, "evil.example")]),
        ("notevil.example", []),  # a label boundary, not a substring
        ("evil.example.org", []),
        ("example", []),
        ("exact.example", [(Kind.HOST, "exact.example")]),
        ("www.exact.example", []),  # HOST is exact only
        ("shop.xn--bcher-kva.example", [(Kind.DOMAIN, "xn--bcher-kva.example")]),
    ],
)
def test_match_host(host: str, expected: list[tuple[Kind, str]]) -> None:
    assert [(m.kind, m.indicator) for m in HOSTS.match_host(host)] == expected


# --- URLs and paths --------------------------------------------------------------------------

URLS = _index(_feed("links", [
    Indicator(Kind.URL, "http://203.0.113.9:8080/bins/x86", ("mirai",)),
    Indicator(Kind.URL, "http://dl.example/get.php?id=7", ("q",)),
    Indicator(Kind.URL, "http://dl.example/file.exe", ("noquery",)),
    Indicator(Kind.PATH, "/Mozi.m", ("mozi",)),
    Indicator(Kind.IP, "203.0.113.9", ("host",)),
]))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://203.0.113.9:8080/bins/x86",
         [(Kind.IP, "203.0.113.9"), (Kind.URL, "http://203.0.113.9:8080/bins/x86")]),
        ("HTTP://203.0.113.9:8080/bins/./x86#frag",
         [(Kind.IP, "203.0.113.9"), (Kind.URL, "http://203.0.113.9:8080/bins/x86")]),
        ("http://203.0.113.9:8081/bins/x86", [(Kind.IP, "203.0.113.9")]),  # another port
        ("http://dl.example/get.php?id=7", [(Kind.URL, "http://dl.example/get.php?id=7")]),
        ("http://dl.example/get.php?id=8", []),  # the listed URL has a query: exact only
        ("http://dl.example/get.php", []),
        # a URL listed without query also matches when the request adds one
        ("http://dl.example/file.exe?utm=1", [(Kind.URL, "http://dl.example/file.exe")]),
        ("http://dl.example/file.exe", [(Kind.URL, "http://dl.example/file.exe")]),
        ("https://dl.example/file.exe", []),
        # a payload path matches on any host, by address or by name
        ("http://192.0.2.44/Mozi.m", [(Kind.PATH, "/Mozi.m")]),
        ("http://cdn.example:81/Mozi.m?x=1", [(Kind.PATH, "/Mozi.m")]),
        ("http://cdn.example/mozi.m", []),  # paths are case-sensitive
        ("http://cdn.example/dir/Mozi.m", []),
    ],
)
def test_match_url(raw: str, expected: list[tuple[Kind, str]]) -> None:
    assert [(m.kind, m.indicator) for m in URLS.match_url(normalize_url(raw))] == expected


# --- attributions ----------------------------------------------------------------------------


def test_same_key_in_two_feeds_gives_two_attributions() -> None:
    index = _index(
        _feed("first", [Indicator(Kind.IP, "192.0.2.1", ("a",)), Indicator(Kind.DOMAIN, "bad.example")]),
        _feed("second", [Indicator(Kind.IP, "192.0.2.1", ("b",))], category="botnet"),
        _feed("third", [Indicator(Kind.DOMAIN, "bad.example")]),
    )
    assert [m.attribution for m in index.match_ip("192.0.2.1")] == [
        Attribution("first", "thingbot", ("a",)), Attribution("second", "botnet", ("b",))]
    assert [m.attribution.feed for m in index.match_host("www.bad.example")] == ["first", "third"]


@pytest.mark.parametrize(
    ("kind", "value", "lookup"),
    [
        (Kind.IP, "192.0.2.1", "ip"),
        (Kind.IP, "2001:db8::5", "ip"),
        (Kind.CIDR, "192.0.2.0/24", "ip"),
        (Kind.DOMAIN, "bad.example", "host"),
        (Kind.HOST, "bad.example", "host"),
        (Kind.URL, "http://bad.example/x", "url"),
    ],
)
def test_repeated_key_in_one_feed_unites_tags(kind: Kind, value: str, lookup: str) -> None:
    # maltrail lists one address once per port: one attribution, tags united in order
    tags = [(f"port:{n}",) for n in range(MAX_TAGS + 3)]
    index = _index(_feed("trail", [Indicator(kind, value, t) for t in [(), *tags, tags[0]]]))
    if lookup == "ip":
        probe = value.partition("/")[0]
        matches = index.match_ip(probe if kind is Kind.IP else "192.0.2.9")
    elif lookup == "host":
        matches = index.match_host("bad.example")
    else:
        matches = index.match_url(normalize_url(value))
    (match,) = matches
    assert match.attribution.feed == "trail"
    assert match.attribution.tags == tuple(t for (t,) in tags[:MAX_TAGS])


def test_kinds_not_asked_for_are_not_indexed() -> None:
    indicators = [
        Indicator(Kind.IP, "192.0.2.1"),
        Indicator(Kind.CIDR, "198.51.100.0/24"),
        Indicator(Kind.HOST, "files.example"),
        Indicator(Kind.DOMAIN, "bad.example"),
        Indicator(Kind.URL, "http://files.example/a.exe"),
        Indicator(Kind.PATH, "/x.sh"),
    ]
    index = _index(_feed("some", indicators, kinds=frozenset({Kind.URL, Kind.PATH}),
                         plain_ipv4=["192.0.2.2"]))
    assert index.match_ip("192.0.2.1") == []
    assert index.match_ip("192.0.2.2") == []  # the plain lane is IP too
    assert index.match_ip("198.51.100.1") == []
    assert index.match_host("files.example") == []
    assert index.match_host("bad.example") == []
    assert [m.kind for m in index.match_url(normalize_url("http://files.example/a.exe"))] == [Kind.URL]
    assert [m.kind for m in index.match_url(normalize_url("http://other.example/x.sh"))] == [Kind.PATH]
    assert index.counts == {"some": 2}
    assert len(index) == 2


def test_counts_per_feed() -> None:
    index = _index(
        _feed("a", [Indicator(Kind.CIDR, "10.0.0.0/8"), Indicator(Kind.DOMAIN, "x.example")],
              plain_ipv4=["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
        _feed("b", [Indicator(Kind.URL, "http://x.example/")]),
        _feed("empty", []),
    )
    assert index.counts == {"a": 5, "b": 1, "empty": 0}
    assert len(index) == 6


# --- real feeds ------------------------------------------------------------------------------


def _real(feeds_dir: Path, fmt: str, name: str, relpath: str) -> FeedInput:
    parsed = parse_feed(fmt, (feeds_dir / relpath).read_text(encoding="utf-8"))
    return FeedInput(name, "thingbot", DEFAULT_KINDS[fmt], parsed.indicators, parsed.plain_ipv4)


@pytest.fixture(scope="module")
def real_index(feeds_dir: Path) -> ReputationIndex:
    return ReputationIndex.build([
        _real(feeds_dir, "urlhaus_csv", "urlhaus", "urlhaus/urlhaus_csv_online_2026-01-27.csv"),
        _real(feeds_dir, "spamhaus_drop", "drop", "spamhaus_drop/drop_v4.json"),
        _real(feeds_dir, "maltrail", "gafgyt", "maltrail_iot/elf_gafgyt.txt"),
    ])


@pytest.mark.parametrize(
    ("raw", "feed", "kind", "tags"),
    [
        # "3764673","2026-01-27 17:51:19","http://113.237.162.75:53983/i",...,"32-bit,elf,mips,Mozi"
        ("http://113.237.162.75:53983/i", "urlhaus", Kind.URL, ("32-bit", "elf", "mips", "mozi")),
        ("http://113.237.162.75:53983/i", "urlhaus", Kind.IP, ("32-bit", "elf", "mips", "mozi")),
        # a listed file on github.com: the URL is listed, the whole site is not
        ("https://github.com/caio-arc/links/raw/refs/heads/main/Application.zip", "urlhaus", Kind.URL,
         ("smartloader", "stealc", "zip")),
        # {"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}
        ("http://1.10.20.5/", "drop", Kind.CIDR, ("sbl256894",)),
        # maltrail elf_gafgyt.txt line 6677: /Mozi.a, on any host
        ("http://192.0.2.77:8080/Mozi.a", "gafgyt", Kind.PATH, ()),
        ("http://printer.example/Mozi.a", "gafgyt", Kind.PATH, ()),
    ],
)
def test_real_feeds_match(real_index: ReputationIndex, raw: str, feed: str, kind: Kind,
                          tags: tuple[str, ...]) -> None:
    found = [(m.attribution.feed, m.kind, m.attribution.tags)
             for m in real_index.match_url(normalize_url(raw))]
    assert (feed, kind, tags) in found


@pytest.mark.parametrize(
    "raw",
    [
        "https://github.com/",
        "https://github.com/python/cpython",
        "http://1.10.32.1/",  # just past 1.10.16.0/20
        "http://printer.example/index.html",
    ],
)
def test_real_feeds_do_not_match(real_index: ReputationIndex, raw: str) -> None:
    assert real_index.match_url(normalize_url(raw)) == []


def test_real_urlhaus_hosts_are_not_indexed_by_default(real_index: ReputationIndex) -> None:
    assert Kind.HOST not in DEFAULT_KINDS["urlhaus_csv"]
    assert real_index.match_host("github.com") == []
    assert real_index.match_ip("1.10.20.5")[0].indicator == "1.10.16.0/20"


# --- lookup cost ----------------------------------------------------------------------------

PREFIX_LENGTHS = (12, 20, 24, 28)


class _CountingTable(dict[int, Slot]):
    """A network table that counts its probes."""

    probes = 0

    def get(self, key: int, default: Slot | None = None) -> Slot | None:  # type: ignore[override]
        _CountingTable.probes += 1
        return super().get(key, default)


def _synthetic(entries: int) -> ReputationIndex:
    """Entries spread over four prefix lengths and all first octets."""
    indicators = []
    for i in range(entries):
        prefixlen = PREFIX_LENGTHS[i % len(PREFIX_LENGTHS)]
        address = ipaddress.IPv4Address((i * 2_654_435_761) % 2**32)
        network = ipaddress.IPv4Network((int(address) >> (32 - prefixlen) << (32 - prefixlen),
                                         prefixlen))
        indicators.append(Indicator(Kind.CIDR, str(network)))
    return _index(_feed("synthetic", indicators))


@pytest.mark.parametrize("entries", [1_000, pytest.param(300_000, marks=pytest.mark.slow)])
def test_probes_follow_prefix_lengths_not_entries(entries: int) -> None:
    index = _synthetic(entries)
    networks = index.networks
    assert networks._prefixes[4] == tuple(sorted(PREFIX_LENGTHS, reverse=True))
    for prefixlen in PREFIX_LENGTHS:
        networks._nets[4][prefixlen] = _CountingTable(networks._nets[4][prefixlen])
    for address in ("1.2.3.4", "203.0.113.9", "255.255.255.255", "::ffff:10.0.0.1"):
        _CountingTable.probes = 0
        index.match_ip(address)
        assert _CountingTable.probes <= len(PREFIX_LENGTHS)
