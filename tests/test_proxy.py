"""The proxy for real: `clickguard run` on loopback in front of real upstream servers.

Tests that only send requests share one proxy per policy (`shared_proxy`), each with
upstreams of its own and reading only its own audit records; tests that edit the
policy or feeds, restart the proxy or need a policy of their own start their own
(`proxy_factory`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import (
    HTML,
    REPO,
    Proxy,
    ProxyPool,
    continue_link,
    start_proxy,
    upstream,
    wait_until,
    write_policy,
)


def listed(tmp_path: Path, *entries: str) -> Path:
    """An `ip` feed file listing entries."""
    path = tmp_path / "thingbots.txt"
    path.write_text(feed(*entries))
    return path


def feed(*entries: str) -> str:
    """The text of an `ip` feed listing entries."""
    return "# test feed\n" + "\n".join(entries) + "\n"


BASIC = """\
feeds:
  - {name: thingbots, format: ip, path: thingbots.txt}
"""
# The shared proxy: 127.0.0.3 listed, 127.0.0.4 denied; nothing else is (127.0.0.2 is an ordinary site).
SHARED = BASIC + "deny: {networks: [127.0.0.4]}\n"
SHARED_FILES = {"thingbots.txt": feed("127.0.0.3")}


@pytest.fixture
def shared(shared_proxy: ProxyPool) -> Proxy:
    """The module's proxy with the SHARED policy."""
    return shared_proxy(SHARED, files=SHARED_FILES)


def test_listed_host_is_blocked_before_connecting(shared: Proxy) -> None:
    proxy = shared
    with upstream("127.0.0.3") as bad:
        r = proxy.get(f"{bad.base}/payload.sh", HTML)
        assert r.status == 403
        assert r.headers["x-clickguard-action"] == "block"
        assert r.headers["cache-control"] == "no-store"
        assert "landing.thingbot" in r.text and "thingbots" in r.text
        assert bad.requests == []  # never reached the server
        ref = r.headers["x-clickguard-ref"]
        assert ref in r.text
        records = [a for a in proxy.audit() if a["ref"] == ref]
        assert len(records) == 1
        record = records[0]
        assert record["action"] == "block"
        assert record["reasons"] == ["landing.thingbot"]
        assert record["url"] == f"{bad.base}/payload.sh"
        assert record["client"] == "127.0.0.1"
        assert {"ts", "user", "origin_ip"} <= record.keys()


def test_unlisted_host_passes_byte_for_byte(shared: Proxy) -> None:
    proxy = shared
    body = bytes(range(256)) * 64
    routes = {"/blob": (200, {"Content-Type": "application/octet-stream", "X-Test": "kept"}, body)}
    with upstream("127.0.0.2", routes) as good:
        r = proxy.get(f"{good.base}/blob")
        assert r.status == 200
        assert r.body == body
        assert r.headers["x-test"] == "kept"
        assert "x-clickguard-action" not in r.headers
        assert good.requests == ["/blob"]


@pytest.mark.parametrize("host", ["0x7f000003", "2130706435", "0177.0.0.3", "127.3", "0x7f.0.0.3"])
def test_ip_written_in_other_forms_is_caught(shared_proxy: ProxyPool, host: str) -> None:
    proxy = shared_proxy(BASIC, files={"thingbots.txt": feed("127.0.0.0/30")})
    with upstream("127.0.0.3") as bad:
        r = proxy.get(f"http://{host}:{bad.port}/")
        assert r.status == 403, r.text
        assert r.headers["x-clickguard-action"] == "block"
        assert "127.0.0.0/30" in r.text
        assert bad.requests == []


