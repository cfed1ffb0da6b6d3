"""Held bodies read in worker processes: the pool in-process, then through the real proxy.

The pool (`clickguard.inspection.pool`): a reading comes back as the same value it
is in-process; past its deadline its worker is killed and replaced; a worker
killed mid-reading fails that reading only; a reading that raises brings its
traceback; the queue is bounded; changed fingerprints restart the workers;
closing leaves no process. Through the proxy: the audit record says timeout or
failed, the next inspection works, a reloaded fingerprint file reaches the
workers, and the proxy's exit (clean or killed) leaves no worker behind.
Workers are found in /proc as the proxy's descendants named ``cg-inspect``.
Addresses 127.0.0.170–179.
"""

from __future__ import annotations

import gzip
import http.client
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clickguard.inspection import pool as pool_module
from clickguard.inspection.device_evidence import CertificateFacts, ServerFacts
from clickguard.inspection.fingerprints import SHIPPED_FINGERPRINTS, FingerprintDB
from clickguard.inspection.pool import (
    BodyJob,
    PoolBusy,
    PoolClosed,
    ReadingFailed,
    ReadingPool,
    ReadingTimeout,
    WorkerDied,
    workers_of,
)
from clickguard.inspection.response import read_body
from clickguard.urls import normalize_url
from tests.appliances import Route, elf, serve
from tests.harness import HTML, Proxy, ProxyPool, wait_until

CAMERA = ("Server", "Hikvision-Webs")
HTML_TYPE = ("Content-Type", "text/html; charset=utf-8")
NGINX = ("Server", "nginx")
SLOW_FUNCTIONS = 11_000  # a page that takes seconds to read: every deadline below is well short of it
DEADLINE_MS = 1000  # long enough for an ordinary page on a busy machine, far short of the slow one


def slow_page(functions: int = SLOW_FUNCTIONS) -> bytes:
    """About 880 KiB of script that the reader needs seconds for (held: under the default max_body).

    Each sink's value is a long sum the reader evaluates (2.3 s here, idle, against 0.9 s for
    sinks given a bare name): far past a 1 s deadline even on a quiet, fast machine.
    """
    value = "+".join(["a"] * 24)
    script = 'var a="x";\n' + "".join(f"function h{i}(){{location.href={value}}}\n" for i in range(functions))
    return b"<html><body><script>" + script.encode() + b"</script></body></html>"


def job(raw: bytes, headers: list[tuple[str, str]], url: str = "http://198.51.100.20:8080/index.html",
        server: ServerFacts | None = None) -> BodyJob:
    """A held response to read."""
    return BodyJob(normalize_url(url), 200, headers, raw, 1 << 20, server)


def process_table() -> dict[int, tuple[int, str, str]]:
    """Every process: {pid: (parent pid, name, state)}."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(rest[1]), name, rest[0])
    return table


def descendants(pid: int) -> dict[int, str]:
    """The live descendants of a process: {pid: name}."""
    table = process_table()
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, name, state) in table.items():
            if ppid == parent and state != "Z" and child not in found:
                found[child] = name
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    entry = process_table().get(pid)
    return entry is not None and entry[2] != "Z"


def cpu_ticks(pid: int) -> int:
    """User and system CPU time a process used, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def ready_workers(proxy: Proxy, count: int = 1) -> list[int]:
    """Wait until the proxy has at least count inspection workers, all loaded and waiting; their pids."""
    def ready() -> bool:
        pids = workers_of(proxy.process.pid)
        log = proxy.log()
        return len(pids) >= count and all(f"inspection worker {pid} started" in log for pid in pids)

    wait_until(ready, 60, f"{count} inspection workers ready")
    return workers_of(proxy.process.pid)


def get(proxy: Proxy, url: str) -> tuple[int, dict[str, str], bytes]:
    """A page navigation through the proxy: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=120)
    conn.request("GET", url, headers=HTML)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def record_of(proxy: Proxy, headers: dict[str, str]) -> dict[str, Any]:
    """The audit record of a page the proxy answered itself."""
    [record] = proxy.audit_of_ref(headers["x-clickguard-ref"])
    return record


def fingerprint_names(record: dict[str, Any]) -> list[str]:
    """The fingerprint an inspection record names, if any."""
    fingerprint = record["inspection"].get("fingerprint")
    return [fingerprint["name"]] if fingerprint else []


def inspected(proxy: Proxy, url: str) -> list[dict[str, Any]]:
    """The records of what inspecting url's responses found (written before each was delivered)."""
    return [r for r in proxy.audit() if r["url"] == url and r["event"] == "response"]


# -- the pool in-process ------------------------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[ReadingPool]:
    """A pool of one worker process with the shipped fingerprints, and no extra ones."""
    readers = ReadingPool(1, max_workers=1)
    readers.start()
    yield readers
    readers.close()


