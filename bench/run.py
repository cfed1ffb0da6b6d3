"""`make bench`: every goal of issue 14 on one line, the proxy's as a ratio to bare mitmdump.

Not a test: it prints figures. Absolute numbers on a shared 2-core machine mean
little; the ratios against bare mitmdump, measured alternately in the same run
(median of at least three rounds), are what to compare. Each goal line ends in MET
or NOT MET. `--only NAME[,NAME]` runs some lines:

  load      feed load time (in-process, as `clickguard run` loads them) and the memory it adds
  check     `clickguard check -` through the CLI, the same feeds (bench/cli_lines.py)
  rewrite   `clickguard rewrite` through the CLI: a directory of .eml files, an mbox
  report    build + render over 1,000,000 audit records loaded with store.insert
  memory    resident memory of clickguard with the feeds against bare mitmdump
  plain, undeclared, navigations, pages, download, webmail
            proxy throughput and CPU per request against bare mitmdump (bench/proxy_lines.py):
            plain is a page's parts (Sec-Fetch-Dest: empty) from an ordinary server, undeclared
            the same requests without fetch metadata (their bodies read as a page's)
  clicks    click -> redirect p50/p99 against a plain request through bare mitmdump, and the
            disk's floor: one-record append + fdatasync and SQLite commit p50/p99
  uvloop    `clickguard run --event-loop uvloop` against asyncio, plain and navigations
"""

from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Re-exported: bench/hostile.py, soak.py, workers.py and squid_helper.py take them from here.
from bench.measure import (
    BIN,
    FEEDS,
    REPO,
    cpu_seconds,
    feed_specs,
    free_port,
    peak_rss,
    verdict,
    wait_port,
)

__all__ = ["BIN", "FEEDS", "REPO", "cpu_seconds", "feed_specs", "free_port", "main", "peak_rss", "wait_port"]

LOAD_GOAL = 2.0  # seconds per 1,000,000 entries
INDEX_GOAL = 100  # MB
REPORT_GOAL = 1.0  # seconds
CLI_NAMES = {"load", "check", "rewrite", "report"}


# Run in a process of its own: the resident memory one load adds, the feed set kept as the proxy keeps it.
_RSS_OF_A_LOAD = """
import sys, tempfile
from pathlib import Path
from clickguard.cli import load_judge

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

import clickguard.intel.index, clickguard.decision.build  # noqa: the code itself is not the index
before = rss()
judge, feeds = load_judge(Path(sys.argv[1]), sys.argv[2:], Path(tempfile.mkdtemp()))
print(rss() - before)
"""


def bench_load(specs: list[str]) -> tuple[int, float, float]:
    """(entries, seconds to parse and index, MiB of resident memory the loaded index adds) for these feeds."""
    from clickguard.cli import load_judge

    gc.collect()
    start = time.perf_counter()
    judge, _feeds = load_judge(REPO / "policies" / "default.yaml", specs, Path(tempfile.mkdtemp()))
    seconds = time.perf_counter() - start
    entries = len(judge.index)
    del judge, _feeds
    child = subprocess.run([sys.executable, "-c", _RSS_OF_A_LOAD, str(REPO / "policies" / "default.yaml"),
                            *specs], capture_output=True, text=True, check=True, cwd=REPO)
    return entries, seconds, float(child.stdout.split()[-1])


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
    print(f"report: built and rendered in {seconds:.2f} s (goal <= {REPORT_GOAL:.0f} s): "
          f"{records:,} audit records, "
          f"build_report + report_html on the store: {verdict(seconds <= REPORT_GOAL)}")


def main() -> None:
    """Run the benchmarks asked for and print one line per figure."""
    from bench.cli_lines import bench_check, bench_rewrite
    from bench.proxy_lines import NAMES, bench_proxy

    names = CLI_NAMES | NAMES
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run these lines only (names above)")
    parser.add_argument("--synthetic", type=int, default=800_000,
                        help="synthetic IP entries besides the real feeds")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating runs a figure is the median of (>= 3)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--check-urls", type=int, default=500_000)
    parser.add_argument("--rewrite-messages", type=int, default=5_000)
    parser.add_argument("--skip-proxy", action="store_true", help="leave out every line that runs a proxy")
    parser.add_argument("--report-records", type=int, default=1_000_000, help="0 skips the report benchmark")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else set(names)
    if unknown := only - names:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))} (names: {', '.join(sorted(names))})")
    if args.rounds < 3:
        parser.error("--rounds: at least 3 (a median of fewer says little on a shared machine)")
    if args.skip_proxy:
        only &= CLI_NAMES
    if not args.report_records:
        only.discard("report")
    if not FEEDS.is_dir():
        raise SystemExit(f"feed snapshots not found at {FEEDS}")
    if only & NAMES and not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="clickguard-bench-") as tmp:
        workdir = Path(tmp)
        specs = feed_specs(workdir, args.synthetic)
        entries = "~1M"
        if "load" in only:
            count, seconds, megabytes = bench_load(specs)
            entries = f"{count:,}"
            per_million = seconds / (count / 1e6)
            print(f"feed load: {per_million:.2f} s per 1,000,000 entries (goal <= {LOAD_GOAL:.0f} s): "
                  f"{count:,} reputation entries parsed and indexed in {seconds:.2f} s, in-process as "
                  f"`clickguard run` loads them: {verdict(per_million <= LOAD_GOAL)}", flush=True)
            print(f"index size: {megabytes:.0f} MiB resident (goal <= {INDEX_GOAL} MiB): {count:,} entries, "
                  f"VmRSS a process gains loading them, the feeds' last good texts included: "
                  f"{verdict(megabytes <= INDEX_GOAL)}", flush=True)
        if "check" in only:
            bench_check(specs, workdir, args.check_urls, args.rounds, entries)
        if "rewrite" in only:
            bench_rewrite(workdir, args.rewrite_messages, args.rounds)
        if "report" in only:
            bench_report(workdir, args.report_records)
        if only & NAMES:
            bench_proxy(specs, entries, workdir, args.rounds, args.seconds, only)


if __name__ == "__main__":
    main()
