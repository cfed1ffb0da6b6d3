"""Feed parsers on the real snapshots in ../shared/data/feeds and on small malformed inputs."""

from __future__ import annotations

import gc
import json
from collections import Counter
from pathlib import Path

import pytest

from clickguard.errors import FeedError
from clickguard.intel.parsers import (
    DEFAULT_KINDS,
    FORMATS,
    Indicator,
    Kind,
    ParsedFeed,
    SkippedLine,
    parse_feed,
)


def _read(feeds_dir: Path, name: str) -> str:
    return (feeds_dir / name).read_text(encoding="utf-8")


def _kinds(parsed: ParsedFeed) -> Counter[Kind]:
    return Counter(i.kind for i in parsed.all())


# --- the real snapshots: counts as each folder's SOURCE.md states them ----------------------


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("criticalpath_feeds/abuse-ch-ipblocklist.txt", 7_980),
        ("criticalpath_feeds/compromised-ips.txt", 539),
        ("criticalpath_feeds/threatfox.txt", 3_483),
        ("criticalpath_feeds/binarydefense.txt", 2_662),
    ],
)
def test_ip_real_lists(feeds_dir: Path, name: str, lines: int) -> None:
    parsed = parse_feed("ip", _read(feeds_dir, name))
    assert parsed.skipped == []
    assert parsed.size == lines  # duplicates kept: the index de-duplicates
    assert len(parsed.plain_ipv4) == lines  # plain dotted quads take the fast lane
    assert _kinds(parsed) == {Kind.IP: lines}


@pytest.mark.parametrize(("min_count", "entries"), [(1, 120_430), (3, 14_217), (5, 1_413), (8, 23)])
def test_ipsum_thresholds(feeds_dir: Path, min_count: int, entries: int) -> None:
    parsed = parse_feed("ipsum", _read(feeds_dir, "ipsum/ipsum.txt"), min_count=min_count)
    assert parsed.skipped == []  # below-threshold lines are dropped, not skipped
    assert len(parsed.indicators) == entries
    assert all(i.kind is Kind.IP for i in parsed.indicators)
    assert all(int(i.tags[0].removeprefix("count:")) >= min_count for i in parsed.indicators)
    if min_count > 1:
        # ipsum.txt cut at N holds exactly the addresses of upstream's levels/N.txt
        level = parse_feed("ipsum", _read(feeds_dir, f"ipsum/levels_{min_count}.txt"))
        assert level.skipped == []
        assert all(i.tags == () for i in level.indicators)
        assert {i.value for i in level.indicators} == {i.value for i in parsed.indicators}


def test_ipsum_count_tags(feeds_dir: Path) -> None:
    parsed = parse_feed("ipsum", _read(feeds_dir, "ipsum/ipsum.txt"))
    assert parsed.indicators[0] == Indicator(Kind.IP, "77.90.185.20", ("count:10",))
    assert Counter(i.tags for i in parsed.indicators)[("count:10",)] == 3


@pytest.mark.parametrize("name", ["drop_v4.json", "spamhaus_drop_list.txt"])
def test_spamhaus_both_forms(feeds_dir: Path, name: str) -> None:
    parsed = parse_feed("spamhaus_drop", _read(feeds_dir, f"spamhaus_drop/{name}"))
    assert parsed.skipped == []
    assert len(parsed.indicators) == 1_670
    assert _kinds(parsed) == {Kind.CIDR: 1_670}
    assert parsed.indicators[0].value == "1.10.16.0/20"
    if name.endswith(".json"):
        assert parsed.indicators[0].tags == ("sbl256894",)
        assert all(len(i.tags) == 1 and i.tags[0].startswith("sbl") for i in parsed.indicators)


def test_spamhaus_forms_agree(feeds_dir: Path) -> None:
    ndjson = parse_feed("spamhaus_drop", _read(feeds_dir, "spamhaus_drop/drop_v4.json"))
    text = parse_feed("spamhaus_drop", _read(feeds_dir, "spamhaus_drop/spamhaus_drop_list.txt"))
    assert [i.value for i in ndjson.indicators] == [i.value for i in text.indicators]