READINGS = {
    "camera page": job(b"<title>login</title>", [CAMERA, HTML_TYPE]),
    "meta refresh and script": job(
        b'<meta http-equiv="refresh" content="0;url=http://elsewhere.example/a">'
        b"<script>location=atob('aHR0cDovL3guZXhhbXBsZS8=')</script>", [NGINX, HTML_TYPE],
        url="http://shop.example/"),
    "gzip ELF named as a bot": job(gzip.compress(elf("mips", size=8192)),
                                   [NGINX, ("Content-Type", "text/html"), ("Content-Encoding", "gzip")],
                                   url="http://198.51.100.20:81/Mozi.m"),
    "generic device over TLS": job(b"<title>Gateway</title>", [("Server", "mini_httpd/1.19"), HTML_TYPE],
                                   url="https://198.51.100.20:8443/",
                                   server=ServerFacts("HTTP/1.0", "HTTP/1.1", ("server", "content-type"),
                                                      CertificateFacts("192.168.1.1", None, (), True))),
}


@pytest.mark.parametrize("body", READINGS.values(), ids=READINGS.keys())
def test_a_reading_comes_back_as_it_is_read_in_process(pool: ReadingPool, body: BodyJob) -> None:
    """Everything the reading finds crosses the process boundary intact (and pickles)."""
    here = read_body(FingerprintDB.default(), **body._asdict())
    assert pool.submit(body, 30).result() == here


def test_a_reading_past_its_deadline_stops_its_worker_and_a_new_one_reads_on(pool: ReadingPool) -> None:
    """The worker is killed at the deadline, not left reading to the end of its budget."""
    wait_until(lambda: len(pool.worker_pids()) == 1, 60, "the worker")
    [first] = pool.worker_pids()
    started = time.monotonic()
    with pytest.raises(ReadingTimeout):
        pool.submit(job(slow_page(), [NGINX, HTML_TYPE]), 0.5).result()
    assert time.monotonic() - started < 5
    wait_until(lambda: not alive(first), 10, "the timed-out worker gone")
    camera = pool.submit(READINGS["camera page"], 30).result()
    assert camera.appliance
    assert pool.worker_pids() and pool.worker_pids() != [first]


def test_a_worker_killed_mid_reading_fails_that_reading_only(pool: ReadingPool) -> None:
    """A crash or the OOM killer: WorkerDied for the job it had; the pool goes on with a new worker."""
    wait_until(lambda: len(pool.worker_pids()) == 1, 60, "the worker")
    [worker] = pool.worker_pids()
    idle = cpu_ticks(worker)
    reading = pool.submit(job(slow_page(), [NGINX, HTML_TYPE]), 120)
    wait_until(lambda: cpu_ticks(worker) > idle + 10, 60, "the worker reading")
    os.kill(worker, signal.SIGKILL)
    with pytest.raises(WorkerDied, match="exit code -9"):
        reading.result()
    assert pool.submit(READINGS["camera page"], 30).result().appliance


def test_a_reading_that_raises_brings_the_workers_traceback(pool: ReadingPool) -> None:
    """What raised in the worker is reported with where; the worker keeps serving."""
    wait_until(lambda: len(pool.worker_pids()) == 1, 60, "the worker")
    [worker] = pool.worker_pids()
    broken = job(b"<p>", [NGINX, HTML_TYPE])._replace(headers=None)  # type: ignore[arg-type]  # makes it raise
    with pytest.raises(ReadingFailed, match="TypeError"):
        pool.submit(broken, 30).result()
    assert pool.submit(READINGS["camera page"], 30).result().appliance
    assert alive(worker) and worker in pool.worker_pids()