def test_name_resolving_to_listed_address_is_caught(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    listed(tmp_path, "127.0.0.1")
    with upstream("127.0.0.1") as bad:
        proxy = proxy_factory(BASIC)
        r = proxy.get(f"http://localhost:{bad.port}/", HTML)
        assert r.status == 403
        assert "localhost resolves to 127.0.0.1" in r.text
        assert bad.requests == []


def test_allow_list_beats_feed(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    listed(tmp_path, "127.0.0.3")
    with upstream("127.0.0.3") as site:
        proxy = proxy_factory(BASIC + "allow: {networks: [127.0.0.3/32]}\n")
        r = proxy.get(f"{site.base}/", HTML)
        assert r.status == 200
        assert r.body == site.body_for("/")
        record = proxy.audit()[-1]
        assert record["action"] == "allow"
        assert record["allowed_by"] == "allow list: network 127.0.0.3"
        assert record["reasons"] == ["landing.thingbot"]  # overridden, still recorded


def test_deny_list_blocks(shared: Proxy) -> None:
    proxy = shared
    with upstream("127.0.0.4") as site:
        r = proxy.get(f"{site.base}/")
        assert r.status == 403
        assert proxy.audit_of(site.base)[-1]["reasons"] == ["policy.deny"]


def test_warn_then_continue(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    listed(tmp_path, "127.0.0.3")
    with upstream("127.0.0.3") as site:
        proxy = proxy_factory(BASIC + "actions: {landing.thingbot: warn}\n")
        url = f"{site.base}/page"
        r = proxy.get(url, HTML)
        assert r.status == 403
        assert r.headers["x-clickguard-action"] == "warn"
        link = continue_link(r.text)
        assert link.startswith("http://clickguard.local/continue?t=")
        assert site.requests == []

        tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        r = proxy.get(tampered, HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        assert "link.bad_signature" in r.text

        r = proxy.get(link, HTML)
        assert r.status == 303
        assert r.headers["location"] == url
        r = proxy.get(url, HTML)
        assert r.status == 200
        assert r.body == site.body_for("/page")
        events = [(a["event"], a["action"]) for a in proxy.audit()]
        assert events == [("decision", "warn"), ("continue", "block"), ("continue", "allow"),
                          ("decision", "allow")]
        assert proxy.audit()[-1]["continued"] is True


def test_continue_link_is_bound_to_the_client(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    listed(tmp_path, "127.0.0.3")
    with upstream("127.0.0.3") as site:
        proxy = proxy_factory(BASIC + "actions: {landing.thingbot: warn}\n")
        link = continue_link(proxy.get(f"{site.base}/", HTML).text)
        # Same link, presented from another client address.
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, source_address=("127.0.0.9", 0))
        conn.request("GET", link)
        r = conn.getresponse()
        assert r.status == 403
        assert "another client" in r.read().decode()
        conn.close()


def test_warn_without_continue(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    listed(tmp_path, "127.0.0.3")
    with upstream("127.0.0.3") as site:
        proxy = proxy_factory(BASIC + "actions: {landing.thingbot: warn}\n"
                                      "warn: {allow_continue: false}\n")
        r = proxy.get(f"{site.base}/", HTML)
        assert r.headers["x-clickguard-action"] == "warn"
        assert 'id="continue"' not in r.text


def test_hot_reload_and_broken_edit_keeps_last_good(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    listed(tmp_path, "127.0.0.3")
    with upstream("127.0.0.3") as site:
        proxy = proxy_factory("feeds: []\n")
        assert proxy.get(f"{site.base}/").status == 200
        policy = tmp_path / "policy.yaml"
        policy.write_text(textwrap.dedent(BASIC))
        wait_until(lambda: proxy.get(f"{site.base}/").status == 403, 30, "the reload to block")
        policy.write_text(BASIC.replace("format: ip", "format: nonsense"))
        proxy.wait_for_log("last good one keeps serving")
        assert "policy.yaml:2" in proxy.log() and "format" in proxy.log()
        assert proxy.get(f"{site.base}/").status == 403


def test_feed_refresh_failure_keeps_last_good_copy(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    routes = {"/feed.txt": (200, {"Content-Type": "text/plain", "ETag": '"v1"'}, b"127.0.0.3\n")}
    with upstream("127.0.0.5", routes) as feed_server, upstream("127.0.0.3") as site:
        proxy = proxy_factory(f"""\
            feeds:
              - {{name: remote, format: ip, url: "{feed_server.base}/feed.txt", refresh: 1}}
            """)
        wait_until(lambda: proxy.get(f"{site.base}/").status == 403, 30, "the fetched feed to block")
        # Later fetches are conditional: the server's ETag goes back as If-None-Match.
        wait_until(lambda: any(h.get("if-none-match") == '"v1"' for h in feed_server.headers), 30,
                   "a conditional GET")
        passed_before_the_feed_arrived = len(site.requests)
        feed_server.routes["/feed.txt"] = (500, {}, b"broken")
        status = tmp_path / "var" / "feeds-status.json"
        wait_until(lambda: "HTTP 500" in status.read_text(), 30, "the failure to be reported")
        assert proxy.get(f"{site.base}/").status == 403
        assert len(site.requests) == passed_before_the_feed_arrived


def test_https_listed_host_gets_block_page_inside_tls(shared: Proxy) -> None:
    proxy = shared
    r = proxy.get_tls("127.0.0.3", 8443, "/login?x=1", HTML)
    assert r.status == 403
    assert r.headers["x-clickguard-action"] == "block"
    [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
    assert record["url"] == "https://127.0.0.3:8443/login?x=1"


def test_not_intercepted_host_is_judged_at_the_tunnel(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    listed(tmp_path, "127.0.0.1", "::1")
    proxy = proxy_factory(BASIC + "intercept: {exclude: [localhost]}\n")
    with pytest.raises(OSError, match="403"):
        proxy.get_tls("localhost", 8443)
    record = proxy.audit()[-1]
    assert record["event"] == "tunnel" and record["action"] == "block"


def test_default_policy_offline_blocks_selftest_range_and_says_so_once(tmp_path: Path, certs: Path) -> None:
    """Started with no network (loopback only, no name server), the default policy serves what it has.

    Its public feeds are subscribed by URL: each fetch fails, is retried (here every 50 ms,
    doubling), and is logged once per feed, not at every try; `feeds status` says "never fetched".
    """
    # The shipped policy names no audit paths: the proxy's own under its working directory (tmp_path).
    proxy = start_proxy(tmp_path, REPO / "policies" / "default.yaml", certs,
                        "--set", "clickguard_feed_retry_ms=50", isolated_network=True)
    status = tmp_path / "var" / "feeds-status.json"
    attempts: dict[str, set[float]] = {}

    def tried_three_times() -> bool:
        with contextlib.suppress(OSError, ValueError):
            for feed in json.loads(status.read_text())["feeds"]:
                if feed["source"].startswith("https://") and feed["last_attempt"] is not None:
                    attempts.setdefault(feed["name"], set()).add(feed["last_attempt"])
        return len(attempts) == 9 and all(len(seen) >= 3 for seen in attempts.values())

    try:
        r = proxy.get("http://127.66.0.1/")
        assert r.status == 403
        assert r.headers["x-clickguard-action"] == "block"
        assert proxy.audit()[-1]["reasons"] == ["landing.thingbot"]
        wait_until(tried_three_times, 60, "three fetches of every subscribed feed")
        said = [line for line in proxy.log().splitlines() if "never fetched" in line]
        assert sorted(line.split("feed ", 1)[1].split(":", 1)[0] for line in said) == sorted(attempts), said
        shown = subprocess.run([sys.executable, "-m", "clickguard.cli", "feeds", "status", "--state-dir",
                                str(tmp_path / "var")], capture_output=True, text=True, check=True).stdout
        assert shown.count("(never fetched)") == 9, shown
        assert proxy.get("http://127.66.0.1/").status == 403  # still serving
    finally:
        proxy.stop()


def test_audit_record_for_allowed_navigation_only(shared: Proxy) -> None:
    proxy = shared
    with upstream("127.0.0.2") as site:
        proxy.get(f"{site.base}/image.png", {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"})
        proxy.get(f"{site.base}/page", HTML)
        urls = [a["url"] for a in proxy.audit_of(site.base)]
        assert urls == [f"{site.base}/page"]


def test_runs_as_a_plain_mitmdump_script(tmp_path: Path, certs: Path) -> None:
    listed(tmp_path, "127.0.0.3")
    policy = write_policy(tmp_path, BASIC)
    with upstream("127.0.0.3") as bad, upstream("127.0.0.2") as good:
        proxy = start_proxy(tmp_path, policy, certs, as_mitmdump_script=True)
        try:
            assert proxy.get(f"{bad.base}/").headers.get("x-clickguard-action") == "block"
            assert proxy.get(f"{good.base}/").body == good.body_for("/")
            assert bad.requests == []
        finally:
            proxy.stop()


def test_feed_file_edit_is_picked_up(tmp_path: Path, proxy_factory: ProxyPool) -> None:
    feed = listed(tmp_path, "127.0.0.9")
    with upstream("127.0.0.3") as site:
        proxy = proxy_factory(BASIC)
        assert proxy.get(f"{site.base}/").status == 200
        feed.write_text("127.0.0.9\n127.0.0.3\n")
        wait_until(lambda: proxy.get(f"{site.base}/").status == 403, 30, "the edited feed to block")
        feed.write_text("not an address\n")  # broken: the last good copy keeps serving
        status = tmp_path / "var" / "feeds-status.json"
        wait_until(lambda: "keeping the last good copy" in status.read_text(), 30, "the error")
        assert "thingbots.txt:1: ip:" in status.read_text()
        assert proxy.get(f"{site.base}/").status == 403


@pytest.mark.parametrize(("mode", "blocked"), [("closed", True), ("open", False)])
def test_check_that_cannot_complete(tmp_path: Path, proxy_factory: ProxyPool, mode: str,
                                    blocked: bool) -> None:
    """A name that does not resolve, looked up where only loopback exists: no query leaves the machine."""
    listed(tmp_path)
    proxy = proxy_factory(BASIC + f"on_check_error: {mode}\n", isolated_network=True)
    r = proxy.get("http://no-such-host.invalid/", HTML)
    if blocked:
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        assert proxy.audit()[-1]["reasons"] == ["check.incomplete"]
    else:
        assert "x-clickguard-action" not in r.headers  # mitmproxy's own 502: the name is unknown
        assert r.status == 502


def test_url_feed_cache_serves_at_start_up_when_the_server_is_down(tmp_path: Path, certs: Path) -> None:
    routes = {"/feed.txt": (200, {"Content-Type": "text/plain"}, b"127.0.0.3\n")}
    policy = write_policy(tmp_path, """\
        feeds:
          - {name: remote, format: ip, url: "URL", refresh: 3600}
        """)
    with upstream("127.0.0.5", routes) as feed_server, upstream("127.0.0.3") as site:
        policy.write_text(policy.read_text().replace("URL", f"{feed_server.base}/feed.txt"))
        first = start_proxy(tmp_path, policy, certs)
        try:
            wait_until(lambda: first.get(f"{site.base}/").status == 403, 30, "the first fetch")
        finally:
            first.stop()
        feed_server.routes["/feed.txt"] = (503, {}, b"down")
        second = start_proxy(tmp_path, policy, certs)
        try:
            # The cached copy is loaded before the proxy listens: blocked from the first request.
            assert second.get(f"{site.base}/").status == 403
        finally:
            second.stop()


GARBAGE = [
    b"\x00\x01\x02 garbage\r\n\r\n",
    b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://exa mple.com/ HTTP/1.1\r\n\r\n",
    b"GET http://xn--/ HTTP/1.1\r\nHost: xn--\r\n\r\n",
    b"GET http://\xff\xfe.example/ HTTP/1.1\r\n\r\n",
    b"GET http://127.0.0.1:99999/ HTTP/1.1\r\n\r\n",
    b"CONNECT :443 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
    b"GET http://a/" + b"A" * 70000 + b" HTTP/1.1\r\n\r\n",
]


def test_garbage_from_clients_and_servers_does_not_stop_the_proxy(shared: Proxy) -> None:
    proxy = shared
    log_before = len(proxy.log())
    bad_server = {"/broken": (200, {"Content-Type": "text/html", "Location": "\x7f\x00"}, b"\xff" * 100)}
    with upstream("127.0.0.2", bad_server) as site:
        for payload in GARBAGE:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
        assert proxy.get(f"{site.base}/broken", HTML).status == 200
        assert proxy.process.poll() is None
        assert proxy.get(f"{site.base}/").body == site.body_for("/")
        assert proxy.get("http://127.0.0.3/", HTML).headers["x-clickguard-action"] == "block"
        assert "Traceback" not in proxy.log()[log_before:], proxy.log()