@pytest.mark.parametrize(
    ("name", "rows", "ip_hosts", "name_hosts", "tag_counts"),
    [
        ("urlhaus_csv_online_2026-01-27.csv", 13_710, 1_979, 674,
         {"mirai": 1_725, "hajime": 1_267, "mozi": 553, "gafgyt": 70, "bashlite": 1,
          "elf": 3_455}),
        ("urlhaus_csv_online_2025-04-21.csv", 11_125, 2_345, 661,
         {"mirai": 1_271, "hajime": 1_789, "mozi": 924, "gafgyt": 185, "moobot": 119,
          "elf": 4_069}),
    ],
)
def test_urlhaus_exports(
    feeds_dir: Path, name: str, rows: int, ip_hosts: int, name_hosts: int,
    tag_counts: dict[str, int],
) -> None:
    parsed = parse_feed("urlhaus_csv", _read(feeds_dir, f"urlhaus/{name}"))
    assert parsed.skipped == []  # the 2025 file's bare header line is recognised, not skipped
    assert _kinds(parsed) == {Kind.URL: rows, Kind.IP: ip_hosts, Kind.HOST: name_hosts}
    urls = [i for i in parsed.indicators if i.kind is Kind.URL]
    for tag, count in tag_counts.items():
        assert sum(tag in i.tags for i in urls) == count, tag
    hosts = [i.value for i in parsed.indicators if i.kind is not Kind.URL]
    assert len(hosts) == len(set(hosts))


def test_urlhaus_first_row(feeds_dir: Path) -> None:
    text = _read(feeds_dir, "urlhaus/urlhaus_csv_online_2025-04-21.csv")
    parsed = parse_feed("urlhaus_csv", text)
    first = parsed.indicators[0]
    assert first.kind is Kind.URL
    assert "117.209.87.242:60905/bin.sh" in first.value
    assert first.tags == ("32-bit", "elf", "mips", "mozi")
    by_value = {i.value: i for i in parsed.indicators if i.kind is Kind.IP}
    assert {"32-bit", "elf", "mips", "mozi"} <= set(by_value["117.209.87.242"].tags)


# Per SOURCE.md's table: path / domain / IP:port / full-URL lines.
MALTRAIL = {
    "elf_mirai.txt": (37_611, 4_386, 10_916, 1_885),
    "elf_gafgyt.txt": (15_808, 491, 32_670, 293),
    "elf_kaiten.txt": (63, 54, 50, 11),
    "elf_hideseek.txt": (0, 0, 171, 0),
    "elf_hajime.txt": (0, 1, 92, 0),
    "elf_dofloo.txt": (7, 6, 61, 2),
    "elf_moobot.txt": (1, 36, 1, 1),
    "elf_fodcha.txt": (0, 24, 0, 0),
    "elf_vpnfilter.txt": (0, 11, 2, 0),
    "elf_iotreaper.txt": (1, 4, 0, 0),
}


@pytest.mark.parametrize(("name", "counts"), MALTRAIL.items())
def test_maltrail_trails(feeds_dir: Path, name: str, counts: tuple[int, int, int, int]) -> None:
    paths, domains, ip_ports, urls = counts
    parsed = parse_feed("maltrail", _read(feeds_dir, f"maltrail_iot/{name}"))
    assert parsed.skipped == []
    # Every full URL in these files is a bare http://IP[:port], which lists the IP as well.
    expected = {Kind.PATH: paths, Kind.DOMAIN: domains, Kind.IP: ip_ports + urls, Kind.URL: urls}
    assert _kinds(parsed) == {k: n for k, n in expected.items() if n}


def test_maltrail_entry_shapes(feeds_dir: Path) -> None:
    parsed = parse_feed("maltrail", _read(feeds_dir, "maltrail_iot/elf_mirai.txt"))
    assert parsed.indicators[0] == Indicator(Kind.PATH, "/izuku.sh")
    assert Indicator(Kind.IP, "134.209.72.171", ("port:4554",)) in parsed.indicators  # " IP:port"
    assert Indicator(Kind.DOMAIN, "ffvfvcnc.changeme.com") in parsed.indicators


