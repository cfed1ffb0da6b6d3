"""`clickguard run --workers N` for real: a supervisor, its workers on one port, a private redis-server.

One supervisor with two workers serves the module's checks of the running system (both
workers serve, the client's own address is kept, every request audited once in the shared
log and store, /readyz and /metrics merged, SIGHUP passed on, a killed worker replaced);
another is started to be stopped (nothing left behind). Refusals need no worker at all.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clickguard.cli import build_parser
from clickguard.proxy.workers import PASSED_ON
from clickguard.proxy.workers_ops import merge_metrics
from tests.appliances import Route, elf, serve
from tests.harness import (
    HTML,
    REPO,
    THINGBOT_ORIGIN,
    Proxy,
    Upstream,
    click_link,
    continue_link,
    free_port,
    ops_get,
    start_proxy,
    upstream,
    wait_until,
    write_policy,
)

SELFTEST = REPO / "policies" / "feeds" / "selftest.txt"
POLICY = f"""\
feeds:
  - {{name: selftest, format: ip, path: {SELFTEST}}}
  - {{name: origins, format: ip, path: origins.txt}}
"""
CLIENT = "127.0.0.5"  # the address the test's requests come from, as the audit must show it




def readyz(port: int) -> tuple[int, dict[str, Any]]:
    """/readyz: status and its JSON."""
    status, _headers, body = ops_get(port, "/readyz")
    return status, json.loads(body)


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus_client: value by (sample name, sorted labels)."""
    status, _headers, body = ops_get(port, "/metrics")
    assert status == 200
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests_of(port: int) -> dict[str, float]:
    """clickguard_requests_total by worker."""
    return {dict(labels)["worker"]: value for (name, labels), value in samples(port).items()
            if name == "clickguard_requests_total"}


def get_from(proxy: Proxy, url: str) -> int:
    """GET url through the proxy on a new connection from CLIENT: the status."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30, source_address=(CLIENT, 0))
    try:
        conn.request("GET", url, headers=HTML)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def pids_of_workers(ops_port: int) -> dict[int, int]:
    """Worker number -> pid, as /readyz tells."""
    return {w["worker"]: w["pid"] for w in readyz(ops_port)[1]["workers"]}


def alive(pid: int) -> bool:
    """Whether pid is a live process (not a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def descendants(pid: int) -> set[int]:
    """Every live descendant of pid (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2:].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if alive(p)}


def start_workers(workdir: Path, certs: Path, ops_port: int, *extra: str) -> Proxy:
    """`clickguard run --workers 2` with an ops listener and a store; returned once every worker is ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "origins.txt").write_text(f"{THINGBOT_ORIGIN}\n")  # mail from it warns on click
    proxy = start_proxy(workdir, write_policy(workdir, POLICY), certs, "--workers", "2",
                        "--ops", f"127.0.0.1:{ops_port}", "--audit-store", str(workdir / "audit.sqlite"),
                        *extra)

    def ready() -> bool:
        assert proxy.process.poll() is None, proxy.log()
        try:
            return readyz(ops_port)[0] == 200
        except OSError:
            return False

    wait_until(ready, 60, "every worker to be ready")
    return proxy


@pytest.fixture(scope="module")
def ops_port() -> int:
    """The ops port of the module's supervisor."""
    return free_port()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, certs: Path, ops_port: int) -> Iterator[Proxy]:
    """One supervisor with two workers for the module."""
    proxy = start_workers(tmp_path_factory.mktemp("workers"), certs, ops_port)
    yield proxy
    proxy.stop()


@pytest.fixture
def site() -> Iterator[Upstream]:
    """An upstream of the test's own."""
    with upstream("127.0.0.21") as up:
        yield up