def test_workers_run_niced_and_named(pool: ReadingPool) -> None:
    """Below the proxy's priority, so its event loop goes first; `cg-inspect` in ps."""
    wait_until(lambda: len(pool.worker_pids()) == 1, 60, "the worker")
    [worker] = pool.worker_pids()
    stat = Path(f"/proc/{worker}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    assert int(fields[16]) == os.getpriority(os.PRIO_PROCESS, 0) + pool_module.WORKER_NICENESS
    assert Path(f"/proc/{worker}/comm").read_text().strip() == "cg-inspect"


def test_the_queue_is_bounded(pool: ReadingPool, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the worker busy and the queue full, a reading is refused at once (PoolBusy), not queued."""
    monkeypatch.setattr(pool_module, "QUEUE_PER_WORKER", 2)
    slow = job(slow_page(), [NGINX, HTML_TYPE])
    running = pool.submit(slow, 60)
    wait_until(running.running, 60, "the first reading under way")
    queued = [pool.submit(slow, 60) for _ in range(2)]
    with pytest.raises(PoolBusy):
        pool.submit(slow, 60)
    for future in [running, *queued]:
        future.cancel()
    pool.close()
    assert all(f.cancelled() or isinstance(f.exception(), (PoolClosed, WorkerDied)) for f in queued)


def test_a_reading_does_not_wait_for_a_long_one_but_gets_a_process_of_its_own() -> None:
    """While every worker kept started reads a slow page, one more starts: a small page is not queued."""
    readers = ReadingPool(1)
    try:
        readers.start()
        wait_until(lambda: len(readers.worker_pids()) == 1, 60, "the worker")
        slow = readers.submit(job(slow_page(), [NGINX, HTML_TYPE]), 120)
        wait_until(lambda: len(readers.worker_pids()) == 2, 60, "a second worker")
        assert readers.submit(READINGS["camera page"], 30).result(timeout=30).appliance
        assert slow.running()
    finally:
        readers.close()


def test_no_more_than_max_workers_read_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past max_workers, jobs queue; past the queue's bound, PoolBusy (at once)."""
    monkeypatch.setattr(pool_module, "QUEUE_PER_WORKER", 1)
    readers = ReadingPool(1, max_workers=2)
    try:
        slow = job(slow_page(), [NGINX, HTML_TYPE])
        running = [readers.submit(slow, 120) for _ in range(2)]
        wait_until(lambda: all(f.running() for f in running), 60, "two readings under way")
        queued = [readers.submit(slow, 120) for _ in range(2)]
        with pytest.raises(PoolBusy):
            readers.submit(slow, 120)
        assert len(readers.worker_pids()) == 2 and not any(f.running() for f in queued)
    finally:
        readers.close()


def test_changed_fingerprints_restart_the_workers_and_the_same_ones_do_not(tmp_path: Path,
                                                                            pool: ReadingPool) -> None:
    """A reload hands the pool its database: the workers read with the new one from their next job."""
    own = tmp_path / "own.yaml"
    own.write_text(FINGERPRINT.format(server="AcmeCam-Webs"))
    acme = job(b"<p>hello", [("Server", "AcmeCam-Webs"), HTML_TYPE], url="http://acme.example/")
    assert pool.submit(acme, 30).result().device is None
    [before] = pool.worker_pids()
    pool.use_fingerprints(FingerprintDB.default())  # the same database again: nothing restarts
    assert pool.submit(acme, 30).result().device is None and pool.worker_pids() == [before]
    pool.use_fingerprints(FingerprintDB.load([SHIPPED_FINGERPRINTS, own]))
    device = pool.submit(acme, 30).result().device
    assert device is not None and device.name == "Acme camera"
    assert pool.worker_pids() != [before]


def test_closing_leaves_no_process_and_fails_what_waits() -> None:
    """close() kills and reaps the workers; readings not started get PoolClosed."""
    readers = ReadingPool(2)
    readers.start()
    wait_until(lambda: len(readers.worker_pids()) == 2, 60, "the workers")
    pids = readers.worker_pids()
    slow = job(slow_page(), [NGINX, HTML_TYPE])
    futures = [readers.submit(slow, 60) for _ in range(4)]
    readers.close()
    assert not any(alive(pid) for pid in pids)
    for future in futures:
        assert isinstance(future.exception(timeout=10), (PoolClosed, WorkerDied))
    with pytest.raises(PoolClosed):
        readers.submit(slow, 60)


def test_threads_read_the_same_and_keep_the_deadline() -> None:
    """processes=False (the comparison in bench/hostile.py): same readings; a late one is abandoned."""
    readers = ReadingPool(1, processes=False)
    try:
        camera = READINGS["camera page"]
        assert readers.submit(camera, 30).result() == read_body(FingerprintDB.default(), **camera._asdict())
        assert readers.worker_pids() == []
        readers.submit(job(slow_page(), [NGINX, HTML_TYPE]), 60)  # seconds: the camera waits past 0.2 s
        with pytest.raises(ReadingTimeout):
            readers.submit(camera, 0.2).result()  # waited behind the slow one past its deadline
    finally:
        readers.close(timeout=0)


FINGERPRINT = """\
version: 1
fingerprints:
  - name: Acme camera
    class: camera
    strength: device
    source: test
    match:
      server: '^{server}$'
    examples:
      - server: {server}
"""


# -- through the real proxy --------------------------------------------------------------------------


def private_proxy(factory: ProxyPool, policy: str, *options: str) -> Proxy:
    """A proxy of this test alone (its workers are killed and counted), with these --set options."""
    extra = [arg for option in options for arg in ("--set", option)]
    return factory(policy, *extra, private=True)


ROUTES = {"/slow": Route(headers=[NGINX, HTML_TYPE], body=slow_page()),
          "/cam": Route(headers=[CAMERA, HTML_TYPE], body=b"<title>login</title>")}


def test_an_inspection_past_the_deadline_kills_its_worker_and_the_next_one_works(
        proxy_factory: ProxyPool) -> None:
    """The record says timeout, on_check_error decides; the worker reading it is gone, a new one serves."""
    proxy = private_proxy(proxy_factory, "feeds: []\non_check_error: closed\ninspect: {learn: false}\n",
                          f"clickguard_inspect_deadline_ms={DEADLINE_MS}", "clickguard_inspect_workers=1")
    [first] = ready_workers(proxy, 1)
    with serve("127.0.0.170", ROUTES) as site:
        status, headers, _ = get(proxy, f"{site.base}/slow")
        assert status == 403 and headers["x-clickguard-action"] == "block"
        record = record_of(proxy, headers)
        assert record["reasons"] == ["check.incomplete"] and record["inspection"]["timeout"] is True
        wait_until(lambda: not alive(first), 10, "the timed-out worker gone")
        assert first not in ready_workers(proxy)
        assert get(proxy, f"{site.base}/cam")[0] == 200
        [record] = inspected(proxy, f"{site.base}/cam")
    assert "timeout" not in record["inspection"]
    assert record["inspection"]["fingerprint"]["class"] == "camera"


def test_a_worker_killed_mid_inspection_fails_it_and_the_proxy_goes_on(proxy_factory: ProxyPool) -> None:
    """SIGKILL to the worker reading a page: that inspection failed (the policy decides), the next works."""
    proxy = private_proxy(proxy_factory, "feeds: []\non_check_error: closed\ninspect: {learn: false}\n",
                          "clickguard_inspect_deadline_ms=120000", "clickguard_inspect_workers=1")
    [worker] = ready_workers(proxy, 1)
    idle = cpu_ticks(worker)
    outcome: list[tuple[int, dict[str, str], bytes]] = []
    with serve("127.0.0.171", ROUTES) as site:
        thread = threading.Thread(target=lambda: outcome.append(get(proxy, f"{site.base}/slow")))
        thread.start()
        wait_until(lambda: cpu_ticks(worker) > idle + 10, 60, "the worker reading the slow page")
        os.kill(worker, signal.SIGKILL)
        thread.join(60)
        [(status, headers, _)] = outcome
        assert status == 403 and headers["x-clickguard-action"] == "block"
        record = record_of(proxy, headers)
        assert record["reasons"] == ["check.incomplete"] and record["inspection"]["failed"] is True
        assert worker not in ready_workers(proxy)
        assert get(proxy, f"{site.base}/cam")[0] == 200
        [record] = inspected(proxy, f"{site.base}/cam")
    assert record["inspection"]["fingerprint"]["class"] == "camera"
    assert f"inspection worker {worker} died mid-reading" in proxy.log()


def test_a_reloaded_fingerprint_file_is_what_the_workers_read_with(proxy_factory: ProxyPool) -> None:
    """IT edits its own fingerprints: after the reload, held pages are read with them."""
    policy = "feeds: []\ninspect: {learn: false, fingerprints: [own.yaml]}\n"
    proxy = proxy_factory(policy, "--set", "clickguard_inspect_workers=1", private=True,
                          files={"own.yaml": FINGERPRINT.format(server="AcmeBell")})
    ready_workers(proxy)
    routes = {"/": Route(headers=[("Server", "AcmeCam-Webs"), HTML_TYPE], body=b"<p>hello")}
    with serve("127.0.0.172", routes) as device:
        url = f"{device.base}/"
        assert get(proxy, url)[0] == 200
        assert [fingerprint_names(r) for r in inspected(proxy, url)] in ([], [["generic device evidence"]])
        loads = proxy.log().count("clickguard: policy")
        (proxy.workdir / "own.yaml").write_text(FINGERPRINT.format(server="AcmeCam-Webs"))
        wait_until(lambda: proxy.log().count("clickguard: policy") > loads, 30, "the reload")
        assert get(proxy, url)[0] == 200
    assert fingerprint_names(inspected(proxy, url)[-1]) == ["Acme camera"]


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_the_proxys_exit_leaves_no_inspection_process(proxy_factory: ProxyPool, how: str) -> None:
    """Stopped (SIGTERM) or killed outright (SIGKILL), the proxy takes its workers and forkserver along."""
    proxy = private_proxy(proxy_factory, "feeds: []\n")
    ready_workers(proxy, 2)
    with serve("127.0.0.173", ROUTES) as site:
        assert get(proxy, f"{site.base}/cam")[0] == 200  # the workers have read something
    left = descendants(proxy.process.pid)
    assert len(left) >= 3  # the two workers and the forkserver
    if how == "terminate":
        proxy.stop()
    else:
        proxy.process.kill()
        proxy.process.wait()
    wait_until(lambda: not any(alive(pid) for pid in left), 30, f"no process left of {left}")