def test_openphish_feed(feeds_dir: Path) -> None:
    parsed = parse_feed("urls", _read(feeds_dir, "openphish/openphish_feed.txt"))
    assert parsed.skipped == []
    # SOURCE.md says 499 lines, which is `wc -l`: the 500th URL has no final newline.
    assert _kinds(parsed) == {Kind.URL: 500}


# --- synthetic inputs: shapes, comments, malformed lines -------------------------------------


@pytest.mark.parametrize(
    ("text", "indicators"),
    [
        ("1.2.3.4\n", [Indicator(Kind.IP, "1.2.3.4")]),
        ("# header\n\n1.2.3.4  # trailing comment\n   \n", [Indicator(Kind.IP, "1.2.3.4")]),
        ("1.2.3.4\r\n5.6.7.8\r\n", [Indicator(Kind.IP, "1.2.3.4"), Indicator(Kind.IP, "5.6.7.8")]),
        ("\ufeff1.2.3.4", [Indicator(Kind.IP, "1.2.3.4")]),
        ("10.1.2.3/8", [Indicator(Kind.CIDR, "10.0.0.0/8")]),  # host bits cleared
        ("10.1.2.3/32", [Indicator(Kind.IP, "10.1.2.3")]),
        ("2001:DB8::0:1", [Indicator(Kind.IP, "2001:db8::1")]),
        ("2001:db8:0:0:0:0:0:1/128", [Indicator(Kind.IP, "2001:db8::1")]),
        ("2001:db8::1/32 # v6 net", [Indicator(Kind.CIDR, "2001:db8::/32")]),
        ("::ffff:1.2.3.4", [Indicator(Kind.IP, "::ffff:102:304")]),
    ],
)
def test_ip_shapes(text: str, indicators: list[Indicator]) -> None:
    parsed = parse_feed("ip", text)
    assert parsed.all() == indicators
    assert parsed.skipped == []


@pytest.mark.parametrize(
    ("fmt", "text", "bad_lines"),
    [
        ("ip", "1.2.3.4\n1.2.3.256\n\n# c\n01.2.3.4\nfe80::1%eth0\n10.0.0.0/33\nhost.example\n",
         [2, 5, 6, 7, 8]),
        ("ip", "1.2.3.4 5.6.7.8\n1.2.3\x00.4\n::1\n", [1, 2]),
        ("ipsum", "# c\n1.2.3.4\t3\n1.2.3.4\tthree\n300.1.1.1\t2\n1.2.3.4\t2\textra\n", [3, 4, 5]),
        ("urlhaus_csv",
         '# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n'
         '"1","2025-01-01 00:00:00","http://1.2.3.4/x","online","x","malware_download","None","l","r"\n'
         '"2","2025-01-01 00:00:00","http://1.2.3.4/y"\n'
         '"3","2025-01-01 00:00:00","http://[::1/z","online","x","malware_download","None","l","r"\n',
         [3, 4]),
        ("spamhaus_drop", "; comment\n1.2.3.0/24 ; SBL1\nnot-a-net ; SBL2\n1.2.3.0/40\n", [3, 4]),
        ("spamhaus_drop",
         '{"cidr":"1.2.3.0/24","sblid":"SBL1","rir":"ripencc"}\n'
         "not json\n"
         '["a list"]\n'
         '{"sblid":"SBL3"}\n'
         '{"cidr":"1.2.3.0/99","sblid":"SBL4"}\n'
         '{"type":"metadata","records":1}\n',
         [2, 3, 4, 5]),
        ("maltrail", "# c\n/Mozi.m\n1.2.3.4:80a\n1.2.3.4:\nhttp://[::1\nbad|name\nx.example:80\n",
         [3, 4, 5, 6, 7]),
        ("domains", "example.com\nbad^name.example\n1.2.3.4\n10.9.8.7 example.net\n", [2, 3, 4]),
        ("urls", "http://ok.example/\nhttp://[::1/\nhttps://ok.example/a#frag\n", [2]),
    ],
)
def test_malformed_lines_are_skipped(fmt: str, text: str, bad_lines: list[int]) -> None:
    parsed = parse_feed(fmt, text)
    assert [s.line for s in parsed.skipped] == bad_lines
    assert all(isinstance(s, SkippedLine) and s.reason for s in parsed.skipped)
    assert parsed.size


