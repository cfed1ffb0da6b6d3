"""The proxy's per-request path made cheaper gives the same answers: the event loop choice
(`clickguard run --event-loop`), the Host header's fast path, and audit records written to the
file and the store at once (acknowledged only once both have them)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop
from mitmproxy import connection
from mitmproxy.net.http.url import parse_authority
from mitmproxy.test import tflow

from clickguard.audit.writer import AuditLog, read_records, record
from clickguard.errors import URLError
from clickguard.proxy.guard import host_header_url, request_url
from clickguard.proxy.pins import Pins
from clickguard.urls import normalize_url, url_of
from tests.harness import Proxy, click_link, raw_server, start_proxy, upstream, write_policy

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


@pytest.fixture(scope="module")
def uvloop_proxy(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Proxy]:
    """`clickguard run --event-loop uvloop` with a feed listing 127.0.0.3."""
    tmp_path = tmp_path_factory.mktemp("uvloop")
    (tmp_path / "listed.txt").write_text("127.0.0.3\n")
    policy = write_policy(tmp_path, """\
        feeds:
          - {name: listed, format: ip, path: listed.txt}
        """)
    proxy = start_proxy(tmp_path, policy, certs, "--event-loop", "uvloop")
    try:
        yield proxy
    finally:
        proxy.stop()


def test_the_proxy_runs_on_uvloop_and_judges_as_on_asyncio(uvloop_proxy: Proxy, certs: Path) -> None:
    uvloop_proxy.wait_for_log("event loop: uvloop")
    with upstream("127.0.0.2") as up, upstream("127.0.0.3") as listed:
        r = uvloop_proxy.get(f"{up.base}/page", NAVIGATE)
        assert (r.status, r.body) == (200, b"hello from 127.0.0.2 at /page\n")
        [allowed] = uvloop_proxy.audit_of(up.base)
        assert (allowed["event"], allowed["action"]) == ("decision", "allow")
        blocked = uvloop_proxy.get(f"{listed.base}/x", NAVIGATE)
        assert blocked.status == 403 and listed.requests == []
        click = uvloop_proxy.get(click_link(certs, f"{up.base}/clicked", "192.0.2.1"), NAVIGATE)
        assert (click.status, click.headers["location"]) == (303, f"{up.base}/clicked")
        assert [r["event"] for r in uvloop_proxy.audit_of(up.base)] == ["decision", "click"]


def test_an_unknown_event_loop_is_refused(tmp_path: Path, certs: Path) -> None:
    import subprocess
    import sys

    policy = write_policy(tmp_path, "{}\n")
    run = subprocess.run([sys.executable, "-m", "clickguard.cli", "run", "--policy", str(policy),
                          "--event-loop", "trio"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--event-loop" in run.stderr


def test_a_pinned_name_connects_to_its_judged_address_on_uvloop() -> None:
    # localhost is in /etc/hosts (no name server asked): unpinned it would reach 127.0.0.1,
    # where nothing listens on this port; pinned it reaches the address judged, 127.0.0.2.
    async def connect(port: int) -> bytes:
        pins = Pins()
        loop = asyncio.get_running_loop()
        pins.install(loop)
        server = connection.Server(address=("localhost", port))
        pins.pin(server, "localhost", ("127.0.0.2",))
        try:
            reader, writer = await asyncio.open_connection("localhost", port)
            writer.write(b"hello\n")  # the server answers what it is sent
            data = await reader.read()
            writer.close()
            return data
        finally:
            pins.release(server)
            pins.uninstall()
            assert "create_connection" not in vars(loop)

    with raw_server("127.0.0.2", reply=b"judged address") as judged:
        assert uvloop.run(connect(judged.port)) == b"judged address"
        assert asyncio.run(connect(judged.port)) == b"judged address"  # asyncio: its getaddrinfo is pinned


def _slow_host_header_url(flow: object, url: object) -> object:
    """What the Host header named before its fast path: parsed every time."""
    header = flow.request.host_header  # type: ignore[attr-defined]
    if not header:
        return None
    try:
        host, port = parse_authority(header, check=True)
        named = normalize_url(url_of(url.scheme, host, port or url.port, flow.request.path))  # type: ignore[attr-defined]
    except (URLError, ValueError):
        return None
    return None if named.host == url.host else named  # type: ignore[attr-defined]


@pytest.mark.parametrize("host, port, header", [
    ("example.com", 80, "example.com"), ("example.com", 8080, "example.com:8080"),
    ("example.com", 80, "example.com:80"), ("example.com", 80, "EXAMPLE.com"),
    ("example.com", 80, "example.com."), ("example.com", 80, "other.example"),
    ("example.com", 80, "other.example:80"), ("127.0.0.2", 8080, "127.0.0.2:8080"),
    ("127.0.0.2", 8080, "127.0.0.3:8080"), ("127.0.0.2", 8080, "2130706434"),
    ("::1", 80, "[::1]"), ("::1", 80, "[::2]:80"), ("example.com", 80, "exa mple.com"),
    ("example.com", 80, ""), ("xn--bcher-kva.example", 80, "bücher.example"),
])
def test_the_host_headers_fast_path_names_what_parsing_it_names(host: str, port: int, header: str) -> None:
    flow = tflow.tflow()
    flow.request.host, flow.request.port, flow.request.path = host, port, "/p?q=1"
    flow.request.headers["host"] = header
    url = normalize_url(request_url(flow))
    fast, slow = host_header_url(flow, url), _slow_host_header_url(flow, url)
    assert (fast.url if fast else None) == (slow.url if slow else None)  # type: ignore[attr-defined]


def _entry(n: int) -> dict[str, object]:
    return record(ref=f"{n:012x}", event="click", client="127.0.0.1", user=None,
                  url=f"http://a.example/{n}", action="allow", findings=[])


def _stored(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT ref FROM decisions ORDER BY ref")]


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_an_acknowledged_record_is_in_the_file_and_the_store(tmp_path: Path, on_failure: str) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.sqlite",
                   on_failure=on_failure)  # type: ignore[arg-type]

    async def write() -> None:
        for n in range(20):  # one at a time (both sinks at once), then many (handed over)
            assert await log.write(_entry(n))
            assert f"{n:012x}" in _stored(tmp_path / "audit.sqlite")
            assert read_records(tmp_path / "audit.jsonl")[-1]["ref"] == f"{n:012x}"
        assert all(await asyncio.gather(*(log.write(_entry(n)) for n in range(20, 120))))

    log.start()
    try:
        asyncio.run(write())
    finally:
        log.close()
    refs = [f"{n:012x}" for n in range(120)]
    assert _stored(tmp_path / "audit.sqlite") == refs
    assert sorted(r["ref"] for r in read_records(tmp_path / "audit.jsonl")) == refs
    assert (log.written, log.not_recorded) == (120, 0)


def test_a_failing_store_does_not_hold_acknowledgements(tmp_path: Path) -> None:
    store_path = tmp_path / "audit.sqlite"
    log = AuditLog(tmp_path / "audit.jsonl", store_path)
    log.start()
    try:
        asyncio.run(log.write(_entry(0)))
        locker = sqlite3.connect(store_path, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the store: the writer backs off

        async def write() -> None:
            for n in range(1, 6):
                assert await log.write(_entry(n))
                assert read_records(tmp_path / "audit.jsonl")[-1]["ref"] == f"{n:012x}"

        asyncio.run(write())
        assert log.health()["store"]["failing"]
        locker.rollback()
        locker.close()
    finally:
        log.close()  # a last try: what the store missed goes in now
    assert _stored(store_path) == [f"{n:012x}" for n in range(6)]
