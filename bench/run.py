"""`make bench`: clickguard against bare mitmdump in the same run, feed load, check throughput.

Not a test: it prints figures. Absolute numbers on a shared 2-core machine mean
little; the ratios against bare mitmdump, measured alternately in the same run,
are what to compare.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FEEDS = Path(os.environ.get("CLICKGUARD_SHARED_DATA", REPO.parent / "shared" / "data")) / "feeds"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

REAL_FEEDS = [
    "ipsum:ipsum/ipsum.txt",
    "urlhaus_csv:urlhaus/urlhaus_csv_online_2026-01-27.csv",
    "urlhaus_csv:urlhaus/urlhaus_csv_online_2025-04-21.csv",
    "spamhaus_drop:spamhaus_drop/drop_v4.json",
    "maltrail:maltrail_iot/elf_mirai.txt",
    "maltrail:maltrail_iot/elf_gafgyt.txt",
    "ip:criticalpath_feeds/abuse-ch-ipblocklist.txt",
    "ip:criticalpath_feeds/threatfox.txt",
    "ip:criticalpath_feeds/compromised-ips.txt",
    "ip:criticalpath_feeds/binarydefense.txt",
    "urls:openphish/openphish_feed.txt",
]


DOWNLOAD_BYTES = 32 * 2**20  # a large download: far beyond inspect.max_body


def feed_specs(workdir: Path, synthetic: int) -> list[str]:
    """Real feeds plus a synthetic IP feed of `synthetic` addresses outside 127/8."""
    path = workdir / "synthetic_ips.txt"
    rng = random.Random(1234)
    with open(path, "w") as f:
        for _ in range(synthetic):
            n = rng.randrange(0x0B000000, 0xDF000000)  # 11.0.0.0 .. 222.255.255.255, skips 127/8
            f.write(f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}\n")
    real = [f"{s.split(':', 1)[0]}:{FEEDS / s.split(':', 1)[1]}" for s in REAL_FEEDS]
    return [*real, f"ip:{path}"]


def bench_load(specs: list[str]) -> tuple[int, float, float]:
    """(entries, seconds to parse and index, MB the index keeps) for these feeds."""
    from clickguard.cli import load_judge

    gc.collect()
    start = time.perf_counter()
    judge, _feeds = load_judge(REPO / "policies" / "default.yaml", specs, Path(tempfile.mkdtemp()))
    seconds = time.perf_counter() - start
    entries = len(judge.index)
    del judge, _feeds
    gc.collect()
    tracemalloc.start()
    _judge, _feeds = load_judge(REPO / "policies" / "default.yaml", specs, Path(tempfile.mkdtemp()))
    del _feeds
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    return entries, seconds, kept


def bench_check(specs: list[str], count: int) -> tuple[int, float]:
    """(URLs, URLs per second) through the same code path as `clickguard check -`, start-up excluded."""
    from clickguard.cli import format_result, judge_url, load_judge

    judge, _ = load_judge(REPO / "policies" / "default.yaml", specs, Path(tempfile.mkdtemp()))
    real = [line.split('","')[2] for line in
            (FEEDS / "urlhaus/urlhaus_csv_online_2026-01-27.csv").read_text().splitlines()
            if line.startswith('"')]
    real += (FEEDS / "openphish/openphish_feed.txt").read_text().split()
    rng = random.Random(7)
    urls: list[str] = []
    while len(urls) < count:
        r = rng.random()
        if r < 0.3:
            urls.append(rng.choice(real))
        elif r < 0.6:
            urls.append(f"https://www.site{rng.randrange(100000)}.example.com/a/b?q={rng.random()}")
        elif r < 0.8:
            urls.append(f"http://{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}."
                        f"{rng.randrange(256)}:{rng.randrange(1024, 65535)}/i")
        else:
            urls.append(f"https://news.example.co.uk/story/{rng.randrange(10**6)}.html")
    sink = open(os.devnull, "w")  # noqa: SIM115
    start = time.perf_counter()
    for raw in urls:
        sink.write(format_result(judge_url(judge, raw), True))
    seconds = time.perf_counter() - start
    sink.close()
    return len(urls), len(urls) / seconds


def bench_rewrite(count: int = 2000) -> None:
    """Messages/s of rewrite_message on typical HTML mail (12 KB, 20 distinct links each)."""
    from email.message import EmailMessage

    from clickguard.mail.rewrite import RewriteSettings, rewrite_message

    settings = RewriteSettings("clickguard.local", b"k" * 32)
    messages = []
    for n in range(count):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "news@shop.example", "alice@corp.example", "Offers"
        msg["Message-ID"] = f"<{n}@shop.example>"
        links = "".join(f'<p>Item {i}: <a href="https://shop.example/p/{n}/{i}?ref=mail">see it</a> '
                        + "lorem ipsum dolor sit amet " * 18 + "</p>\n" for i in range(20))
        msg.set_content("Plain version: https://shop.example/\n" + "text " * 200)
        msg.add_alternative(f"<html><body>{links}</body></html>", subtype="html", cte="quoted-printable")
        messages.append(msg.as_bytes())
    start = time.perf_counter()
    links_done = sum(rewrite_message(raw, settings, origin_ip="192.0.2.1").links for raw in messages)
    seconds = time.perf_counter() - start
    size = sum(map(len, messages)) // count
    print(f"clickguard rewrite: {count:,} messages ({size / 1000:.0f} KB, {links_done // count} links each) "
          f"at {count / seconds:,.0f} messages/s on one core (goal >= 2,000)")


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 120,
              host: str = "127.0.0.1") -> None:
    """Poll until a process listens on a loopback port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited early: {process.args!r}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