@pytest.mark.parametrize("bad_at", [[1], [10_000], [2, 3, 4], [17, 5_000, 9_999]])
def test_ip_bad_lines_among_many_plain_ones(bad_at: list[int]) -> None:
    lines = [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(10_000)]
    for number in bad_at:
        lines[number - 1] = "10.0.0.999"
    parsed = parse_feed("ip", "\n".join(lines) + "\n")
    assert [s.line for s in parsed.skipped] == bad_at
    assert [i.value for i in parsed.all()] == [
        line for number, line in enumerate(lines, 1) if number not in bad_at
    ]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_empty_text(fmt: str) -> None:
    assert parse_feed(fmt, "") == ParsedFeed([], [])
    assert parse_feed(fmt, "\n\n") == ParsedFeed([], [])


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("ip", "# only junk\nnot-an-ip\n"),
        ("ipsum", "nope\t3\n"),
        ("urlhaus_csv", '"1","2"\n'),
        ("spamhaus_drop", "{broken\n"),
        ("maltrail", "1.2.3.4:x\n"),
        ("domains", "a b c\n"),
        ("urls", "http://[::1\n"),
    ],
)
def test_all_lines_bad_still_returns(fmt: str, text: str) -> None:
    parsed = parse_feed(fmt, text)
    assert parsed.size == 0
    assert parsed.skipped


def test_unknown_format() -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed("hosts", "0.0.0.0 example.com")
    assert caught.value.problems[0].field == "format"
    assert "hosts" in str(caught.value)


def test_default_kinds() -> None:
    assert DEFAULT_KINDS.keys() == FORMATS.keys()
    # URLhaus host names include github.com and drive.google.com: indexing them is opt-in.
    assert Kind.HOST not in DEFAULT_KINDS["urlhaus_csv"]
    assert DEFAULT_KINDS["urlhaus_csv"] == {Kind.URL, Kind.IP}


def test_ipsum_threshold_and_levels_lines() -> None:
    text = "# IP\tcount\n1.1.1.1\t5\n2.2.2.2\t2\n3.3.3.3\n"
    parsed = parse_feed("ipsum", text, min_count=3)
    assert parsed == ParsedFeed(
        [Indicator(Kind.IP, "1.1.1.1", ("count:5",)), Indicator(Kind.IP, "3.3.3.3")], []
    )


def test_min_count_ignored_elsewhere() -> None:
    assert parse_feed("ip", "1.1.1.1\n", min_count=9).all() == [Indicator(Kind.IP, "1.1.1.1")]


def test_urlhaus_bare_header_tags_and_host_merge() -> None:
    text = (
        "id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n"
        '"1","d","http://1.2.3.4:8080/i","online","d","malware_download","elf,Mozi","l","r"\n'
        '"2","d","http://1.2.3.4:8080/bin.sh","online","d","malware_download","Mirai,elf","l","r"\n'
        '"3","d","https://github.com/a/b/raw/x.exe","online","d","malware_download","None","l","r"\n'
    )
    parsed = parse_feed("urlhaus_csv", text)
    assert parsed.skipped == []
    assert [i.tags for i in parsed.indicators if i.kind is Kind.URL] == [
        ("elf", "mozi"), ("mirai", "elf"), ()
    ]
    assert [i for i in parsed.indicators if i.kind is not Kind.URL] == [
        Indicator(Kind.IP, "1.2.3.4", ("elf", "mozi", "mirai")),
        Indicator(Kind.HOST, "github.com"),
    ]


