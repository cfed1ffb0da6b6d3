"""Appliances and what they serve, through the real proxy: simulated devices and ordinary servers.

Most tests share one proxy with no feeds (`proxy`); each serves from addresses of its own
(the proxy learns the hosts it blocks) and reads only the audit records of those.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.appliances import Route, elf, serve
from tests.harness import HTML, Proxy, ProxyPool, continue_link, start_proxy, write_policy

POLICY = "feeds: []\n"
CAMERA = [("Server", "Hikvision-Webs")]
ROUTER = [("Server", "Router Webserver")]
HTML_TYPE = ("Content-Type", "text/html; charset=utf-8")
ROUTER_LOGIN = b"""<!DOCTYPE html><html><head><title>TP-LINK Wireless Router</title></head>
<body><form action="/userRpm/LoginRpm.htm" method="get">
<input name="username"><input type="password" name="pcPassword"><input type="submit" value="Login">
</form></body></html>"""


@pytest.fixture
def proxy(shared_proxy: ProxyPool) -> Proxy:
    """The module's proxy with no feeds: whatever is blocked here is blocked for what the servers do."""
    return shared_proxy(POLICY)


def reasons(records: list[dict[str, Any]]) -> list[list[str]]:
    """The reason codes of each record."""
    return [record["reasons"] for record in records]