def peak_rss(pid: int) -> float:
    """The most memory (MiB) a process has held so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(proxy_port: int, target: str, seconds: int, connections: int, workdir: Path,
        headers: dict[str, str], pid: int | None = None) -> tuple[float, float]:
    """(requests/s, proxy CPU ms per request) through a proxy for an absolute-form request to target."""
    script = workdir / "proxy.lua"
    host = target.split("/")[2]
    lines = [f'wrk.path = "{target}"', f'wrk.headers["Host"] = "{host}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{proxy_port}/"], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not match or not total or "Non-2xx" in out:
        raise SystemExit(f"wrk failed:\n{out}")
    return float(match.group(1)), 1000 * cpu / max(int(total.group(1)), 1)


def bench_proxy(specs: list[str], workdir: Path, rounds: int, seconds: int) -> None:
    """Bare mitmdump vs clickguard, same upstream, same load, alternating."""
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(REPO / "bench" / "upstream.py"), "127.0.0.2",
                                 str(up_port), "1024"])
    mail_port = free_port()
    webmail = subprocess.Popen([sys.executable, str(REPO / "bench" / "upstream.py"), "127.0.0.1",
                                str(mail_port), "0", "html"])
    page_port, blob_port = free_port(), free_port()
    pages = subprocess.Popen([sys.executable, str(REPO / "bench" / "upstream.py"), "127.0.0.2",
                              str(page_port), "0", "html"])
    blobs = subprocess.Popen([sys.executable, str(REPO / "bench" / "upstream.py"), "127.0.0.2",
                              str(blob_port), str(DOWNLOAD_BYTES), "binary"])
    policy = workdir / "policy.yaml"
    selftest = REPO / "policies" / "feeds" / "selftest.txt"
    policy.write_text(f"feeds:\n  - {{name: selftest, format: ip, path: {selftest}}}\n"
                      "click_links: {rewrite_hosts: [localhost]}\n")
    bare_port, cg_port = free_port(), free_port()
    common = ["--set", "flow_detail=0", "--set", "connection_strategy=lazy",
              "--set", f"confdir={workdir / 'certs'}"]
    bare = subprocess.Popen([str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "--listen-port",
                             str(bare_port), *common], stdout=subprocess.DEVNULL)
    cg_args = [str(BIN / "clickguard"), "run", "--listen", f"127.0.0.1:{cg_port}",
               "--policy", str(policy), "--certs", str(workdir / "certs"),
               "--audit-log", str(workdir / "audit.jsonl"), "--audit-store", str(workdir / "audit.sqlite"),
               "--state-dir", str(workdir / "var")]
    for spec in specs:
        cg_args += ["--feed", spec]
    cg_log = open(workdir / "clickguard.log", "wb")  # noqa: SIM115
    cg = subprocess.Popen(cg_args, stdout=cg_log, stderr=subprocess.STDOUT)
    try:
        wait_port(up_port, upstream, host="127.0.0.2")
        wait_port(mail_port, webmail)
        wait_port(page_port, pages, host="127.0.0.2")
        wait_port(blob_port, blobs, host="127.0.0.2")
        wait_port(bare_port, bare)
        try:
            wait_port(cg_port, cg)
        except SystemExit:
            print((workdir / "clickguard.log").read_text()[-3000:])
            raise
        target = f"http://127.0.0.2:{up_port}/"
        page = f"http://localhost:{mail_port}/"
        navigate = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        for label, url, headers in (
                ("plain requests", target, {}),
                ("navigations (audited)", target, navigate),
                ("HTML page, 14 KB, inspected (fingerprint, redirects, payload)",
                 f"http://127.0.0.2:{page_port}/", navigate),
                (f"binary download, {DOWNLOAD_BYTES // 2**20} MiB, streamed and sniffed",
                 f"http://127.0.0.2:{blob_port}/", navigate),
                ("webmail page, 14 KB, 200 links rewritten", page, {})):
            download = "download" in label
            connections = 4 if download else 16
            wrk(bare_port, url, 2, connections // 2, workdir, headers)  # warm-up
            wrk(cg_port, url, 2, connections // 2, workdir, headers)
            bare_runs, cg_runs = [], []
            for _ in range(rounds):
                bare_runs.append(wrk(bare_port, url, seconds, connections, workdir, headers, bare.pid))
                cg_runs.append(wrk(cg_port, url, seconds, connections, workdir, headers, cg.pid))
            b = statistics.median(r for r, _ in bare_runs)
            c = statistics.median(r for r, _ in cg_runs)
            bc = statistics.median(m for _, m in bare_runs)
            cc = statistics.median(m for _, m in cg_runs)
            goal = "0.85" if "webmail" in label else "0.95"
            mib = DOWNLOAD_BYTES / 2**20
            rate = (f"{b * mib:,.0f} MiB/s, clickguard {c * mib:,.0f} MiB/s" if download
                    else f"{b:,.0f} req/s, clickguard {c:,.0f} req/s")
            print(f"proxy throughput, {label}: bare mitmdump {rate} "
                  f"(median of {rounds}x{seconds}s, alternating), ratio {c / b:.3f} (goal >= {goal}); "
                  f"proxy CPU per request {bc:.2f} ms vs {cc:.2f} ms, ratio {bc / cc:.3f}")
            if download:
                print(f"peak memory while downloading ({connections} at a time): bare mitmdump "
                      f"{peak_rss(bare.pid):,.0f} MiB, clickguard {peak_rss(cg.pid):,.0f} MiB "
                      f"(index included; buffering would add {DOWNLOAD_BYTES // 2**20} MiB a download)")
        bench_clicks(cg_port, bare_port, workdir / "certs", target)
    finally:
        for p in (cg, bare, upstream, webmail, pages, blobs):
            p.terminate()
            p.wait()


def latencies(port: int, urls: list[str], status: int) -> tuple[float, float]:
    """(p50, p99) seconds of sequential GETs through a proxy on one keep-alive connection."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seen = []
    for url in urls:
        start = time.perf_counter()
        conn.request("GET", url, headers={"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
        response = conn.getresponse()
        response.read()
        seen.append(time.perf_counter() - start)
        if response.status != status:
            raise SystemExit(f"{url} answered {response.status}")
    conn.close()
    seen.sort()
    return seen[len(seen) // 2], seen[int(len(seen) * 0.99)]


def bench_clicks(port: int, bare_port: int, certs: Path, target: str, count: int = 2000) -> None:
    """Click -> redirect latency through clickguard; a plain request through bare mitmdump for scale."""
    from clickguard.mail.links import ClickContext, make_click_link
    from clickguard.tokens import load_or_create_key

    key = load_or_create_key(certs / "clickguard.key")
    now = int(time.time())
    links = [make_click_link(f"{target}?n={i}", ClickContext("192.0.2.1", "00" * 8, None, "none", now),
                             key, click_host="clickguard.local") for i in range(count)]
    b50, b99 = latencies(bare_port, [f"{target}?n={i}" for i in range(count)], 200)
    p50, p99 = latencies(port, links, 303)
    print(f"click -> redirect: {count:,} clicks, p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms "
          f"(verified, judged with the mail's origin, audited to disk; goal p99 <= 5 ms); for scale, "
          f"a plain request through bare mitmdump: p50 {b50 * 1000:.2f} ms, p99 {b99 * 1000:.2f} ms")


def bench_report(workdir: Path, records: int = 1_000_000) -> None:
    """build_report + report_html over a store of a synthetic campaign's audit records (loading not timed)."""
    import itertools

    from bench.campaign import Campaign
    from clickguard.audit import report, store

    # Its own directory, removed afterwards: the proxy benchmark keeps its audit store in workdir.
    path = workdir / "report" / "audit.sqlite"
    writer = store.connect(path)
    # A throwaway store: no fsync per batch here (the proxy's writer keeps synchronous=FULL).
    writer.execute("PRAGMA synchronous=OFF")
    campaign = Campaign(users=5000, days=30, seed=7)
    start = time.perf_counter()
    for batch in itertools.batched(campaign.records(records=records), 100_000):
        store.insert(writer, batch)
    loaded = time.perf_counter() - start
    writer.close()
    reader = store.connect(path, readonly=True)
    start = time.perf_counter()
    built = report.build_report(reader)
    report.report_html(built)
    seconds = time.perf_counter() - start
    reader.close()
    shutil.rmtree(path.parent)
    share = built.thingbot_share
    print(f"report store: {records:,} audit records of a 30-day campaign generated and loaded with "
          f"store.insert (100,000 a batch) in {loaded:.0f} s; the report finds {share.clicks:,} clicks, "
          f"{share.percent or 0:.1f}% from Thingbots ({campaign.figures['thingbot_share']:.1f}% generated)")
    print(f"report: {records:,} audit records, built and rendered in {seconds:.2f} s (goal < 10 s)")


def main() -> None:
    """Run every benchmark and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic", type=int, default=800_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--check-urls", type=int, default=200_000)
    parser.add_argument("--skip-proxy", action="store_true")
    parser.add_argument("--report-records", type=int, default=1_000_000, help="0 skips the report benchmark")
    args = parser.parse_args()
    if not FEEDS.is_dir():
        raise SystemExit(f"feed snapshots not found at {FEEDS}")
    if not args.skip_proxy and not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="clickguard-bench-") as tmp:
        workdir = Path(tmp)
        specs = feed_specs(workdir, args.synthetic)
        entries, seconds, megabytes = bench_load(specs)
        print(f"feed load: {entries:,} reputation entries parsed and indexed in {seconds:.2f} s "
              f"(goal <= 2 s per 1,000,000), index keeps {megabytes:.0f} MB (goal <= 100 MB)")
        n, rate = bench_check(specs, args.check_urls)
        print(f"clickguard check -: {n:,} URLs at {rate:,.0f} URLs/s, start-up excluded "
              f"(goal >= 60,000)")
        bench_rewrite()
        if args.report_records:
            bench_report(workdir, args.report_records)
        if not args.skip_proxy:
            bench_proxy(specs, workdir, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
