"""Inspection against a server that fights back: cost per KiB, other users' latency, a bomb's memory.

Not a test: it prints figures (about three minutes). `python bench/hostile.py`, or
`bench/run.py` may call `main()`. Lines printed:

- inspection cost per KiB: an ordinary page (the 14 KB webmail page) and a hostile
  one (thousands of ``function hN(){location.href=uN}``), in-process, decoding included;
- what reading a streamed body's first 4 KiB costs the event loop (the one reading
  not handed to a worker, see clickguard/proxy/guard.py), for hostile heads;
- the cost of the header-only suspect check every non-navigation response gets;
- p50/p99 of other users' small requests: through bare mitmdump, and through
  clickguard without hostile pages and while two clients fetch hostile pages,
  held (read in the worker processes) and streamed (their head read on the loop);
  then the same with the readings in threads (`clickguard_inspect_processes=false`,
  the former way) for comparison; each busy figure with its ratio to quiet;
- the proxy's peak memory growth while judging a gzip decompression bomb.
"""

from __future__ import annotations

import gzip
import http.client
import http.server
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import BIN, free_port, peak_rss, wait_port
from bench.upstream import webmail_page
from clickguard.inspection.pool import workers_of

CAMERA = "Hikvision-Webs"
SMALL = 400  # small requests measured per phase


def hostile_page(functions: int) -> bytes:
    """A page of ordinary-looking script that readers which rescan per name are slow on."""
    script = "".join(f"function h{i}(){{location.href=u{i}}}\n" for i in range(functions))
    return b"<html><body><script>" + script.encode() + b"</script></body></html>"


def gzip_bomb(mib: int) -> bytes:
    """An ELF header then mib MiB of zeros, gzip-compressed (about 1 KiB per MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(b"\x7fELF\x01\x02\x01" + bytes(4089))]
    parts += [compressor.compress(bytes(1 << 20)) for _ in range(mib)]
    return b"".join([*parts, compressor.flush()])


def bench_cost() -> None:
    """Inspection cost per KiB (decode and inspect_response), in-process, and the suspect check's cost."""
    from clickguard.decision.judge import Judge
    from clickguard.inspection.fingerprints import FingerprintDB, traits_from
    from clickguard.inspection.response import inspect_body
    from clickguard.intel.index import ReputationIndex
    from clickguard.intel.learned import LearnedHosts
    from clickguard.policy.model import parse_policy
    from clickguard.urls import normalize_url

    judge = Judge(parse_policy("feeds: []", filename="p.yaml", base_dir=Path(tempfile.mkdtemp())),
                  ReputationIndex.build([]), learned=LearnedHosts())
    fingerprints = FingerprintDB.default()
    url = normalize_url("http://shop.example/page")
    headers = [("Server", "nginx"), ("Content-Type", "text/html; charset=utf-8"),
               ("Content-Encoding", "gzip")]

    def per_kib(body: bytes, repeat: int) -> float:
        raw = gzip.compress(body)
        start = time.perf_counter()
        for _ in range(repeat):
            inspect_body(judge, fingerprints, url=url, status=200, headers=headers, raw=raw,
                         max_body=1 << 20, thingbot=False)
        return (time.perf_counter() - start) / repeat / (len(body) / 1024) * 1000

    ordinary = webmail_page()
    print(f"inspection cost per KiB, ordinary page ({len(ordinary) // 1024} KiB, gzip): "
          f"{per_kib(ordinary, 50):.3f} ms")
    for functions in (250, 1000):
        page = hostile_page(functions)
        print(f"inspection cost per KiB, hostile page ({len(page) // 1024} KiB, {functions} functions): "
              f"{per_kib(page, 1):.3f} ms")
    bench_head_on_loop(fingerprints)
    response_headers = [("Server", "nginx/1.24.0"), ("Content-Type", "application/javascript"),
                        ("Cache-Control", "max-age=3600"), ("ETag", '"abc"'), ("Content-Length", "5120")]
    count = 20_000
    start = time.perf_counter()
    for _ in range(count):
        fingerprints.match(traits_from(response_headers, ""))
    print(f"suspect check of a non-navigation response (headers only, fingerprint match): "
          f"{(time.perf_counter() - start) / count * 1e6:.1f} us")