def test_both_workers_serve_and_every_request_is_audited_once(cluster: Proxy, ops_port: int,
                                                               site: Upstream) -> None:
    """Concurrent requests spread over both workers; each one line in the shared log, one row in the store."""
    before = requests_of(ops_port)
    count = 60
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: get_from(cluster, f"{site.base}/page/{i}"), range(count)))
    assert statuses == [200] * count

    def served() -> dict[str, float]:
        after = requests_of(ops_port)
        return {worker: after[worker] - before.get(worker, 0) for worker in after}

    # /metrics is rendered at most once a second: the counts may lag the requests by that much.
    wait_until(lambda: sum(served().values()) >= count, 30, "the workers' request counts")
    assert set(served()) == {"1", "2"} and all(n > 0 for n in served().values()), served()
    assert sum(served().values()) == count
    # Every line of the shared log whole (Proxy.audit parses each), this test's exactly once each.
    lines = cluster.audit_path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    mine = [r for r in cluster.audit() if r["url"].startswith(site.base + "/")]  # acknowledged: written
    assert sorted(r["url"] for r in mine) == sorted(f"{site.base}/page/{i}" for i in range(count))
    assert {r["client"] for r in mine} == {CLIENT}  # SO_REUSEPORT: the client's own address, no balancer's

    def rows() -> int:
        with sqlite3.connect(f"file:{cluster.workdir / 'audit.sqlite'}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM decisions WHERE url LIKE ?",
                                  (site.base + "/%",)).fetchone()[0])

    wait_until(lambda: rows() >= count, 30, "the store rows")
    assert rows() == count


def test_readyz_healthz_metrics_and_pac_cover_every_worker(cluster: Proxy, ops_port: int) -> None:
    """The supervisor's ops listener: each worker's own /readyz JSON, merged metrics, a worker's PAC file."""
    status, body = readyz(ops_port)
    assert status == 200 and body["ready"] is True
    assert [w["worker"] for w in body["workers"]] == [1, 2]
    for worker in body["workers"]:
        assert worker["ready"] is True and worker["reasons"] == [] and alive(worker["pid"])
        assert "degraded" in worker  # the worker's own key, kept
    assert ops_get(ops_port, "/healthz")[0] == 200
    _status, _headers, text = ops_get(ops_port, "/metrics")
    types = [line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))  # one header a family
    found = samples(ops_port)
    assert found[("clickguard_workers_up", ())] == 2
    assert found[("clickguard_index_entries", (("worker", "1"),))] > 0
    assert found[("clickguard_index_entries", (("worker", "2"),))] > 0
    status, headers, pac = ops_get(ops_port, "/proxy.pac")
    assert status == 200 and headers["content-type"] == "application/x-ns-proxy-autoconfig"
    assert f"PROXY 127.0.0.1:{cluster.port}" in pac.decode()


def test_sighup_reaches_every_worker(cluster: Proxy) -> None:
    """SIGHUP to the supervisor: every worker reopens its audit log."""
    def reopened(worker: int) -> int:
        return sum(1 for line in cluster.log().splitlines()
                   if line.startswith(f"[worker {worker}] ") and "SIGHUP: the audit log is reopened" in line)

    before = {w: reopened(w) for w in (1, 2)}
    cluster.process.send_signal(signal.SIGHUP)
    wait_until(lambda: all(reopened(w) > before[w] for w in (1, 2)), 30, "both workers to reopen the log")
    assert cluster.process.poll() is None


def test_a_killed_worker_is_replaced(cluster: Proxy, ops_port: int, site: Upstream) -> None:
    """kill -9 of a worker: its inspection workers go with it, a new one is started and serves."""
    old = pids_of_workers(ops_port)[1]
    children = descendants(old)
    assert children  # its inspection workers (and their forkserver)
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not any(alive(p) for p in children | {old}), 30, "the killed worker's children to go")

    def replaced() -> bool:
        status, body = readyz(ops_port)
        return status == 200 and body["workers"][0]["pid"] not in (old, None)

    wait_until(replaced, 60, "a new worker 1 to be ready")
    assert samples(ops_port)[("clickguard_worker_restarts_total", (("worker", "1"),))] >= 1

    def new_one_served() -> bool:
        assert get_from(cluster, f"{site.base}/after-kill") == 200
        return requests_of(ops_port).get("1", 0) > 0

    wait_until(new_one_served, 30, "the new worker 1 to serve a request")


