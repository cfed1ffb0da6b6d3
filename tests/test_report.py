"""Reports over the audit store: exact figures on a hand-made log, a synthetic campaign through the CLI."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bench.campaign import write_campaign
from clickguard.audit import report, store
from tests.harness import REPO

NOW = time.time()
HOSTILE_USER = "<script>alert(1)</script>"
HOSTILE_URL = "http://xss.example/<script>alert(2)</script>?a=\"b\"&c='d'"


def _iso(ago: float) -> str:
    """A ts `ago` seconds before the test started, as the audit log writes it."""
    return datetime.fromtimestamp(NOW - ago, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finding(code: str, feed: str | None = None, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"code": code, "detail": f"{code} found"}
    if feed:
        out["feed"] = feed
    if tags:
        out["tags"] = list(tags)
    return out


def _record(ref: str, event: str, ago: float, action: str, findings: list[dict[str, Any]], *,
            client: str, user: str | None = None, url: str = "http://evil.example/x",
            **extra: Any) -> dict[str, Any]:
    """One record shaped as audit.record shapes it."""
    out: dict[str, Any] = {"ts": _iso(ago), "ref": ref, "event": event, "client": client, "user": user,
                           "url": url, "action": action,
                           "reasons": list(dict.fromkeys(f["code"] for f in findings)),
                           "details": findings, "origin_ip": extra.pop("origin_ip", None)}
    out.update(extra)
    return out


MIRAI_ORIGIN = _finding("origin.thingbot", "elf_mirai", ("mirai", "port:23"))
UNKNOWN = _finding("origin.unknown_landing")
URLHAUS = _finding("landing.thingbot", "urlhaus", ("elf", "mozi"))
HOUR, DAY = 3600, 86400

# alice: a proxy user; bob: a plain recipient; a hashed recipient; a client alone; a hostile name.
LOG = [
    _record("c1", "click", HOUR, "warn", [MIRAI_ORIGIN, UNKNOWN], client="10.0.0.1", user="alice",
            recipient="alice@corp.example", origin_ip="203.0.113.5", host="evil.example", click_id="c1",
            hop=0),
    _record("r2", "continue", HOUR - 30, "allow",
            [{"code": "origin.thingbot", "detail": "the user chose to continue past the warning"},
             {"code": "origin.unknown_landing", "detail": "the user chose to continue past the warning"}],
            client="10.0.0.1", user="alice", origin_ip="203.0.113.5", host="evil.example",
            click_id="c1", warn_ref="c1"),
    _record("r3", "hop", HOUR - 31, "allow", [MIRAI_ORIGIN], client="10.0.0.1", user="alice",
            recipient="alice@corp.example", origin_ip="203.0.113.5", host="evil.example", click_id="c1",
            hop=1, continued=True),
    _record("r4", "response", HOUR - 32, "block",
            [_finding("landing.appliance"), _finding("response.drive_by")], client="10.0.0.1", user="alice",
            url="http://198.51.100.7:8080/", recipient="alice@corp.example", origin_ip="203.0.113.5",
            host="198.51.100.7", click_id="c1", hop=1,
            inspection={"fingerprint": {"name": "TP-Link router login realm", "class": "router",
                                        "appliance": True},
                        "payload": {"kind": "elf", "arch": "mips", "label": "ELF executable (MIPS)"}}),
    _record("c2", "click", 2 * HOUR, "block", [MIRAI_ORIGIN, URLHAUS], client="10.0.0.2",
            recipient="bob@corp.example", origin_ip="203.0.113.5", url="http://192.0.2.66/i",
            host="192.0.2.66", click_id="c2", hop=0),
    _record("c3", "click", 3 * HOUR, "allow", [], client="10.0.0.2", recipient="bob@corp.example",
            origin_ip="198.51.100.20", url="https://news.example.com/a", host="news.example.com",
            click_id="c3", hop=0),
    _record("r7", "hop", 3 * HOUR - 1, "block", [_finding("landing.thingbot", "urlhaus", ("elf",))],
            client="10.0.0.2", recipient="bob@corp.example", origin_ip="198.51.100.20",
            url="http://192.0.2.66/", host="192.0.2.66", click_id="c3", hop=1),
    _record("c4", "click", 3 * DAY, "warn", [_finding("origin.thingbot", "ipsum", ("count:3",)), UNKNOWN],
            client="10.0.0.3", recipient="0123456789abcdef", origin_ip="203.0.113.9", host="evil.example",
            click_id="c4", hop=0),
    _record("r9", "click", 10 * DAY, "block", [_finding("link.bad_signature")], client="10.0.0.9",
            url="http://clickguard.local/v1/AAAA/x"),
    _record("r10", "decision", 30 * 60, "block", [URLHAUS], client="10.0.0.1", user="alice",
            url="http://192.0.2.66/", host="192.0.2.66"),
    _record("r11", "decision", 20 * 60, "allow", [], client="10.0.0.1", user="alice",
            url="https://news.example.com/", host="news.example.com"),
    _record("c5", "click", 5 * HOUR, "block", [_finding("policy.deny")], client="10.0.0.5",
            user=HOSTILE_USER, url=HOSTILE_URL, host="xss.example", click_id="c5", hop=0),
]


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _load(path: Path, log: Path) -> Path:
    connection = store.connect(path)
    try:
        imported, skipped = store.import_jsonl(connection, log)
    finally:
        connection.close()
    assert imported > 0 and skipped == 0
    return path


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    """The hand-made log, imported into a fresh store."""
    return _load(tmp_path / "audit.sqlite", _write_jsonl(tmp_path / "audit.jsonl", LOG))


@pytest.fixture
def small(small_store: Path) -> Iterator[sqlite3.Connection]:
    connection = store.connect(small_store, readonly=True)
    yield connection
    connection.close()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clickguard.cli", "report", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


# --- exact figures on the hand-made log ---------------------------------------------------------

ALL_TIME: dict[str, dict[str, Any]] = {
    "totals": {"decisions": 12, "clicks": 6, "blocks": 6, "warns": 2, "continues": 1},
    "share": {"clicks": 6, "thingbot_clicks": 3, "percent": 50.0},
}
LAST_DAY: dict[str, dict[str, Any]] = {  # c4 (3 days ago) and r9 (10 days ago) fall out
    "totals": {"decisions": 10, "clicks": 4, "blocks": 5, "warns": 1, "continues": 1},
    "share": {"clicks": 4, "thingbot_clicks": 2, "percent": 50.0},
}


@pytest.mark.parametrize(("since", "expected"), [(None, ALL_TIME), (NOW - DAY, LAST_DAY)])
def test_totals_and_share(small: sqlite3.Connection, since: float | None, expected: dict[str, Any]) -> None:
    data = report.report_dict(report.build_report(small, since=since))
    assert {k: data["totals"][k] for k in expected["totals"]} == expected["totals"]
    assert data["thingbots"]["share"] == expected["share"]


def test_timeline_adds_up(small: sqlite3.Connection) -> None:
    built = report.build_report(small)
    assert built.bucket == report.DAY  # ten days of records: daily buckets
    assert len(built.timeline) in (10, 11)  # the days from the oldest record to the newest
    assert sum(b.decisions for b in built.timeline) == 12
    assert sum(b.clicks for b in built.timeline) == 6
    assert sum(b.blocks for b in built.timeline) == 6
    assert sum(b.warns for b in built.timeline) == 2
    hourly = report.build_report(small, since=NOW - DAY)
    assert hourly.bucket == report.HOUR and len(hourly.timeline) in (25, 26)  # whole hours until now
    assert sum(b.clicks for b in hourly.timeline) == 4


@pytest.mark.parametrize(("key", "expected"), [
    ("codes", {"origin.thingbot": 5, "origin.unknown_landing": 3, "landing.thingbot": 3,
               "landing.appliance": 1, "response.drive_by": 1, "link.bad_signature": 1, "policy.deny": 1}),
    ("feeds", {"elf_mirai": 3, "urlhaus": 3, "ipsum": 1}),
    ("tags", {"mirai": 3, "port:23": 3, "elf": 3, "mozi": 2, "count:3": 1}),
])
def test_by_reason_feed_and_tag(small: sqlite3.Connection, key: str, expected: dict[str, int]) -> None:
    rows = report.report_dict(report.build_report(small))["reasons"][key]
    name = {"codes": "code", "feeds": "feed", "tags": "tag"}[key]
    assert {r[name]: r["decisions"] for r in rows} == expected
    counts = [r["decisions"] for r in rows]
    assert counts == sorted(counts, reverse=True)


def test_most_targeted(small: sqlite3.Connection) -> None:
    users = report.report_dict(report.build_report(small))["users"]
    assert users["blocked_or_warned"] == {"users": 5, "top": [
        {"user": "bob@corp.example", "kind": "recipient", "blocked": 2, "warned": 0, "total": 2},
        {"user": "0123456789abcdef", "kind": "recipient", "blocked": 0, "warned": 1, "total": 1},
        {"user": "10.0.0.9", "kind": "client", "blocked": 1, "warned": 0, "total": 1},
        {"user": HOSTILE_USER, "kind": "user", "blocked": 1, "warned": 0, "total": 1},
        {"user": "alice", "kind": "user", "blocked": 0, "warned": 1, "total": 1},
    ]}
    assert users["thingbot_mail"] == {"users": 3, "top": [
        {"user": "0123456789abcdef", "kind": "recipient", "clicks": 1},
        {"user": "alice", "kind": "user", "clicks": 1},
        {"user": "bob@corp.example", "kind": "recipient", "clicks": 1},
    ]}


def test_limit_cuts_lists_not_counts(small: sqlite3.Connection) -> None:
    users = report.report_dict(report.build_report(small, limit=2))["users"]["blocked_or_warned"]
    assert users["users"] == 5 and len(users["top"]) == 2


def test_thingbot_origins_and_appliances(small: sqlite3.Connection) -> None:
    thingbots = report.report_dict(report.build_report(small))["thingbots"]
    assert thingbots["origins"] == {"count": 2, "top": [
        {"origin_ip": "203.0.113.5", "clicks": 2, "feeds": ["elf_mirai"], "tags": ["mirai", "port:23"]},
        {"origin_ip": "203.0.113.9", "clicks": 1, "feeds": ["ipsum"], "tags": ["count:3"]},
    ]}
    assert thingbots["appliances"]["classes"] == [
        {"device_class": "router", "label": "router or gateway", "decisions": 1, "hosts": 1}]
    assert [(h["host"], h["device_class"], h["decisions"]) for h in thingbots["appliances"]["hosts"]] == [
        ("198.51.100.7", "router", 1)]


def test_continues(small: sqlite3.Connection) -> None:
    continues = report.report_dict(report.build_report(small))["continues"]
    assert continues["count"] == 1 and continues["users"] == 1
    assert [(u["user"], u["continues"], u["hosts"]) for u in continues["by_user"]] == [("alice", 1, 1)]
    (recent,) = continues["recent"]
    assert recent["ref"] == "r2" and recent["warn_ref"] == "c1" and recent["click_id"] == "c1"
    assert recent["host"] == "evil.example" and recent["client"] == "10.0.0.1"


@pytest.mark.parametrize(("by", "value", "refs"), [
    ("host", "evil.example", ["r3", "r2", "c1", "c4"]),
    ("host", "EVIL.example.", ["r3", "r2", "c1", "c4"]),  # as a host is written, not as it is typed
    ("click_id", "c1", ["r4", "r3", "r2", "c1"]),  # the click, its hop, the continue, the response
    ("click_id", "c3", ["r7", "c3"]),
    ("host", "nowhere.example", []),
])
def test_drilldown(small: sqlite3.Connection, by: str, value: str, refs: list[str]) -> None:
    records = report.drilldown(small, host=value) if by == "host" else report.drilldown(small, click_id=value)
    assert [r["ref"] for r in records] == refs


def test_drilldown_undecodable_bytes(tmp_path: Path) -> None:
    # mitmproxy keeps bytes it cannot decode as lone surrogates; the audit log escapes them.
    path = tmp_path / "audit.sqlite"
    connection = store.connect(path)
    store.insert(connection, [_record("u1", "decision", 60, "block", [URLHAUS], client="10.0.0.1",
                                      url="http://odd.example/\udcff\U0001f600", host="odd.example")])
    connection.close()
    result = _run("--store", str(path), "--host", "odd.example")
    assert result.returncode == 0, result.stderr
    assert "http://odd.example/\\udcff\U0001f600" in result.stdout


def test_drilldown_needs_one_key(small: sqlite3.Connection) -> None:
    with pytest.raises(ValueError):
        report.drilldown(small)
    with pytest.raises(ValueError):
        report.drilldown(small, host="a.example", click_id="c1")


def test_empty_store(tmp_path: Path) -> None:
    connection = store.connect(tmp_path / "empty.sqlite")
    built = report.build_report(connection)
    data = json.loads(report.report_json(built))
    assert data["totals"]["decisions"] == 0 and data["totals"]["timeline"] == []
    assert data["thingbots"]["share"] == {"clicks": 0, "thingbot_clicks": 0, "percent": None}
    assert data["first"] is None and data["users"]["blocked_or_warned"] == {"users": 0, "top": []}
    html = report.report_html(built)
    page = _Page(html)
    assert page.ids == list(report.SECTIONS)  # every section, empty or not
    assert "svg" not in page.tags and page.tags.count("h2") == 5  # no chart without figures
    assert "No records in this period." in html
    assert "decisions 0" in report.report_text(built)
    assert report.drilldown(connection, host="a.example") == []


def test_json_keys_are_stable(small: sqlite3.Connection) -> None:
    data = report.report_dict(report.build_report(small))
    assert list(data) == ["report", "generated_at", "since", "until", "first", "last", "totals", "reasons",
                          "users", "thingbots", "continues"]
    assert list(data["totals"]) == ["decisions", "clicks", "blocks", "warns", "continues", "bucket",
                                    "timeline"]
    assert list(data["thingbots"]) == ["share", "origins", "appliances"]
    assert data["report"] == report.FORMAT_VERSION


@pytest.mark.parametrize(("text", "expected"), [
    ("24h", NOW - DAY),
    ("7d", NOW - 7 * DAY),
    ("90m", NOW - 5400),
    ("1w", NOW - 7 * DAY),
    ("2026-01-27", datetime(2026, 1, 27, tzinfo=UTC).timestamp()),
    ("2026-01-27T10:00:00Z", datetime(2026, 1, 27, 10, tzinfo=UTC).timestamp()),
    ("2026-01-27T12:00:00+02:00", datetime(2026, 1, 27, 10, tzinfo=UTC).timestamp()),
    ("2026-01-27 10:00", datetime(2026, 1, 27, 10, tzinfo=UTC).timestamp()),  # naive is UTC
])
def test_parse_when(text: str, expected: float) -> None:
    assert report.parse_when(text, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "24", "h", "-1d", "2026-13-01"])
def test_parse_when_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        report.parse_when(text, now=NOW)


# --- HTML -----------------------------------------------------------------------------------------

# Elements with no end tag, and those whose start tag ends an open <p> (the parser would
# close the <p> there, so markup written as nested would not be).
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                   "track", "wbr"})
_CLOSES_P = frozenset({"address", "article", "aside", "blockquote", "div", "dl", "fieldset", "figure",
                       "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav",
                       "ol", "p", "pre", "section", "table", "ul"})


class _Page(HTMLParser):
    """A document or fragment parsed strictly: AssertionError unless it is well-formed.

    Every element but the void ones is closed, in order; ``<x/>`` only inside SVG; no
    stray ``<`` or ``&`` in text; no block inside a ``<p>``; no id twice. Records the
    tags, ids, URL-valued attributes and the text of ``<style>``.
    """

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=False)  # so a bare "&" in text reaches handle_data
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.style = ""
        self._open: list[str] = []
        self.feed(html)
        self.close()
        assert not self._open, f"never closed: {self._open}"
        assert len(self.ids) == len(set(self.ids)), f"an id used twice: {self.ids}"

    def _element(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _CLOSES_P:
            assert "p" not in self._open, f"<{tag}> inside <p> in {self._open}"
        self.tags.append(tag)
        self.ids += [value or "" for name, value in attrs if name == "id"]
        self.urls += [value or "" for name, value in attrs
                      if name in ("src", "href", "action", "srcset", "poster", "data", "xlink:href")]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs)
        if tag not in _VOID:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in _VOID or "svg" in self._open, f"<{tag}/> is no empty element outside SVG"
        self._element(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        assert tag not in _VOID, f"</{tag}>: {tag} has no end tag"
        assert self._open, f"</{tag}> with nothing open"
        assert self._open[-1] == tag, f"</{tag}> closes <{self._open[-1]}> (open: {self._open})"
        self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1] == "style":
            self.style += data
        else:
            assert "<" not in data and "&" not in data, f"unescaped markup in text: {data!r}"


def _assert_self_contained(html: str) -> _Page:
    page = _Page(html)
    assert "script" not in page.tags and "img" not in page.tags and "link" not in page.tags
    assert page.urls == []  # the standalone report links nowhere, not even to itself
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?:""", html, re.I)
    assert "@import" not in html and "url(" not in html
    assert "<svg" in html and "svg" in page.tags
    assert page.style  # inline CSS
    return page


