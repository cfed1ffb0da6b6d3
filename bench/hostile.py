"""Inspection against a server that fights back: cost per KiB, other users' latency, a bomb's memory.

Not a test: it prints figures (about two minutes). `python bench/hostile.py`, or
`bench/run.py` may call `main()`. Lines printed:

- inspection cost per KiB: an ordinary page (the 14 KB webmail page) and a hostile
  one (thousands of ``function hN(){location.href=uN}``), in-process, decoding included;
- the cost of the header-only suspect check every non-navigation response gets;
- p50/p99 of other users' small requests through clickguard, without and while
  hostile pages are being inspected (bare mitmdump's for scale);
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
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import BIN, free_port, peak_rss, wait_port
from bench.upstream import webmail_page

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
    from clickguard.intel.index import ReputationIndex
    from clickguard.intel.learned import LearnedHosts
    from clickguard.policy.model import parse_policy
    from clickguard.proxy.guard import inspect_body
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
    response_headers = [("Server", "nginx/1.24.0"), ("Content-Type", "application/javascript"),
                        ("Cache-Control", "max-age=3600"), ("ETag", '"abc"'), ("Content-Length", "5120")]
    count = 20_000
    start = time.perf_counter()
    for _ in range(count):
        fingerprints.match(traits_from(response_headers, ""))
    print(f"suspect check of a non-navigation response (headers only, fingerprint match): "
          f"{(time.perf_counter() - start) / count * 1e6:.1f} us")


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


def bench_proxy(workdir: Path) -> None:
    """Other users' latency during hostile inspections, and the memory a bomb costs."""
    hostile = hostile_page(2000)  # ~70 KiB; today's reader needs seconds on it
    bomb = gzip_bomb(256)
    html = [("Server", "nginx"), ("Content-Type", "text/html")]
    _Pages.pages = {"/small": ([("Server", "nginx"), ("Content-Type", "text/plain")], b"ok\n" * 100),
                    "/hostile": (html, hostile),
                    "/bomb": ([("Server", CAMERA), ("Content-Type", "text/html"),
                               ("Content-Encoding", "gzip")], bomb)}
    server = http.server.ThreadingHTTPServer(("127.0.0.79", 0), _Pages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.79:{server.server_address[1]}"
    policy = workdir / "policy.yaml"
    policy.write_text("feeds: []\ninspect: {learn: false}\n")
    bare_port, cg_port = free_port(), free_port()
    bare = subprocess.Popen([str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "--listen-port",
                             str(bare_port), "--set", "flow_detail=0",
                             "--set", f"confdir={workdir / 'certs'}"],
                            stdout=subprocess.DEVNULL)
    log = open(workdir / "clickguard.log", "wb")  # noqa: SIM115
    cg = subprocess.Popen([str(BIN / "clickguard"), "run", "--listen", f"127.0.0.1:{cg_port}", "--policy",
                           str(policy), "--certs", str(workdir / "certs"), "--audit-log",
                           str(workdir / "audit.jsonl"), "--audit-store", str(workdir / "audit.sqlite"),
                           "--state-dir", str(workdir / "var")], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(bare_port, bare)
        wait_port(cg_port, cg)

        # The bomb first: the peak memory (VmHWM) would hide its growth after the heavier phase.
        before = peak_rss(cg.pid)
        conn = http.client.HTTPConnection("127.0.0.1", cg_port, timeout=120)
        conn.request("GET", f"{base}/bomb", headers={"Sec-Fetch-Mode": "navigate",
                                                     "Sec-Fetch-Dest": "document"})
        response = conn.getresponse()
        response.read()
        conn.close()
        print(f"decompression bomb ({len(bomb) // 1024} KiB gzip, 256 MiB decoded): answered "
              f"{response.status} {response.getheader('X-Clickguard-Action')}, the proxy's peak memory grew "
              f"{peak_rss(cg.pid) - before:.1f} MiB (peak {peak_rss(cg.pid):.0f} MiB)")

        def hostile_load(stop: threading.Event) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", cg_port, timeout=120)
            while not stop.is_set():
                conn.request("GET", f"{base}/hostile", headers={"Sec-Fetch-Mode": "navigate",
                                                                "Sec-Fetch-Dest": "document"})
                conn.getresponse().read()
            conn.close()

        small = f"{base}/small"
        latencies(cg_port, small, 50)  # warm-up
        quiet = latencies(cg_port, small, SMALL)
        bare_quiet = latencies(bare_port, small, SMALL)
        busy = while_running(hostile_load, 2, lambda: latencies(cg_port, small, SMALL))
        print(f"small requests, p50/p99: bare mitmdump {bare_quiet[0]:.1f}/{bare_quiet[1]:.1f} ms; "
              f"clickguard {quiet[0]:.1f}/{quiet[1]:.1f} ms without hostile pages, "
              f"{busy[0]:.1f}/{busy[1]:.1f} ms while 2 clients fetch hostile pages "
              f"({len(hostile) // 1024} KiB each, inspected in the worker pool with a deadline); "
              f"peak memory {peak_rss(cg.pid):.0f} MiB")
    finally:
        for process in (cg, bare):
            process.terminate()
            process.wait()
        server.shutdown()


def main() -> None:
    """Print every figure."""
    bench_cost()
    with tempfile.TemporaryDirectory() as workdir:
        bench_proxy(Path(workdir))


if __name__ == "__main__":
    main()
