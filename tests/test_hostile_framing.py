"""A hostile server's framing and encoding, through the real proxy: the payload never reaches the browser.

The server is a camera on a bare address (`Server: Hikvision-Webs`, which every
fingerprint database knows) handing out an ELF, and it picks everything else:
Content-Length or chunked, held (within `inspect.max_body`) or streamed, any
Content-Encoding browsers accept and stacks of them, a decompression bomb, a
fetch by the page's script instead of a navigation. A redirect whose body streams still
hands the click on to where it sends the browser. Addresses 127.0.0.60–79.
"""

from __future__ import annotations

import gzip
import http.client
import random
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
from backports import zstd

from clickguard.inspection.pool import workers_of
from tests.appliances import Route, elf, serve
from tests.harness import HTML, Proxy, ProxyPool, click_link, wait_until

MAX_BODY = 65536
POLICY = f"feeds: []\ninspect: {{max_body: {MAX_BODY}, learn: false}}\n"
CAMERA = ("Server", "Hikvision-Webs")
HTML_TYPE = ("Content-Type", "text/html; charset=utf-8")
BINARY = ("Content-Type", "application/octet-stream")
FETCH = {"Accept": "*/*", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}  # a page's fetch()


def raw_deflate(data: bytes) -> bytes:
    """DEFLATE without zlib's wrapper: what old servers send as `deflate`, and browsers accept."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


CODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "deflate": zlib.compress, "deflate-raw": raw_deflate,
    "br": brotli.compress, "zstd": zstd.compress,
}
DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress, "deflate": zlib.decompress,
    "deflate-raw": lambda data: zlib.decompress(data, -15),
    "br": brotli.decompress, "zstd": zstd.decompress,
}


def encoded(data: bytes, codings: list[str]) -> bytes:
    """data with codings applied in order."""
    for coding in codings:
        data = CODERS[coding](data)
    return data


def header_of(codings: list[str]) -> str:
    """The Content-Encoding header naming codings (raw deflate is `deflate` on the wire)."""
    return ", ".join("deflate" if c == "deflate-raw" else c for c in codings)


def what_the_browser_gets(body: bytes, codings: list[str]) -> bytes:
    """The body decoded as a browser would, as far as it decodes (a cut body decodes partly)."""
    for coding in reversed(codings):
        try:
            body = DECODERS[coding](body)
        except (OSError, EOFError, zlib.error, brotli.error, zstd.ZstdError):
            if coding in ("gzip", "deflate", "deflate-raw"):
                wbits = {"gzip": 31, "deflate": 15, "deflate-raw": -15}[coding]
                decoder = zlib.decompressobj(wbits)
                try:
                    body = decoder.decompress(body)
                except zlib.error:
                    return b""
            else:
                return b""
    return body


def noise(size: int, seed: int = 10) -> bytes:
    """Bytes that do not compress: a body stays larger than max_body when encoded."""
    return random.Random(seed).randbytes(size)


def raw_get(proxy: Proxy, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """GET through the proxy; (status, headers, the body as far as it arrived)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    conn.request("GET", url, headers=headers)
    response = conn.getresponse()
    try:
        body = response.read()
    except http.client.IncompleteRead as e:
        body = e.partial
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


@pytest.fixture
def proxy(shared_proxy: ProxyPool) -> Proxy:
    """The module's proxy: no feeds, a small max_body, nothing learned (each case is judged afresh)."""
    return shared_proxy(POLICY)


def test_chunked_html_longer_than_max_body_carrying_an_elf_is_stopped(proxy: Proxy) -> None:
    """Chunked, labelled text/html, beyond max_body: mitmproxy streams it mid-body; it is still sniffed."""
    payload = elf("mips", size=MAX_BODY * 3)
    routes = {"/index.html": Route(headers=[CAMERA, HTML_TYPE], body=payload, chunked=True)}
    with serve("127.0.0.60", routes) as camera:
        body = raw_get(proxy, f"{camera.base}/index.html", HTML)[2]
    assert b"\x7fELF" not in body

    def blocked(_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in proxy.audit_of(camera.base) if r["action"] == "block"]

    proxy.wait_for_audit(lambda records: bool(blocked(records)), "the streamed body's record")
    [record] = blocked([])
    assert record["inspection"]["payload"]["kind"] == "elf" and record["streamed"] is True