def test_html_self_contained_and_escaped(small: sqlite3.Connection) -> None:
    html = report.report_html(report.build_report(small), title="Q3 <report> & more")
    page = _assert_self_contained(html)
    assert page.ids == list(report.SECTIONS) and page.tags.count("svg") == 8
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the hostile user, as text
    assert "<title>Q3 &lt;report&gt; &amp; more</title>" in html


# The elements each section shows for the hand-made log: its charts, tables and rows.
SECTION_ELEMENTS = {
    "totals": {"h3": 0, "li": 5, "svg": 1, "table": 0},  # five figures, the timeline
    "reasons": {"h3": 3, "svg": 3, "table": 1, "tr": 1 + 7},  # by reason (7 codes explained), feed, tag
    "users": {"h3": 2, "svg": 2, "table": 1, "tr": 1 + 5},  # 5 people blocked or warned; Thingbot mail
    "thingbots": {"h3": 3, "svg": 2, "table": 3, "circle": 2},  # the share ring, origins, appliances
    "continues": {"h3": 1, "svg": 0, "table": 2},  # by person, most recent
}


@pytest.mark.parametrize("name", report.SECTIONS)
def test_sections(small: sqlite3.Connection, name: str) -> None:
    fragment = report.section_html(report.build_report(small), name)
    assert fragment.startswith(f'<section class="cg-section cg-report" id="{name}">')
    assert fragment.endswith("</section>")
    page = _Page(fragment)  # one well-formed element: the section
    assert page.tags[0] == "section" and page.tags.count("section") == 1 and page.ids == [name]
    assert page.tags.count("h2") == 1
    assert {tag: page.tags.count(tag) for tag in SECTION_ELEMENTS[name]} == SECTION_ELEMENTS[name]
    assert "<script" not in fragment.lower()


