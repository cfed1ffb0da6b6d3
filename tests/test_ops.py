"""The ops listener for real: `clickguard run --ops` (or policy ops.listen) on loopback.

/healthz and /readyz as a load balancer asks them, readiness lost and regained through real
failures (the audit log's directory gone, a URL feed that cannot be fetched), /metrics scraped
and parsed with prometheus_client's own parser after real requests through the proxy, and
clients that are slow, oversized or too many never holding the proxy up.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clickguard.proxy.ops import not_ready
from clickguard.proxy.runtime import Runtime
from tests.harness import HTML, REPO, Proxy, ProxyPool, free_port, ops_get, upstream, wait_until

SELFTEST = REPO / "policies" / "feeds" / "selftest.txt"  # lists 127.66.0.0/16
POLICY = f"""\
feeds:
  - {{name: selftest, format: ip, path: {SELFTEST}}}
"""




def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """/readyz: status and its JSON."""
    status, headers, body = ops_get(port, "/readyz")
    assert headers["content-type"] == "application/json"
    return status, json.loads(body)


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus_client: value by (sample name, sorted labels)."""
    status, headers, body = ops_get(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture(scope="module")
def ops_port() -> int:
    """The ops port of the module's shared proxy."""
    return free_port()


@pytest.fixture
def proxy(shared_proxy: ProxyPool, ops_port: int) -> Proxy:
    """The module's proxy, the self-test feed loaded, the ops listener on ops_port."""
    return shared_proxy(POLICY, "--ops", f"127.0.0.1:{ops_port}")


def test_healthz_and_readyz(proxy: Proxy, ops_port: int) -> None:
    status, _, body = ops_get(ops_port, "/healthz")
    assert (status, body) == (200, b"ok\n")
    wait_until(lambda: readyz(ops_port) == (200, {"ready": True, "reasons": [], "degraded": []}), 60, "ready")
    assert ops_get(ops_port, "/nothing")[0] == 404


def test_metrics_count_what_the_proxy_decided(proxy: Proxy, ops_port: int) -> None:
    before = samples(ops_port)
    with upstream("127.0.0.21") as up:
        assert proxy.get(up.base + "/page", HTML).status == 200  # an allowed navigation: recorded
        assert proxy.get("http://127.66.0.21/", HTML).status == 403  # the self-test range
    block = ("clickguard_decisions_total", (("action", "block"), ("event", "decision")))
    allow = ("clickguard_decisions_total", (("action", "allow"), ("event", "decision")))
    thingbot = ("clickguard_reasons_total", (("action", "block"), ("reason", "landing.thingbot")))
    requests = ("clickguard_requests_total", ())

    def counted() -> bool:
        now = samples(ops_port)
        return all(now.get(key, 0) == before.get(key, 0) + 1 for key in (block, allow, thingbot))

    wait_until(counted, 30, "the decisions in /metrics")  # /metrics is rendered at most once a second
    after = samples(ops_port)
    assert after[requests] >= before.get(requests, 0) + 2
    assert after[("clickguard_feed_entries", (("feed", "selftest"),))] == 1
    assert after[("clickguard_feed_age_seconds", (("feed", "selftest"),))] >= 0
    writes = after[("clickguard_audit_write_seconds_count", ())]
    assert writes >= before.get(("clickguard_audit_write_seconds_count", ()), 0) + 2
    assert after[("clickguard_audit_write_seconds_bucket", (("le", "+Inf"),))] == writes
    assert after[("clickguard_audit_queue_depth", ())] >= 0
    assert after[("clickguard_audit_sink_failing", (("sink", "log"),))] == 0
    for cache in ("resolver", "learned_hosts", "continue_grants", "click_trail"):
        assert ("clickguard_cache_entries", (("cache", cache),)) in after
    assert ("clickguard_inspection_seconds_count", ()) in after


def test_inspection_time_is_measured(proxy: Proxy, ops_port: int) -> None:
    page = (200, {"Content-Type": "text/html"}, b"<html><title>hello</title><p>a page</p></html>")
    before = samples(ops_port).get(("clickguard_inspection_seconds_count", ()), 0)
    with upstream("127.0.0.22", {"/": page}) as up:
        assert proxy.get(up.base + "/", HTML).status == 200  # held and read by an inspection worker
    wait_until(lambda: samples(ops_port)[("clickguard_inspection_seconds_count", ())] > before, 30,
               "the inspection's time in /metrics")


def test_hostile_ops_clients_never_hold_the_proxy(proxy: Proxy, ops_port: int) -> None:
    # A client that sends an endless head is dropped unanswered at the head's limit.
    with socket.create_connection(("127.0.0.1", ops_port)) as flood:
        flood.settimeout(30)
        with contextlib.suppress(ConnectionError):
            flood.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000)
        assert _read_to_close(flood) == b""
    # Many clients that connect and say nothing: the proxy serves meanwhile.
    idle = [socket.create_connection(("127.0.0.1", ops_port)) for _ in range(20)]
    try:
        with upstream("127.0.0.23") as up:
            assert proxy.get(up.base + "/").status == 200
    finally:
        for s in idle:
            s.close()
    # The slots are given back (at the read timeout at the latest): the listener answers again.
    wait_until(lambda: _healthy(ops_port), 30, "the ops listener to answer again")