CASES = [["gzip"], ["deflate"], ["deflate-raw"], ["br"], ["zstd"], ["gzip", "br"], ["br", "zstd", "gzip"]]


@pytest.mark.parametrize("codings", CASES, ids=[header_of(c) + ("-raw" if "deflate-raw" in c else "")
                                                for c in CASES])
@pytest.mark.parametrize(("framing", "size"), [("length", 8192), ("chunked", 8192),
                                               ("length", MAX_BODY * 2), ("chunked", MAX_BODY * 2)],
                         ids=["held", "held-chunked", "streamed", "streamed-chunked"])
def test_an_encoded_payload_is_sniffed_after_decoding(proxy: Proxy, codings: list[str], framing: str,
                                                      size: int) -> None:
    """The ELF under every coding and stack, any framing, held or streamed, with a neutral name."""
    payload = elf("arm", big_endian=False, size=1024) + noise(size)
    body = encoded(payload, codings)
    routes = {"/download": Route(headers=[CAMERA, BINARY, ("Content-Encoding", header_of(codings))],
                                 body=body, chunked=framing == "chunked")}
    with serve("127.0.0.61", routes) as camera:
        status, headers, got = raw_get(proxy, f"{camera.base}/download", HTML)
    if status == 403:
        assert headers["x-clickguard-action"] == "block"
    else:
        assert b"\x7fELF" not in what_the_browser_gets(got, codings)
        assert got != body