def hostile_heads() -> dict[str, bytes]:
    """4 KiB heads that cost the navigation reader the most per byte of those tried."""
    return {
        "functions": hostile_page(2000),
        "nested brackets": b"<script>" + b"(" * 4096,
        "call chain": b"<script>" + "".join(f"function f{i}(){{f{i - 1}()}}" for i in range(1, 400)).encode(),
        "self-doubling string": b"<script>var a='x';" + b"a=a+a;" * 700 + b"location=a",
        "meta refreshes": b"<meta http-equiv=refresh content='0;url=http://e.example/'>" * 80,
        "document.write": b"<script>" + b"document.write('<iframe src=http://e.example/>');" * 90,
    }


def bench_head_on_loop(fingerprints: object) -> None:
    """What reading a streamed body's first SNIFF_BYTES costs the event loop, worst of the hostile heads."""
    from clickguard.inspection.fingerprints import FingerprintDB
    from clickguard.inspection.payloads import SNIFF_BYTES
    from clickguard.inspection.response import head_budget, read_response
    from clickguard.urls import normalize_url

    assert isinstance(fingerprints, FingerprintDB)
    url = normalize_url("http://shop.example/page")
    headers = [("Server", "nginx"), ("Content-Type", "text/html")]
    costs = {}
    for name, page in hostile_heads().items():
        head = page[:SNIFF_BYTES]
        read_response(fingerprints, url=url, status=200, headers=headers, body=head)  # warm-up
        start = time.process_time()  # CPU time: steadier than wall time on a shared machine
        for _ in range(10):
            read_response(fingerprints, url=url, status=200, headers=headers, body=head,
                          steps=head_budget(len(head)))
        costs[name] = (time.process_time() - start) / 10 * 1000
    worst = max(costs, key=costs.__getitem__)
    median = statistics.median(costs.values())
    print(f"streamed body's head ({SNIFF_BYTES} bytes) read on the event loop: {costs[worst]:.1f} ms of CPU "
          f"at worst ({worst}; {len(costs)} hostile heads, median {median:.1f} ms)")


class _Pages(http.server.BaseHTTPRequestHandler):
    """Serves /small, /hostile and /bomb (a camera's)."""

    protocol_version = "HTTP/1.1"
    pages: ClassVar[dict[str, tuple[list[tuple[str, str]], bytes]]] = {}

    def do_GET(self) -> None:
        headers, body = self.pages.get(self.path, ([], b"not found"))
        self.send_response(200 if self.path in self.pages else 404)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def latencies(port: int, url: str, count: int) -> tuple[float, float]:
    """(p50, p99) milliseconds of sequential small navigations through a proxy."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    seen = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", url, headers={"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
        conn.getresponse().read()
        seen.append(time.perf_counter() - start)
    conn.close()
    seen.sort()
    return 1000 * statistics.median(seen), 1000 * seen[int(len(seen) * 0.99)]


def while_running(load: Callable[[threading.Event], None], workers: int,
                  measure: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """measure() while `workers` threads run load until told to stop."""
    stop = threading.Event()
    threads = [threading.Thread(target=load, args=(stop,), daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the hostile requests are in flight
    try:
        return measure()
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)


class Running(NamedTuple):
    """A proxy process, its port and its log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path


def start_clickguard(workdir: Path, policy: Path, name: str, *options: str) -> Running:
    """`clickguard run` on a free port, its state and log in workdir under name, with --set options."""
    port = free_port()
    state = workdir / name
    log_path = workdir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    args = [str(BIN / "clickguard"), "run", "--listen", f"127.0.0.1:{port}", "--policy", str(policy),
            "--certs", str(workdir / "certs"), "--audit-log", str(state / "audit.jsonl"),
            "--audit-store", str(state / "audit.sqlite"), "--state-dir", str(state / "var")]
    args += [arg for option in options for arg in ("--set", option)]
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, process)
    return Running(process, port, log_path)