def _read_to_close(s: socket.socket) -> bytes:
    """Everything until the peer closes (or resets) the connection."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _healthy(port: int) -> bool:
    """Whether /healthz answers 200 now."""
    try:
        return ops_get(port, "/healthz")[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def test_not_ready_while_the_audit_log_cannot_be_written(proxy_factory: ProxyPool, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "audit.jsonl"
    # Older records fill a MiB: the limit below stops the audit log, not the proxy's smaller output.
    log.write_text('{"older": "record"}\n' * 50_000)
    proxy = proxy_factory(POLICY + f"ops: {{listen: '127.0.0.1:{port}'}}\n", "--audit-log", str(log))
    assert proxy.get("http://127.66.0.22/", HTML).status == 403
    wait_until(lambda: readyz(port)[0] == 200, 60, "ready")
    # The disk is full, as far as the proxy can tell: no file of it may grow (EFBIG, as ENOSPC would).
    size = log.stat().st_size
    resource.prlimit(proxy.process.pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
    try:
        assert proxy.get("http://127.66.0.22/", HTML).status == 403  # served (on_failure: open), not recorded
        status, answer = readyz(port)
        assert status == 503 and answer["ready"] is False
        assert any(r.startswith(f"audit log {log}: failing: ") and "too large" in r
                   for r in answer["reasons"]), answer
        assert samples(port)[("clickguard_audit_sink_failing", (("sink", "log"),))] == 1
    finally:
        resource.prlimit(proxy.process.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    # Room again: the next record is written and the proxy is ready again.
    assert proxy.get("http://127.66.0.22/", HTML).status == 403
    wait_until(lambda: readyz(port)[0] == 200, 30, "readiness once records are written again")


def test_not_ready_while_the_audit_folder_is_gone(proxy_factory: ProxyPool, tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "audit"
    log = folder / "audit.jsonl"
    proxy_factory(POLICY, "--ops", f"127.0.0.1:{port}", "--audit-log", str(log))
    wait_until(lambda: readyz(port)[0] == 200, 60, "ready")
    shutil.rmtree(folder)
    folder.write_text("a file where the folder was")
    assert readyz(port) == (503, {"ready": False,
                                  "reasons": [f"audit log {log}: {folder} is not a directory"],
                                  "degraded": []})
    folder.unlink()
    assert readyz(port) == (503, {"ready": False,
                                  "reasons": [f"audit log {log}: its directory {folder} is missing"],
                                  "degraded": []})
    folder.mkdir()
    assert readyz(port)[0] == 200


def test_not_ready_while_a_url_feed_has_never_been_fetched(proxy_factory: ProxyPool, tmp_path: Path) -> None:
    port = free_port()
    nowhere = free_port()  # nothing listens there: every fetch is refused
    proxy = proxy_factory(POLICY + f"""\
  - {{name: remote, format: ip, url: 'http://127.0.0.1:{nowhere}/feed.txt', refresh: 1}}
""", "--ops", f"127.0.0.1:{port}")
    wait_until(lambda: "inspection workers starting" not in readyz(port)[1]["reasons"], 60, "a worker")
    status, answer = readyz(port)
    assert status == 503
    assert len(answer["reasons"]) == 1 and answer["reasons"][0].startswith("feed remote: no copy loaded (")
    wait_until(lambda: "never fetched" not in readyz(port)[1]["reasons"][0], 30, "the failed fetch's error")
    assert f"127.0.0.1:{nowhere}" in readyz(port)[1]["reasons"][0]
    assert proxy.get("http://127.66.0.23/").status == 403  # the proxy serves what it has meanwhile


def test_empty_feed_list_is_ready(proxy_factory: ProxyPool) -> None:
    port = free_port()
    proxy_factory("feeds: []\n", "--ops", f"127.0.0.1:{port}")
    wait_until(lambda: readyz(port) == (200, {"ready": True, "reasons": [], "degraded": []}), 60, "ready")


def test_ops_port_in_use_stops_the_start(tmp_path: Path, certs: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "clickguard.cli", "run", "--listen", f"127.0.0.1:{free_port()}",
             "--policy", str(tmp_path / "policy.yaml"), "--certs", str(certs),
             "--state-dir", str(tmp_path / "var"), "--audit-log", str(tmp_path / "audit.jsonl"),
             "--ops", f"127.0.0.1:{port}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert f"clickguard_ops: cannot listen on 127.0.0.1:{port}" in done.stdout + done.stderr


def test_not_ready_until_an_inspection_worker_is_up(tmp_path: Path) -> None:
    """Before the first worker process is up a page to inspect waits for it: not ready, and why."""
    (tmp_path / "policy.yaml").write_text("feeds: []\naudit: {log: audit.jsonl, store: audit.sqlite}\n")
    runtime = Runtime(state_dir=tmp_path / "var", certs_dir=tmp_path / "certs")
    runtime.policy_path = tmp_path / "policy.yaml"
    runtime.install(runtime.build())
    try:
        assert not_ready(runtime) == ["inspection workers starting"]
        runtime.start_inspectors()
        runtime.readers.up.result(timeout=60)
        assert not_ready(runtime) == []
    finally:
        runtime.close()
