"""The proxy lines of `make bench`: clickguard against bare mitmdump, same upstream, same wrk load.

Every contender runs side by side for the whole benchmark; each line loads them in
turn (bare, clickguard, and clickguard on uvloop when that A/B runs), round after
round, and takes the median of the rounds. A line's throughput ratio is
clickguard/bare (higher is better); its CPU ratio is bare/clickguard CPU per request,
so that both read against the same ">= goal". CPU counts the proxy's process tree.
"""

from __future__ import annotations

import http.client
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from bench.measure import (
    BIN,
    REPO,
    Load,
    descendants,
    free_port,
    has_option,
    median_load,
    peak_rss,
    pss,
    rss,
    verdict,
    wait_port,
    wrk,
)

DOWNLOAD_BYTES = 32 * 2**20  # a large download: far beyond inspect.max_body
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
MEMORY_GOAL = 100  # MiB over bare mitmdump
CLICK_GOAL = 1.0  # ms over bare mitmdump's p99


class Contender(NamedTuple):
    """One proxy under load: its name in the lines, its port and its process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]


class Line(NamedTuple):
    """A proxy line: what it loads, through which upstream, and its goal (None: no goal)."""

    name: str  # for --only
    label: str
    path: str  # upstream key
    headers: dict[str, str]
    goal: float | None
    cpu_goal: bool = False  # the goal holds for CPU per request too


# A browser's requests for a page's parts (scripts, images, fetches) say so (Sec-Fetch-Dest);
# from an ordinary server (a name or an address on port 80 or 443) their bodies are not read.
SUBRESOURCE = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
LINES = (
    Line("plain", "plain requests, a page's parts from an ordinary server ({entries} reputation entries)",
         "plain", SUBRESOURCE, 0.95, cpu_goal=True),
    # A client that does not say what it fetches gets its responses read as pages could be.
    Line("undeclared", "requests without fetch metadata (1 KB text bodies read as a page's)", "plain", {},
         None),
    Line("navigations", "audited navigations", "plain", NAVIGATE, 0.95),
    Line("pages", "inspected 14 KB HTML pages (fingerprint, redirects, payload)", "pages", NAVIGATE, 0.9),
    Line("download", f"{DOWNLOAD_BYTES // 2**20} MiB downloads, streamed and sniffed", "blobs", NAVIGATE,
         0.95),
    Line("webmail", "webmail 14 KB pages, 200 links rewritten", "webmail", {}, 0.85),
)
UVLOOP_LINES = ("plain", "navigations")
NAMES = {line.name for line in LINES} | {"memory", "clicks", "uvloop"}


def _port_80() -> int | None:
    """80 if this process may listen there on 127.0.0.2 and nothing does; else None."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 80))
        except OSError:
            return None
    return 80


def _upstream(host: str, size: int, kind: str = "text",
              port: int | None = None) -> tuple[subprocess.Popen[bytes], int, str]:
    """bench/upstream.py on port (by default a free one): (process, port, host)."""
    port = port or free_port()
    process = subprocess.Popen([sys.executable, str(REPO / "bench" / "upstream.py"), host, str(port),
                                str(size), kind])
    return process, port, host


def _mitmdump(name: str, command: list[str], workdir: Path) -> Contender:
    """mitmdump (or a master like it) on a free port, the options clickguard runs with."""
    port = free_port()
    return Contender(name, port, subprocess.Popen(
        [*command, "--listen-host", "127.0.0.1", "--listen-port", str(port), "--set", "flow_detail=0",
         "--set", "connection_strategy=lazy", "--set", f"confdir={workdir / 'certs'}"],
        stdout=subprocess.DEVNULL))


def _clickguard(workdir: Path, name: str, specs: list[str], *extra: str) -> Contender:
    """`clickguard run` with the feeds, in a directory of its own (audit, state); certificates shared."""
    home = workdir / name
    home.mkdir()
    port = free_port()
    args = [str(BIN / "clickguard"), "run", "--listen", f"127.0.0.1:{port}",
            "--policy", str(workdir / "policy.yaml"), "--certs", str(workdir / "certs"),
            "--audit-log", str(home / "audit.jsonl"), "--audit-store", str(home / "audit.sqlite"),
            "--state-dir", str(home / "var"), *extra]
    for spec in specs:
        args += ["--feed", spec]
    log = open(home / "clickguard.log", "wb")  # noqa: SIM115 (the process keeps it)
    return Contender(name, port, subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))