def fetching(port: int, url: str) -> Callable[[threading.Event], None]:
    """A client fetching url through the proxy at port as a page, again and again until told to stop."""
    def load(stop: threading.Event) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while not stop.is_set():
            conn.request("GET", url, headers={"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
            conn.getresponse().read()
        conn.close()

    return load


def figures(label: str, seen: tuple[float, float], quiet: tuple[float, float] | None = None) -> str:
    """p50/p99 as printed, with the p99's ratio to the quiet one."""
    text = f"{label} {seen[0]:.1f}/{seen[1]:.1f} ms"
    return text + (f" (p99 x{seen[1] / quiet[1]:.1f})" if quiet else "")


def bench_latency(port: int, base: str) -> dict[str, tuple[float, float]]:
    """Small requests' p50/p99 through a proxy: quiet, during held hostile pages, during streamed ones."""
    small = f"{base}/small"

    def measure() -> tuple[float, float]:
        return latencies(port, small, SMALL)

    latencies(port, small, 50)  # warm-up (and the workers' start-up)
    return {"quiet": measure(),
            "held": while_running(fetching(port, f"{base}/hostile"), 2, measure),
            "streamed": while_running(fetching(port, f"{base}/hostile-streamed"), 2, measure)}


def bench_proxy(workdir: Path) -> None:
    """Other users' latency during hostile inspections (processes, threads); the memory a bomb costs."""
    hostile = hostile_page(2000)  # ~70 KiB: about a second of reading
    streamed = hostile + b" " * ((1 << 20) + 65536 - len(hostile))  # past max_body: streamed, its head read
    bomb = gzip_bomb(256)
    html = [("Server", "nginx"), ("Content-Type", "text/html")]
    _Pages.pages = {"/small": ([("Server", "nginx"), ("Content-Type", "text/plain")], b"ok\n" * 100),
                    "/hostile": (html, hostile),
                    "/hostile-streamed": (html, streamed),
                    "/bomb": ([("Server", CAMERA), ("Content-Type", "text/html"),
                               ("Content-Encoding", "gzip")], bomb)}
    server = http.server.ThreadingHTTPServer(("127.0.0.79", 0), _Pages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.79:{server.server_address[1]}"
    policy = workdir / "policy.yaml"
    policy.write_text("feeds: []\ninspect: {learn: false}\n")
    bare_port = free_port()
    bare = subprocess.Popen([str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "--listen-port",
                             str(bare_port), "--set", "flow_detail=0",
                             "--set", f"confdir={workdir / 'certs'}"],
                            stdout=subprocess.DEVNULL)
    running = [bare]
    held = f"{len(hostile) // 1024} KiB"
    try:
        wait_port(bare_port, bare)
        seen = bench_latency(bare_port, base)
        print(f"small requests, p50/p99, bare mitmdump: {figures('quiet', seen['quiet'])}; "
              f"{figures(f'relaying 2 clients\' {held} hostile pages', seen['held'])}; "
              f"{figures('relaying their 1 MiB ones', seen['streamed'])}")
        for mode in ("processes", "threads"):
            cg = start_clickguard(workdir, policy, f"clickguard-{mode}",
                                  f"clickguard_inspect_processes={str(mode == 'processes').lower()}")
            running.append(cg.process)
            if mode == "processes":
                bench_bomb(cg, base, bomb)
            seen = bench_latency(cg.port, base)
            quiet = seen["quiet"]
            busy = f"while 2 clients fetch hostile pages ({held}, held, read)"
            print(f"small requests, p50/p99, clickguard reading in {mode}: {figures('quiet', quiet)}; "
                  f"{figures(busy, seen['held'], quiet)}; "
                  f"{figures('1 MiB ones (streamed, head read on the loop)', seen['streamed'], quiet)}; "
                  f"peak memory {peak_rss(cg.process.pid):.0f} MiB")
            cg.process.terminate()
            cg.process.wait()
    finally:
        for process in running:
            process.terminate()
            process.wait()
        server.shutdown()


def bench_bomb(cg: Running, base: str, bomb: bytes) -> None:
    """The peak memory growth of the proxy and of its workers while a gzip bomb is judged (VmHWM)."""
    latencies(cg.port, f"{base}/small", 5)  # the workers up
    deadline = time.monotonic() + 60
    while cg.log.read_text(errors="replace").count("inspection worker") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the second worker loading (a bench: polling its log is fine here)
    workers = {pid: peak_rss(pid) for pid in workers_of(cg.process.pid)}
    before = peak_rss(cg.process.pid)
    conn = http.client.HTTPConnection("127.0.0.1", cg.port, timeout=120)
    conn.request("GET", f"{base}/bomb", headers={"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
    response = conn.getresponse()
    response.read()
    conn.close()
    proxy_grown = peak_rss(cg.process.pid) - before
    worker_grown = max((peak_rss(pid) - peak for pid, peak in workers.items()), default=float("nan"))
    print(f"decompression bomb ({len(bomb) // 1024} KiB gzip, 256 MiB decoded): answered "
          f"{response.status} {response.getheader('X-Clickguard-Action')}; peak memory grew "
          f"{proxy_grown:.1f} MiB in the proxy, {worker_grown:.1f} MiB in the worker that decoded it")


def main() -> None:
    """Print every figure."""
    bench_cost()
    with tempfile.TemporaryDirectory() as workdir:
        bench_proxy(Path(workdir))


if __name__ == "__main__":
    main()