def test_a_private_redis_that_dies_is_started_again(cluster: Proxy) -> None:
    """kill -9 of the private redis-server: a new one answers on the same socket; the workers go on."""
    def redis_pids() -> set[int]:
        return {p for p in descendants(cluster.process.pid)
                if Path(f"/proc/{p}/comm").read_text().strip() == "redis-server"}

    (old,) = redis_pids()
    os.kill(old, signal.SIGKILL)
    redis_socket = cluster.workdir / "var" / "workers" / "redis.sock"

    def answers_again() -> bool:
        answer = subprocess.run(["redis-cli", "-s", str(redis_socket), "PING"], capture_output=True,
                                text=True, timeout=10, check=False)
        return answer.stdout.strip() == "PONG" and len(redis_pids() - {old}) == 1

    wait_until(answers_again, 30, "a new private redis-server")
    assert cluster.process.poll() is None and "private redis-server killed by SIGKILL" in cluster.log()


def test_sigterm_stops_everything_and_the_private_redis(tmp_path: Path, certs: Path) -> None:
    """The private redis-server answers on its socket while workers run; SIGTERM: exit 0, no process left."""
    proxy = start_workers(tmp_path, certs, free_port())
    try:
        everything = descendants(proxy.process.pid)
        redis_socket = tmp_path / "var" / "workers" / "redis.sock"
        answer = subprocess.run(["redis-cli", "-s", str(redis_socket), "PING"], capture_output=True,
                                text=True, timeout=10, check=False)
        assert answer.stdout.strip() == "PONG"
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in everything if alive(p)}
        assert "redis-server" in names and "cg-inspect" in names
        proxy.process.send_signal(signal.SIGTERM)
        assert proxy.process.wait(timeout=60) == 0, proxy.log()
        wait_until(lambda: not any(alive(p) for p in everything), 30, "every process to be gone")
        assert not redis_socket.exists()
        assert "[supervisor] stopped" in proxy.log()
    finally:
        proxy.stop()