def test_spamhaus_classic_text_form() -> None:
    text = "; Spamhaus DROP List\n1.2.3.4/24 ; SBL123\n5.6.7.8/32\n"
    assert parse_feed("spamhaus_drop", text) == ParsedFeed(
        [Indicator(Kind.CIDR, "1.2.3.0/24", ("sbl123",)), Indicator(Kind.IP, "5.6.7.8")], []
    )


@pytest.mark.parametrize(("records", "skipped"), [(2, []), (3, [3]), ("2", [3])])
def test_spamhaus_metadata_count(records: object, skipped: list[int]) -> None:
    lines = [
        {"cidr": "1.2.3.0/24", "sblid": "SBL1", "rir": "ripencc"},
        {"cidr": "5.6.0.0/16", "sblid": "SBL2", "rir": "arin"},
        {"type": "metadata", "timestamp": 1, "records": records},
    ]
    parsed = parse_feed("spamhaus_drop", "\n".join(json.dumps(x) for x in lines) + "\n")
    assert len(parsed.indicators) == 2
    assert [s.line for s in parsed.skipped] == skipped


def test_maltrail_kinds() -> None:
    text = (
        "# Reference: https://example.org/\n\n"
        "/izuku.arm7\n"
        "c2.Example.COM\n"
        "1.2.3.4\n"
        "5.6.7.8:2323\n"
        "http://9.9.9.9\n"
        "http://9.9.9.10:8080\n"
        "http://9.9.9.11/x.sh\n"
        "103.124.104.118:79548\n"  # as in elf_gafgyt: the address stays, the bad port goes
    )
    parsed = parse_feed("maltrail", text)
    assert parsed.skipped == []
    got = [(i.kind, i.tags) for i in parsed.indicators]
    assert got == [
        (Kind.PATH, ()), (Kind.DOMAIN, ()), (Kind.IP, ()), (Kind.IP, ("port:2323",)),
        (Kind.URL, ()), (Kind.IP, ()),
        (Kind.URL, ()), (Kind.IP, ("port:8080",)),
        (Kind.URL, ()),
        (Kind.IP, ()),
    ]
    values = [i.value for i in parsed.indicators]
    assert values[:4] == ["/izuku.arm7", "c2.example.com", "1.2.3.4", "5.6.7.8"]
    assert values[5] == "9.9.9.9"
    assert values[7] == "9.9.9.10"


def test_domains_forms() -> None:
    text = (
        "# blocklist\n"
        "Example.COM.\n"
        "*.wild.example\n"
        "127.0.0.1 localhost\n"
        "0.0.0.0 0.0.0.0\n"
        "0.0.0.0 hosts.example  other.example # two names\n"
        "bücher.example\n"
    )
    parsed = parse_feed("domains", text)
    assert parsed.skipped == []
    assert parsed.indicators == [
        Indicator(Kind.DOMAIN, d)
        for d in ("example.com", "wild.example", "hosts.example", "other.example",
                  "xn--bcher-kva.example")
    ]