def test_a_gzip_download_streamed_with_a_neutral_name_is_stopped(proxy: Proxy) -> None:
    """The issue's case: streamed bodies were sniffed while still compressed."""
    body = gzip.compress(elf("mips", size=1024) + noise(MAX_BODY * 3))
    routes = {"/file": Route(headers=[CAMERA, BINARY, ("Content-Encoding", "gzip")], body=body)}
    with serve("127.0.0.62", routes) as camera:
        status, _, got = raw_get(proxy, f"{camera.base}/file", HTML)
        assert status == 200 and len(got) < len(body)  # headers gone: cut short
    assert b"\x7fELF" not in what_the_browser_gets(got, ["gzip"])
    streamed = proxy.wait_for_audit(lambda rs: any(r.get("streamed") for r in proxy.audit_of(camera.base)))
    assert any(r.get("streamed") and r["action"] == "block" for r in streamed)


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_decompression_bomb_costs_bounded_memory(proxy_factory: ProxyPool) -> None:
    """About 250 KiB of gzip that decode to 256 MiB: judged on what was seen, in bounded memory
    (the proxy's, which holds the encoded body, and the worker's that decodes it)."""
    proxy = proxy_factory("feeds: []\ninspect: {learn: false}\n", private=True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    bomb = b"".join([compressor.compress(elf("mips", size=4096))]
                    + [compressor.compress(zeros) for _ in range(256)] + [compressor.flush()])
    assert len(bomb) < 1 << 20  # held whole: under the default max_body
    routes = {"/": Route(headers=[CAMERA, HTML_TYPE], body=b"<title>camera</title>"),
              "/bomb": Route(headers=[CAMERA, HTML_TYPE, ("Content-Encoding", "gzip")], body=bomb)}
    with serve("127.0.0.63", routes) as camera:
        assert raw_get(proxy, f"{camera.base}/", HTML)[0] == 200  # warmed up: the baseline
        wait_until(lambda: len(workers_of(proxy.process.pid)) >= 2
                   and proxy.log().count("inspection worker") >= len(workers_of(proxy.process.pid)),
                   60, "the inspection workers ready")
        workers = {pid: peak_rss_kib(pid) for pid in workers_of(proxy.process.pid)}
        before = peak_rss_kib(proxy.process.pid)
        status, headers, _ = raw_get(proxy, f"{camera.base}/bomb", HTML)
        grown = peak_rss_kib(proxy.process.pid) - before
        worker_grown = max(peak_rss_kib(pid) - peak for pid, peak in workers.items())
    assert status == 403 and headers["x-clickguard-action"] == "block"
    assert grown < 64 * 1024, f"the proxy's peak memory grew by {grown} KiB"
    assert worker_grown < 64 * 1024, f"the worker's peak memory grew by {worker_grown} KiB"
    [record] = proxy.audit_of_ref(headers["x-clickguard-ref"])
    assert record["inspection"]["truncated"] in ("decoded cap", "ratio cap")
    assert record["inspection"]["payload"]["kind"] == "elf"


def test_an_executable_fetched_by_the_page_from_a_suspect_is_stopped(proxy: Proxy) -> None:
    """Sec-Fetch-Dest: empty (fetch, XHR): a camera's or a bare address's payload is still sniffed."""
    payload = elf("mips", size=8192)
    routes = {"/cam.bin": Route(headers=[CAMERA, BINARY], body=payload),
              "/plain.bin": Route(headers=[("Server", "nginx"), BINARY], body=payload),
              "/big.bin": Route(headers=[("Server", "nginx"), BINARY], body=payload, repeat=20)}
    with serve("127.0.0.64", routes) as device:
        for path in ("/cam.bin", "/plain.bin"):
            status, headers, body = raw_get(proxy, f"{device.base}{path}", FETCH)
            assert status == 403 and headers["x-clickguard-action"] == "block", path
            assert b"\x7fELF" not in body
        status, headers, body = raw_get(proxy, f"{device.base}/big.bin", FETCH)
        assert b"\x7fELF" not in body


def test_an_ordinary_named_servers_fetch_keeps_todays_scope(proxy: Proxy) -> None:
    """A script's fetch from a named, ordinary server is not inspected (what Chromium does with it is
    the page's business); the same bytes as a navigation are."""
    payload = elf("x86_64", big_endian=False, size=8192)
    routes = {"/data": Route(headers=[("Server", "nginx"), BINARY], body=payload)}
    with serve("127.0.0.1", routes) as site:
        url = f"http://localhost:{site.port}/data"
        status, _, body = raw_get(proxy, url, FETCH)
        assert (status, body) == (200, payload)


def test_a_page_too_slow_to_read_is_judged_by_policy_at_the_deadline(proxy_factory: ProxyPool) -> None:
    """Inspection past its deadline: on_check_error decides, the record says "timeout"; others do not wait."""
    proxy = proxy_factory("feeds: []\non_check_error: closed\n",
                          "--set", "clickguard_inspect_deadline_ms=1000", private=True)
    # Both inspection workers loaded: one reads the slow page, the other is free for the small one.
    wait_until(lambda: proxy.log().count("inspection worker") >= 2, 60, "the inspection workers")
    # Seconds of reading (each sink's value a long sum the reader evaluates), far past the deadline.
    value = "+".join(["a"] * 24)
    script = 'var a="x";\n' + "".join(f"function h{i}(){{location.href={value}}}\n" for i in range(11_000))
    page = b"<html><body><script>" + script.encode() + b"</script></body></html>"
    assert len(page) < 1 << 20
    routes = {"/slow": Route(headers=[("Server", "nginx"), HTML_TYPE], body=page),
              "/small": Route(headers=[("Server", "nginx"), ("Content-Type", "text/plain")], body=b"ok")}
    outcome: list[tuple[int, dict[str, str], bytes]] = []
    with serve("127.0.0.65", routes) as site:
        thread = threading.Thread(target=lambda: outcome.append(raw_get(proxy, f"{site.base}/slow", HTML)))
        thread.start()
        wait_until(lambda: "/slow" in site.requests, what="the slow page requested")
        assert raw_get(proxy, f"{site.base}/small", HTML)[2] == b"ok"
        thread.join(120)
    [(status, headers, _)] = outcome
    assert status == 403 and headers["x-clickguard-action"] == "block"
    [record] = proxy.audit_of_ref(headers["x-clickguard-ref"])
    assert record["reasons"] == ["check.incomplete"] and record["inspection"]["timeout"] is True


@pytest.mark.parametrize(("framing", "origin"), [("length", "198.51.100.81"), ("chunked", "198.51.100.82"),
                                                 ("chunked-html", "198.51.100.83")])
def test_a_streamed_redirect_after_a_click_hands_the_click_on(proxy: Proxy, certs: Path, framing: str,
                                                              origin: str) -> None:
    """A 302 whose body streams (announced too large, of unknown length, or HTML outgrowing max_body
    while held): its Location is the click's next hop, as a held redirect's is."""
    content_type = HTML_TYPE if framing == "chunked-html" else BINARY
    with serve("127.0.0.67", {"/landing": Route(headers=[("Server", "nginx"), HTML_TYPE], body=b"<p>hi")}) \
            as final:
        start = Route(status=302, headers=[("Server", "nginx"), ("Location", f"{final.base}/landing"),
                                           content_type],
                      body=noise(MAX_BODY * 2), chunked=framing != "length")
        with serve("127.0.0.66", {"/start": start}) as site:
            status, headers, _ = raw_get(proxy, click_link(certs, f"{site.base}/start", origin), HTML)
            assert 300 <= status < 400
            status, headers, _ = raw_get(proxy, headers["location"], HTML)
            assert (status, headers["location"]) == (302, f"{final.base}/landing")
            assert raw_get(proxy, f"{final.base}/landing", HTML)[0] == 200
    records = [r for r in proxy.audit() if r.get("origin_ip") == origin]
    assert [(r["event"], r.get("hop"), r["url"]) for r in records] == [
        ("click", 0, f"{site.base}/start"), ("hop", 1, f"{site.base}/start"),
        ("hop", 2, f"{final.base}/landing")]
    assert {r.get("click_id") for r in records[1:]} == {records[0]["ref"]}


def test_learning_a_name_blocks_the_name_not_its_address(proxy_factory: ProxyPool) -> None:
    """A name served by a "camera" that serves a payload is learned by name; the address stays open."""
    proxy = proxy_factory("feeds: []\n", private=True)
    routes: dict[str, Route] = {"/Mozi.m": Route(headers=[CAMERA, HTML_TYPE], body=elf("mips"))}
    with serve("127.0.0.1", routes) as camera, \
            serve("127.0.0.1", {"/": Route(headers=[("Server", "nginx"), HTML_TYPE], body=b"<p>hi")}) as site:
        status, headers, _ = raw_get(proxy, f"http://localhost:{camera.port}/Mozi.m", HTML)
        assert status == 403 and headers["x-clickguard-action"] == "block"
        # Learned as the name: the name is refused from now on, before connecting…
        status, headers, _ = raw_get(proxy, f"http://localhost:{site.port}/", HTML)
        assert headers["x-clickguard-action"] == "block"
        # …but another site on the same address (a shared host, a CDN) is not.
        status, headers, body = raw_get(proxy, f"http://127.0.0.1:{site.port}/", HTML)
        assert (status, body) == (200, b"<p>hi")
    learned = learned_hosts(proxy)
    assert learned == ["localhost"]


def learned_hosts(proxy: Proxy) -> list[str]:
    """The hosts in the proxy's learned-hosts file."""
    import json
    path = proxy.workdir / "var" / "learned.json"
    wait_until(path.exists, what="the learned hosts saved")
    data: dict[str, Any] = json.loads(path.read_text())
    return [h["host"] for h in data["hosts"]]