def run_refused(tmp_path: Path, *extra: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`clickguard run --workers 2 …` that is expected to end on its own."""
    (tmp_path / "origins.txt").write_text(f"{THINGBOT_ORIGIN}\n")
    policy = write_policy(tmp_path, POLICY)
    return subprocess.run(
        [sys.executable, "-m", "clickguard.cli", "run", "--workers", "2", "--policy", str(policy),
         "--certs", str(tmp_path / "certs"), "--state-dir", str(tmp_path / "var"),
         "--audit-log", str(tmp_path / "audit.jsonl"), *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
        check=False)


def test_refused_without_redis_server(tmp_path: Path) -> None:
    """No cluster.redis and no redis-server on PATH: a clear refusal, nothing started."""
    result = run_refused(tmp_path, "--listen", f"127.0.0.1:{free_port()}", env={"PATH": str(tmp_path)})
    assert result.returncode == 2
    assert ("--workers 2 without cluster.redis needs Debian's redis-server: apt-get install redis-server, "
            "or set cluster.redis") in result.stderr
    assert "[worker" not in result.stdout


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    """A listener on the port, even one that set SO_REUSEPORT itself, stops the start before any worker."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = run_refused(tmp_path, "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"--listen 127.0.0.1:{port}: cannot listen there" in result.stderr
    assert "[worker" not in result.stdout


def test_a_worker_that_cannot_start_stops_the_start(tmp_path: Path) -> None:
    """A worker that exits before it ever listened: the supervisor stops, non-zero, the error shown."""
    (tmp_path / "not-a-folder").write_text("")
    result = run_refused(tmp_path, "--listen", f"127.0.0.1:{free_port()}",
                         "--certs", str(tmp_path / "not-a-folder"))  # a worker makes it, not the supervisor
    assert result.returncode != 0
    assert "could not start" in result.stderr
    assert "not-a-folder" in result.stdout  # the worker's own error, relayed
    assert not (tmp_path / "var" / "workers" / "redis.sock").exists()


def test_every_run_option_is_passed_on() -> None:
    """A new `run` option is either passed on to the workers or replaced by the supervisor (PASSED_ON)."""
    assert set(vars(build_parser().parse_args(["run"]))) - {"command"} == PASSED_ON


@pytest.mark.parametrize(("scrapes", "merged"), [
    ([(1, "# HELP a_total A.\n# TYPE a_total counter\na_total 1.0\n"),
      (2, "# HELP a_total A.\n# TYPE a_total counter\na_total 2.0\n")],
     '# HELP a_total A.\n# TYPE a_total counter\na_total{worker="1"} 1.0\na_total{worker="2"} 2.0\n'),
    ([(1, '# TYPE h histogram\nh_bucket{le="1.0"} 1.0\nh_sum 0.5\n# TYPE g gauge\ng{x="}"} 3.0\n'),
      (2, '# TYPE h histogram\nh_bucket{le="1.0"} 0.0\nh_sum 0.0\n# TYPE g gauge\ng{} 4.0\n')],
     '# TYPE h histogram\nh_bucket{worker="1",le="1.0"} 1.0\nh_sum{worker="1"} 0.5\n'
     'h_bucket{worker="2",le="1.0"} 0.0\nh_sum{worker="2"} 0.0\n'
     '# TYPE g gauge\ng{worker="1",x="}"} 3.0\ng{worker="2"} 4.0\n'),
    ([(1, "bare 1\n"), (2, "bare 2\n")], 'bare{worker="1"} 1\nbare{worker="2"} 2\n'),
    ([], ""),
])
def test_merge_metrics(scrapes: list[tuple[int, str]], merged: str) -> None:
    """Each family's samples together under one HELP and TYPE, each sample labelled with its worker."""
    assert merge_metrics(scrapes) == merged


def test_workers_agree_on_continues_click_trails_and_learned_hosts(cluster: Proxy, certs: Path) -> None:
    """Each step on a new connection, so on either worker: what one worker granted or learned, both know."""
    def fetch(url: str) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=30, source_address=(CLIENT, 0))
        try:
            conn.request("GET", url, headers=HTML)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
        finally:
            conn.close()

    origin = THINGBOT_ORIGIN  # listed by the origins feed: the click warns
    targets = []
    for i in range(8):  # a step on the other worker has even odds each time: 8 flows all but surely cross
        with upstream(f"127.0.0.{40 + i}") as host:  # a host of its own: a continue is granted per host
            target = f"{host.base}/invoice"
            status, _, page = fetch(click_link(certs, target, origin))
            assert status == 403 and "origin.thingbot" in page
            status, headers, _ = fetch(continue_link(page))
            assert status == 303 and headers["location"] == target
            assert fetch(target)[0] == 200  # no second warning: the grant and the click's trail were known
            targets.append(target)
    hops = [r for r in cluster.audit() if r.get("origin_ip") == origin and r["event"] == "hop"]
    assert sorted(r["url"] for r in hops) == sorted(targets)
    camera = [("Server", "Hikvision-Webs"), ("Content-Type", "text/html")]
    with serve("127.0.0.23", {"/Mozi.m": Route(headers=camera, body=elf("mips", size=20_000))}) as server:
        assert fetch(f"{server.base}/Mozi.m")[1]["x-clickguard-action"] == "block"
        assert [fetch(f"{server.base}/{i}")[1]["x-clickguard-action"] for i in range(8)] == ["block"] * 8
        assert server.requests == ["/Mozi.m"]  # refused before connecting, by both workers