def test_camera_serving_mozi_is_blocked_then_refused_before_connecting(proxy_factory: ProxyPool) -> None:
    """The issue's case: Mozi.m (ELF MIPS) as text/html from a camera; then the host is learned."""
    proxy = proxy_factory(POLICY)  # its own: the test reads everything the proxy learned
    routes = {"/Mozi.m": Route(headers=[*CAMERA, HTML_TYPE], body=elf("mips", size=150_000)),
              "/": Route(headers=[*CAMERA, HTML_TYPE], body=b"<title>camera</title>")}
    with serve("127.0.0.21", routes) as camera:
        r = proxy.get(f"{camera.base}/Mozi.m", HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        assert b"\x7fELF" not in r.body
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert {"landing.appliance", "response.drive_by"} <= set(record["reasons"])
        payload = record["inspection"]["payload"]
        assert (payload["kind"], payload["arch"]) == ("elf", "mips")
        assert record["inspection"]["fingerprint"]["class"] == "camera"
        assert camera.requests == ["/Mozi.m"]
        # Learned: the next request to the camera is refused at request time, never sent.
        r = proxy.get(f"{camera.base}/", HTML)
        assert r.headers["x-clickguard-action"] == "block"
        assert camera.requests == ["/Mozi.m"]
        [last] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert last["event"] == "decision" and last["reasons"] == ["landing.thingbot"]
        assert "learned as a Thingbot" in last["details"][0]["detail"]
    status = subprocess.run([sys.executable, "-m", "clickguard.cli", "feeds", "status", "--state-dir",
                             str(proxy.workdir / "var"), "--json"], capture_output=True, text=True,
                            check=True, cwd=proxy.workdir)
    learned = json.loads(status.stdout)["learned"]
    assert [h["host"] for h in learned] == ["127.0.0.21"]
    assert "ELF" in learned[0]["evidence"] and "MIPS" in learned[0]["evidence"]


def test_learned_hosts_survive_a_restart(tmp_path: Path, certs: Path) -> None:
    policy = write_policy(tmp_path, POLICY)
    routes = {"/bins/mirai.arm": Route(headers=[*ROUTER, ("Content-Type", "application/octet-stream")],
                                       body=elf("arm", big_endian=False))}
    with serve("127.0.0.22", routes) as router:
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            assert proxy.get(f"{router.base}/bins/mirai.arm", HTML).headers["x-clickguard-action"] == "block"
        finally:
            proxy.stop()
        proxy = start_proxy(tmp_path, policy, certs)
        try:
            r = proxy.get(f"{router.base}/bins/mirai.arm", HTML)
            assert r.headers["x-clickguard-action"] == "block"
            assert proxy.audit_of(router.base)[-1]["event"] == "decision"  # refused before connecting
            assert router.requests == ["/bins/mirai.arm"]
        finally:
            proxy.stop()


@pytest.mark.parametrize(
    ("name", "host", "body"),
    [
        ("meta refresh", "127.0.0.23", b'<html><head><title>x</title><meta http-equiv="refresh" '
                         b'content="0; url=http://127.0.0.29/landing"></head><body></body></html>'),
        ("script", "127.0.0.31", b"<html><body><script>window.location.replace('http://127.0.0.29/landing');"
                   b"</script></body></html>"),
        ("obfuscated script", "127.0.0.32", b"<html><body><script>"
                              b"location.href=atob('aHR0cDovLzEyNy4wLjAuMjkvbGFuZGluZw==');"
                              b"</script></body></html>"),
    ],
)
def test_router_page_sending_the_browser_elsewhere_is_blocked(proxy: Proxy, name: str, host: str,
                                                              body: bytes) -> None:
    # A router of its own for each case: the proxy learns each one it blocks.
    with serve(host, {"/": Route(headers=[*ROUTER, HTML_TYPE], body=body)}) as router:
        r = proxy.get(f"{router.base}/", HTML)
        assert r.headers["x-clickguard-action"] == "block", name
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert {"landing.appliance", "response.redirect"} <= set(record["reasons"])
        assert any("127.0.0.29" in str(n["target"]) for n in record["inspection"]["navigations"])
        # …and the router is refused at request time from now on.
        r = proxy.get(f"{router.base}/other", HTML)
        assert r.headers["x-clickguard-action"] == "block" and router.requests == ["/"]


def test_router_login_page_and_same_device_redirects_pass(proxy: Proxy) -> None:
    """People manage their own devices: login pages and redirects within the device are fine."""
    routes = {
        "/": Route(302, [*ROUTER, ("Location", "/login.htm")]),
        "/login.htm": Route(headers=[*ROUTER, HTML_TYPE, ("Refresh", "300")], body=ROUTER_LOGIN),
        "/status": Route(headers=[*ROUTER, HTML_TYPE],
                         body=b'<meta http-equiv="refresh" content="5"><p>uptime 3 days</p>'),
    }
    with serve("127.0.0.24", routes) as router:
        r = proxy.get(f"{router.base}/", HTML)
        assert r.status == 302 and r.headers["location"] == "/login.htm"
        r = proxy.get(f"{router.base}/login.htm", HTML)
        assert r.status == 200 and r.body == ROUTER_LOGIN
        assert proxy.get(f"{router.base}/status", HTML).status == 200
    records = proxy.audit_of(router.base)
    assert all(record["action"] == "allow" for record in records)
    assert any("landing.appliance" in codes for codes in reasons(records))  # seen and recorded


def test_ordinary_server_redirect_passes_and_its_payload_warns(proxy: Proxy) -> None:
    """The same content without appliance traits follows the plain actions (allow, warn)."""
    refresh = b'<meta http-equiv="refresh" content="0; url=http://127.0.0.29/landing">'
    exe = b"MZ\x90\x00" + bytes(60) + b"PE\x00\x00" + bytes(2000)
    routes = {"/": Route(headers=[("Server", "nginx/1.24.0"), HTML_TYPE], body=refresh),
              "/setup.exe": Route(headers=[("Server", "nginx/1.24.0"),
                                           ("Content-Type", "application/octet-stream")], body=exe)}
    with serve("127.0.0.25", routes) as site:
        r = proxy.get(f"{site.base}/", HTML)
        assert r.status == 200 and r.body == refresh
        r = proxy.get(f"{site.base}/setup.exe", HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "warn"
        assert "response.drive_by" in r.text
        r = proxy.get(continue_link(r.text), HTML)
        assert r.status == 303
        r = proxy.get(f"{site.base}/setup.exe", HTML)
        assert r.status == 200 and r.body == exe
    assert [(a["event"], a["action"]) for a in proxy.audit_of(site.base)][-4:] == [
        ("response", "warn"), ("continue", "allow"), ("decision", "allow"), ("response", "allow")]


def test_redirect_target_is_judged_before_the_page_is_delivered(tmp_path: Path, certs: Path) -> None:
    """An ordinary page whose meta refresh leads to a listed host is blocked as that host would be."""
    (tmp_path / "bots.txt").write_text("127.0.0.29\n")
    policy = write_policy(tmp_path, "feeds:\n  - {name: bots, format: ip, path: bots.txt}\n")
    proxy = start_proxy(tmp_path, policy, certs)
    body = b"<meta http-equiv=\"refresh\" content=\"1;URL='http://127.0.0.29/x'\">"
    try:
        with serve("127.0.0.26", {"/": Route(headers=[("Server", "nginx"), HTML_TYPE], body=body)}) as site:
            r = proxy.get(f"{site.base}/", HTML)
            assert r.headers["x-clickguard-action"] == "block"
            assert proxy.audit_of(site.base)[-1]["reasons"] == ["response.redirect", "landing.thingbot"]
            assert "the page sends the browser to 127.0.0.29" in r.text
    finally:
        proxy.stop()


def _raw_get(proxy: Proxy, url: str) -> tuple[int, dict[str, str], bytes, bool]:
    """GET through the proxy, reading what arrives; (status, headers, body, complete)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    conn.request("GET", url, headers=HTML)
    response = conn.getresponse()
    headers = {k.lower(): v for k, v in response.getheaders()}
    try:
        body, complete = response.read(), True
    except http.client.IncompleteRead as e:
        body, complete = e.partial, False
    conn.close()
    return response.status, headers, body, complete


def test_large_downloads_stream_and_are_sniffed(proxy: Proxy) -> None:
    """Bodies beyond inspect.max_body stream; their first bytes are still sniffed."""
    blob = bytes(range(256)) * 256  # 64 KiB of nothing executable
    payload = elf("mips", size=65536)
    routes = {
        "/firmware.bin": Route(headers=[("Server", "nginx"), ("Content-Type", "application/octet-stream")],
                               body=blob, repeat=80),  # 5 MiB, passes whole
        "/by-name/mirai.mips": Route(headers=[*CAMERA, ("Content-Type", "application/octet-stream")],
                                     body=payload, repeat=40),  # its name shows in the headers: a page
        "/download": Route(headers=[*CAMERA, ("Content-Type", "application/octet-stream")],
                           body=payload, repeat=40),  # only its bytes show it: cut short
        "/stream": Route(headers=[*CAMERA, ("Content-Type", "application/octet-stream")],
                         body=payload, repeat=40, chunked=True),
    }
    bases = []
    with serve("127.0.0.27", routes) as host:
        bases.append(host.base)
        status, _, body, complete = _raw_get(proxy, f"{host.base}/firmware.bin")
        assert (status, complete) == (200, True)
        assert hashlib.sha256(body).digest() == hashlib.sha256(blob * 80).digest()
        status, headers, body, _ = _raw_get(proxy, f"{host.base}/by-name/mirai.mips")
        assert status == 403 and headers["x-clickguard-action"] == "block"
    with serve("127.0.0.28", routes) as host:
        bases.append(host.base)
        status, _, body, complete = _raw_get(proxy, f"{host.base}/download")
        assert status == 200 and not complete and b"\x7fELF" not in body
    with serve("127.0.0.30", routes) as host:
        bases.append(host.base)
        status, _, body, complete = _raw_get(proxy, f"{host.base}/stream")
        assert status == 200 and b"\x7fELF" not in body and b"clickguard blocked this download" in body

    def streamed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r.get("streamed") and r["url"].startswith(tuple(bases))]

    # A streamed body's record is written once the stream ends, after the client saw the response.
    records = streamed(proxy.wait_for_audit(lambda records: len(streamed(records)) >= 2,
                                            "the two streamed downloads' records"))
    assert len(records) == 2 and all(r["action"] == "block" for r in records)


@pytest.mark.parametrize(("host", "chunked"), [("127.0.0.33", True), ("127.0.0.34", False)],
                         ids=["chunked", "content-length"])
def test_a_cut_download_ends_with_the_connection_closed_short(proxy: Proxy, host: str, chunked: bool) -> None:
    """HTTP/1.1: a streamed download found to be a payload after its headers went out never ends cleanly
    (no last chunk, not all its Content-Length): the connection is closed short, a failed download."""
    routes = {"/download": Route(headers=[*CAMERA, ("Content-Type", "application/octet-stream")],
                                 body=elf("mips", size=65536), repeat=40, chunked=chunked)}
    with serve(host, routes) as camera:
        status, headers, body, complete = _raw_get(proxy, f"{camera.base}/download")
    assert (status, complete) == (200, False), headers
    assert b"\x7fELF" not in body and len(body) < 65536 * 40
    assert (b"clickguard blocked this download" in body) is chunked  # said in the body when no length