def test_section_links_only_when_asked(small: sqlite3.Connection) -> None:
    built = report.build_report(small)
    fragment = report.section_html(built, "continues", link=lambda kind, value: f"/admin/{kind}?v={value}")
    assert '<a href="/admin/host?v=evil.example">evil.example</a>' in fragment
    assert '<a href="/admin/click?v=c1">c1</a>' in fragment
    with pytest.raises(ValueError):
        report.section_html(built, "nonsense")


def test_drilldown_html_escapes(small: sqlite3.Connection) -> None:
    html = report.drilldown_page(report.drilldown(small, click_id="c5"), title="click c5")
    page = _Page(html)
    assert page.tags.count("table") == 1 and page.tags.count("tr") == 1 + 1  # the header, the one record
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html and "&lt;script&gt;alert(1)" in html


# --- the command line -----------------------------------------------------------------------------

def test_cli_summary_and_since(small_store: Path) -> None:
    result = _run("--store", str(small_store))
    assert result.returncode == 0, result.stderr
    assert "clicks 6" in result.stdout and "50.0%" in result.stdout
    result = _run("--store", str(small_store), "--since", "24h", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {k: data["totals"][k] for k in LAST_DAY["totals"]} == LAST_DAY["totals"]
    assert data["since"] is not None and data["until"] is None


@pytest.mark.parametrize(("args", "refs"), [
    (("--host", "192.0.2.66"), ["r10", "c2", "r7"]),
    (("--click", "c3"), ["r7", "c3"]),
])
def test_cli_drilldown(small_store: Path, args: tuple[str, str], refs: list[str]) -> None:
    result = _run("--store", str(small_store), *args, "--json")
    assert result.returncode == 0, result.stderr
    assert [r["ref"] for r in json.loads(result.stdout)] == refs
    text = _run("--store", str(small_store), *args)
    assert text.returncode == 0 and all(f"ref {ref}" in text.stdout for ref in refs)


@pytest.mark.parametrize("args", [(), ("--json",), ("--host", "a.example")])
def test_cli_missing_store(tmp_path: Path, args: tuple[str, ...]) -> None:
    missing = tmp_path / "nothing" / "audit.sqlite"
    result = _run("--store", str(missing), *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(missing) in result.stderr
    assert not missing.exists() and not missing.parent.exists()  # asking never creates a store


def test_cli_rejects_bad_when(small_store: Path) -> None:
    result = _run("--store", str(small_store), "--since", "last tuesday")
    assert result.returncode == 2 and "24h" in result.stderr


def test_cli_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    store.connect(path).close()
    result = _run("--store", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["thingbots"]["share"]["percent"] is None


# --- the synthetic campaign -------------------------------------------------------------------------

class Campaign(NamedTuple):
    """The campaign's store, what the generator says it wrote, and the share counted here from its log."""

    store: Path
    figures: dict[str, Any]
    clicks: int
    thingbot_clicks: int

    @property
    def percent(self) -> float:
        """The share of clicks on mail from a Thingbot, as the report must compute it."""
        return 100.0 * self.thingbot_clicks / self.clicks


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory, feeds_dir: Path) -> Campaign:
    """10,000 clicks by 500 users, about 27% from Thingbots, as a JSON Lines log loaded into a store."""
    workdir = tmp_path_factory.mktemp("campaign")
    log = workdir / "audit.jsonl"
    figures = write_campaign(log, clicks=10_000, users=500, thingbot_share=0.27, seed=1, feeds_dir=feeds_dir)
    # Counted from the records themselves, not from the generator's own tally: a click whose
    # findings include origin.thingbot is a click on mail a Thingbot handed over.
    clicks = thingbot_clicks = 0
    with open(log, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["event"] == "click":
                clicks += 1
                thingbot_clicks += any(d["code"] == "origin.thingbot" for d in record["details"])
    return Campaign(_load(workdir / "audit.sqlite", log), figures, clicks, thingbot_clicks)


def test_campaign_figures(campaign: Campaign) -> None:
    figures = campaign.figures
    assert figures["clicks"] == campaign.clicks == 10_000
    assert 0 < campaign.thingbot_clicks < campaign.clicks
    assert figures["thingbot_clicks"] == campaign.thingbot_clicks
    assert figures["thingbot_share"] == campaign.percent
    assert figures["records"] > figures["clicks"] and figures["continues"] > 0 and figures["hops"] > 0


def test_campaign_report_json(campaign: Campaign) -> None:
    figures = campaign.figures
    result = _run("--store", str(campaign.store), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["thingbots"]["share"] == {
        "clicks": campaign.clicks, "thingbot_clicks": campaign.thingbot_clicks,
        "percent": round(campaign.percent, 2)}
    totals = data["totals"]
    assert (totals["decisions"], totals["blocks"], totals["warns"], totals["continues"]) == (
        figures["records"], figures["blocks"], figures["warns"], figures["continues"])
    for row in data["users"]["blocked_or_warned"]["top"]:
        assert row["total"] == figures["targeted"][row["user"]]
    assert data["users"]["blocked_or_warned"]["users"] == len(figures["targeted"])
    assert [r["total"] for r in data["users"]["blocked_or_warned"]["top"]] == sorted(
        figures["targeted"].values(), reverse=True)[:20]
    for row in data["users"]["thingbot_mail"]["top"]:
        assert row["clicks"] == figures["thingbot_mail"][row["user"]]
    assert {c["device_class"] for c in data["thingbots"]["appliances"]["classes"]} >= {"router", "camera"}
    assert data["thingbots"]["origins"]["top"][0]["feeds"]


def test_campaign_html(campaign: Campaign, tmp_path: Path) -> None:
    """The HTML report shows the Thingbot share counted in the campaign's records, to the tenth."""
    out = tmp_path / "report.html"
    result = _run("--store", str(campaign.store), "--html", str(out))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # one file, nothing beside it
    text = out.read_text(encoding="utf-8")
    assert f"<b>{campaign.percent:.1f}%</b> of clicked mail was handed over by a Thingbot" in text
    assert f"{campaign.thingbot_clicks:,} of {campaign.clicks:,} clicks came from mail" in text
    assert f">{campaign.percent:.0f}%</text></svg>" in text  # the ring's label
    page = _assert_self_contained(text)
    assert page.ids == list(report.SECTIONS)
    assert page.tags.count("svg") == 8  # timeline; reasons, feeds, tags; two per person; ring, appliances