def test_urls_keep_hash_inside_url() -> None:
    parsed = parse_feed("urls", "# comment\nhttp://phish.example/login?a=1#x\n")
    assert parsed.skipped == []
    assert [i.kind for i in parsed.indicators] == [Kind.URL]
    assert parsed.indicators[0].value.startswith("http://phish.example/login?a=1")


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_restored(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        parse_feed("ip", "1.2.3.4\n")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


# --- bad lines the fuzzer found: each skipped with its reason, the rest of the feed kept ---------

_ROW = '"{n}","2026-01-27","http://198.51.100.{n}/x","online","","malware_download","elf"'


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('"2","d","http://198.51.100.2/a\rb,"online","","x","elf"', "bad CSV"),  # lone CR, unquoted
        ('"2","d","http://198.51.100.2/' + "x" * 200_000 + '","online","","x","elf"', "field larger"),
        ('"2","d","http://198.51.100.2/x","online","","x","elf', "unexpected end of data"),
        ('"2","d","http://198.51.100.2/x"x,"online","","x","elf"', "bad CSV"),
        ("# id,dateadded,\"url", "column header"),  # a header csv cannot read keeps the old columns
    ],
)
def test_urlhaus_bad_csv_line_is_skipped_alone(bad_line: str, reason: str) -> None:
    # One reader per line: an unterminated quote does not swallow the rows after it.
    text = "\n".join([_ROW.format(n=1), bad_line, _ROW.format(n=3), _ROW.format(n=4)]) + "\n"
    parsed = parse_feed("urlhaus_csv", text)
    urls = [i.value for i in parsed.indicators if i.kind is Kind.URL]
    assert urls == [f"http://198.51.100.{n}/x" for n in (1, 3, 4)]
    assert [s.line for s in parsed.skipped] == [2]
    assert reason in parsed.skipped[0].reason


@pytest.mark.parametrize(
    "banner",
    ["# abuse.ch URLhaus\r export", "#a\rb", '# "quoted', "# \x00", "#" + "x" * 200_000],
)
def test_urlhaus_banner_lines_are_comments_whatever_they_hold(banner: str) -> None:
    parsed = parse_feed("urlhaus_csv", f"{banner}\n{_ROW.format(n=1)}\n")
    assert parsed.skipped == []
    assert "http://198.51.100.1/x" in [i.value for i in parsed.indicators]


def test_urlhaus_nul_inside_a_field_is_read_as_a_browser_reads_the_url() -> None:
    parsed = parse_feed("urlhaus_csv", '"1","d","http://198.51.100.1/a\x00b","online","","x","elf"\n')
    assert parsed.skipped == []
    assert parsed.indicators[0].value == "http://198.51.100.1/a%00b"


@pytest.mark.parametrize(
    ("line", "skipped"),
    [
        ('{"a":' + "[" * 3000, True),
        ('{"a":' + "{" * 100_000, True),
        ('{"cidr":"198.51.100.0/24","x":' + "[" * 33 + "]" * 33 + "}", True),
        ('{"cidr":"198.51.100.0/24","x":' + "[" * 31 + "]" * 31 + "}", False),
        ('{"cidr":"198.51.100.0/24","x":"' + "[" * 3000 + '"}', False),  # inside a string: text
        ('{"cidr":"198.51.100.0/24","x":"\\"' + "[" * 3000 + '"}', False),  # an escaped quote
    ],
)
def test_spamhaus_json_nesting_is_bounded(line: str, skipped: bool) -> None:
    parsed = parse_feed("spamhaus_drop", f'{{"cidr":"203.0.113.0/24"}}\n{line}\n')
    assert [s.line for s in parsed.skipped] == ([2] if skipped else [])
    assert ("nested" in parsed.skipped[0].reason) if skipped else parsed.size == 2
    assert parsed.all()[0].value == "203.0.113.0/24"


@pytest.mark.parametrize(
    ("fmt", "line", "value"),
    [
        ("domains", "evil.example..", "evil.example"),
        ("domains", "0.0.0.0 evil.example...", "evil.example"),
        ("maltrail", "evil.example..", "evil.example"),
        ("maltrail", "198.51.100.7..", "198.51.100.7"),
        ("urls", "http://evil.example../x", "http://evil.example/x"),
    ],
)
def test_trailing_dots_give_the_key_requests_are_looked_up_in(fmt: str, line: str, value: str) -> None:
    parsed = parse_feed(fmt, f"{line}\n")
    assert parsed.skipped == []
    assert value in [i.value for i in parsed.all()]


@pytest.mark.parametrize(("fmt", "line"), [("domains", ".."), ("maltrail", "..."), ("urls", "http://../")])
def test_a_host_of_dots_alone_is_skipped(fmt: str, line: str) -> None:
    parsed = parse_feed(fmt, f"{line}\n")
    assert parsed.size == 0 and [s.line for s in parsed.skipped] == [1]