def _wait(contender: Contender, workdir: Path) -> None:
    """Wait for a proxy to listen; show a clickguard's log if it never does."""
    try:
        wait_port(contender.port, contender.process)
    except SystemExit:
        log = workdir / contender.name / "clickguard.log"
        if log.exists():
            print(log.read_text()[-3000:])
        raise


def compare(url: str, headers: dict[str, str], contenders: list[Contender], rounds: int, seconds: int,
            connections: int, workdir: Path) -> dict[str, Load]:
    """Each contender loaded in turn, `rounds` times after a warm-up: the median Load of each."""
    for c in contenders:
        wrk(c.port, url, 2, max(connections // 2, 1), workdir, headers)
    runs: dict[str, list[Load]] = {c.name: [] for c in contenders}
    for _ in range(rounds):
        for c in contenders:
            runs[c.name].append(wrk(c.port, url, seconds, connections, workdir, headers, c.process.pid))
    return {name: median_load(loads) for name, loads in runs.items()}


def ratio_line(label: str, goal: float | None, base: tuple[str, Load], other: tuple[str, Load],
               rounds: int, seconds: int, connections: int, *, cpu_goal: bool = False,
               mib: float | None = None) -> str:
    """One proxy line in the one format: throughput ratio other/base, CPU ratio base/other, verdict."""
    (bname, b), (oname, o) = base, other
    ratio, cpu_ratio = o.rate / b.rate, b.cpu_ms / o.cpu_ms if o.cpu_ms else 0.0
    unit = "download" if mib else "request"
    if mib:
        rates = f"{bname} {b.rate * mib:,.0f} MiB/s, {oname} {o.rate * mib:,.0f} MiB/s"
    else:
        rates = f"{bname} {b.rate:,.0f} req/s, {oname} {o.rate:,.0f} req/s"
    head = f"{label}: ratio {ratio:.3f}"
    if goal is not None:
        head += f" (goal >= {goal}{', CPU per request too' if cpu_goal else ''})"
    line = (f"{head}: {rates}, median of {rounds} alternating runs of {seconds} s (wrk -c{connections}); "
            f"CPU per {unit} {bname} {b.cpu_ms:.3f} ms, {oname} {o.cpu_ms:.3f} ms, "
            f"ratio {bname}/{oname} {cpu_ratio:.3f}")
    if goal is None:
        return line
    return f"{line}: {verdict(ratio >= goal and (cpu_ratio >= goal or not cpu_goal))}"


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    seen = sorted(seconds)
    return 1000 * seen[len(seen) // 2], 1000 * seen[int(len(seen) * 0.99)]


def latencies(port: int, urls: list[str], status: int) -> tuple[float, float]:
    """(p50, p99) milliseconds of sequential navigations through a proxy on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seen = []
    for url in urls:
        start = time.perf_counter()
        conn.request("GET", url, headers=NAVIGATE)
        response = conn.getresponse()
        response.read()
        seen.append(time.perf_counter() - start)
        if response.status != status:
            raise SystemExit(f"{url} answered {response.status}")
    conn.close()
    return _percentiles(seen)


def sync_floor(workdir: Path, count: int = 1000) -> str:
    """What one audit record's two commits cost on this disk, apart from any Python: the floor of a click.

    The writer appends a line and fdatasyncs the file, and commits the row to SQLite in WAL
    mode with synchronous=FULL (the WAL synced), at the same time (audit/writer.py): a
    click waits for the slower of the two.
    """
    import os

    from clickguard.audit import store
    from clickguard.audit.writer import record

    line = b'{"ts":"2026-12-04T00:00:00.000Z","ref":"000000000000","event":"click"}\n' * 4
    fd = os.open(workdir / "floor.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    appends = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, line)
            os.fdatasync(fd)
            appends.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    connection = store.connect(workdir / "floor.sqlite")
    commits = []
    try:
        for n in range(count):
            row = store.row_of(record(ref=f"{n:012x}", event="click", client="127.0.0.1", user=None,
                                      url=f"http://a.example/{n}", action="allow", findings=[]))
            start = time.perf_counter()
            store.insert_rows(connection, [row])
            commits.append(time.perf_counter() - start)
    finally:
        store.close(connection)
    (a50, a99), (c50, c99) = _percentiles(appends), _percentiles(commits)
    return (f"the disk's floor, {count:,} one-record commits each: append + fdatasync p50 {a50:.2f} ms, "
            f"p99 {a99:.2f} ms; SQLite insert + commit (WAL, synchronous=FULL) p50 {c50:.2f} ms, "
            f"p99 {c99:.2f} ms")


def bench_clicks(cg: Contender, bare: Contender, certs: Path, target: str, rounds: int,
                 count: int = 2000) -> None:
    """Click -> redirect latency through clickguard against a plain request through bare mitmdump."""
    from clickguard.mail.links import ClickContext, make_click_link
    from clickguard.tokens import load_or_create_key

    key = load_or_create_key(certs / "clickguard.key")
    now = int(time.time())
    context = ClickContext("192.0.2.1", "00" * 8, None, "none", now)
    # Every round its own links and paths: no verdict or connection is reused from an earlier round.
    latencies(bare.port, [f"{target}?warm={i}" for i in range(200)], 200)
    latencies(cg.port, [make_click_link(f"{target}?warm={i}", context, key, click_host="clickguard.local")
                        for i in range(200)], 303)
    bare_runs, click_runs = [], []
    for r in range(rounds):
        ns = range(r * count, (r + 1) * count)
        links = [make_click_link(f"{target}?n={n}", context, key, click_host="clickguard.local") for n in ns]
        bare_runs.append(latencies(bare.port, [f"{target}?n={n}" for n in ns], 200))
        click_runs.append(latencies(cg.port, links, 303))
    b50, b99 = (statistics.median(run[i] for run in bare_runs) for i in (0, 1))
    c50, c99 = (statistics.median(run[i] for run in click_runs) for i in (0, 1))
    print(f"click -> redirect: p99 difference {c99 - b99:+.2f} ms (goal <= {CLICK_GOAL:.0f} ms): clicks p50 "
          f"{c50:.2f} ms, p99 {c99:.2f} ms (verified, judged with the mail's origin, audited to disk) "
          f"against "
          f"a plain request through bare mitmdump p50 {b50:.2f} ms, p99 {b99:.2f} ms; {count:,} sequential "
          f"requests on one keep-alive connection a round, median of {rounds} alternating rounds: "
          f"{verdict(c99 - b99 <= CLICK_GOAL)}; {sync_floor(certs.parent)}")


def memory_line(cg: Contender, bare: Contender, started: float, entries: str) -> str:
    """clickguard's resident memory against bare mitmdump's, after start-up and warm-up."""
    cg_rss, bare_rss = rss(cg.process.pid), rss(bare.process.pid)
    cg_peak, bare_peak = peak_rss(cg.process.pid), peak_rss(bare.process.pid)
    workers = descendants(cg.process.pid)
    extra = (f"; besides, its {len(workers)} child processes hold {sum(map(pss, workers)):,.0f} MiB (PSS)"
             if workers else "")
    return (f"resident memory with {entries} entries: difference {cg_rss - bare_rss:+,.0f} MiB VmRSS "
            f"(goal <= +{MEMORY_GOAL} MiB): clickguard {cg_rss:,.0f} MiB after warm-up ({started:,.0f} MiB "
            f"after start-up, peak VmHWM {cg_peak:,.0f} MiB), bare mitmdump {bare_rss:,.0f} MiB (peak "
            f"{bare_peak:,.0f} MiB), peak difference {cg_peak - bare_peak:+,.0f} MiB{extra}: "
            f"{verdict(cg_rss - bare_rss <= MEMORY_GOAL)}")


def bench_proxy(specs: list[str], entries: str, workdir: Path, rounds: int, seconds: int,
                only: set[str]) -> None:
    """Start bare mitmdump, clickguard (and clickguard on uvloop) and print the selected lines."""
    event_loop = has_option("run", "--event-loop")
    uvloop = "uvloop" in only and event_loop
    if "uvloop" in only and not event_loop:
        print("uvloop A/B: skipped (no --event-loop flag)")
    lines = [line for line in LINES if line.name in only]
    if "uvloop" in only and not uvloop and not lines and not only & {"memory", "clicks"}:
        return
    # Port 80 when it is free to take (root): a bare address on a high port is a device's hint.
    upstreams = {"plain": _upstream("127.0.0.2", 1024, port=_port_80()),
                 "webmail": _upstream("127.0.0.1", 0, "html"),
                 "pages": _upstream("127.0.0.2", 0, "html"),
                 "blobs": _upstream("127.0.0.2", DOWNLOAD_BYTES, "binary")}
    plain_port = upstreams["plain"][1]
    urls = {"plain": f"http://127.0.0.2{'' if plain_port == 80 else f':{plain_port}'}/",
            "webmail": f"http://localhost:{upstreams['webmail'][1]}/",  # click_links.rewrite_hosts
            "pages": f"http://127.0.0.2:{upstreams['pages'][1]}/",
            "blobs": f"http://127.0.0.2:{upstreams['blobs'][1]}/"}
    selftest = REPO / "policies" / "feeds" / "selftest.txt"
    (workdir / "policy.yaml").write_text(f"feeds:\n  - {{name: selftest, format: ip, path: {selftest}}}\n"
                                         "click_links: {rewrite_hosts: [localhost]}\n")
    bare = _mitmdump("bare", [str(BIN / "mitmdump")], workdir)
    # The addon's own cost: mitmdump run as clickguard runs mitmproxy (clickguard.proxy.engine).
    engine = _mitmdump("engine", [sys.executable, str(REPO / "bench" / "mitmdump_engine.py")], workdir)
    # The A/B names its loops; without the flag clickguard runs on the loop it always has.
    cg = _clickguard(workdir, "clickguard", specs, *(["--event-loop", "asyncio"] if uvloop else []))
    uv = _clickguard(workdir, "uvloop", specs, "--event-loop", "uvloop") if uvloop else None
    contenders = [bare, engine, cg, *([uv] if uv else [])]
    try:
        for process, port, host in upstreams.values():
            wait_port(port, process, host=host)
        for c in contenders:
            _wait(c, workdir)
        started = rss(cg.process.pid)
        log = (workdir / "clickguard" / "clickguard.log").read_text()
        logged = re.search(r"(\d+) reputation entries", log)
        entries = f"{int(logged.group(1)):,}" if logged else entries
        for c in contenders:  # warm-up: the first requests, the first connections upstream
            wrk(c.port, urls["plain"], 2, 8, workdir, SUBRESOURCE)
            wrk(c.port, urls["plain"], 2, 8, workdir, NAVIGATE)
        if "memory" in only:
            print(memory_line(cg, bare, started, entries), flush=True)
        todo = [*lines]
        if uv:  # the A/B alone when its lines were not asked for
            todo += [line for line in LINES if line.name in UVLOOP_LINES and line not in lines]
        for line in todo:
            download = line.path == "blobs"
            connections = 4 if download else 16
            with_uv = uv is not None and line.name in UVLOOP_LINES
            racing = [*([bare, engine] if line in lines else []), cg, *([uv] if with_uv and uv else [])]
            got = compare(urls[line.path], line.headers, racing, rounds, seconds, connections, workdir)
            mib = DOWNLOAD_BYTES / 2**20 if download else None
            if line in lines:
                print(ratio_line(line.label.format(entries=entries), line.goal, ("bare", got["bare"]),
                                 ("clickguard", got["clickguard"]), rounds, seconds, connections,
                                 cpu_goal=line.cpu_goal, mib=mib), flush=True)
                print(ratio_line("  the addon's own cost, against mitmdump run as clickguard runs it",
                                 None, ("engine", got["engine"]), ("clickguard", got["clickguard"]),
                                 rounds, seconds, connections, mib=mib), flush=True)
            if with_uv:
                print(ratio_line(f"uvloop A/B, {line.label.format(entries=entries)}", None,
                                 ("asyncio", got["clickguard"]), ("uvloop", got["uvloop"]), rounds, seconds,
                                 connections, mib=mib),
                      flush=True)
            if download:
                print(f"peak memory while downloading ({connections} at a time): bare mitmdump "
                      f"{peak_rss(bare.process.pid):,.0f} MiB, "
                      f"clickguard {peak_rss(cg.process.pid):,.0f} MiB "
                      f"(index included; buffering would add {DOWNLOAD_BYTES // 2**20} MiB a download)",
                      flush=True)
        if "clicks" in only:
            bench_clicks(cg, bare, workdir / "certs", urls["plain"], rounds)
    finally:
        for process in [*(c.process for c in reversed(contenders)), *(u[0] for u in upstreams.values())]:
            process.terminate()
            process.wait()
