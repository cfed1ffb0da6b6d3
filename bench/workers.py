"""`clickguard run --workers 2` against `--workers 1`: plain requests/s, same wrk load, and Redis round trips.

Not a test: it prints two lines. Both proxies run side by side, each loaded in turn
(alternating, median of the rounds), as bench/run.py compares clickguard with bare mitmdump.
The two workers share their state through the private redis-server the supervisor starts;
its `INFO commandstats` is read before and after each loaded run of --workers 2, and every
call but INFO's counts as a round trip the load caused (the same is measured over an idle
spell of the same length, to tell background chatter from the request path).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import BIN, REPO, free_port, wait_port

CONNECTIONS = 16  # as bench/run.py's plain requests


def wrk(proxy_port: int, target: str, seconds: int, connections: int, workdir: Path) -> tuple[float, int]:
    """(requests/s, requests) through a proxy for an absolute-form GET of target."""
    script = workdir / "plain.lua"
    script.write_text(f'wrk.path = "{target}"\nwrk.headers["Host"] = "{target.split("/")[2]}"\n')
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
                          f"http://127.0.0.1:{proxy_port}/"],
                         capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rate or not total or "Non-2xx" in out:
        raise SystemExit(f"wrk failed:\n{out}")
    return float(rate.group(1)), int(total.group(1))


def redis_calls(socket_path: Path) -> tuple[int, int]:
    """Commands the redis-server at socket_path has run so far: (all but INFO and PING, PING).

    PING is the idle health check each process sends once a second without a write
    (clickguard.cluster.IDLE_PING), whatever the load: counted apart from the request path.
    """
    out = subprocess.run(["redis-cli", "-s", str(socket_path), "INFO", "commandstats"],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    calls = {name: int(n) for name, n in re.findall(r"^cmdstat_([^:]+):calls=(\d+)", out, re.MULTILINE)}
    return sum(n for name, n in calls.items() if name not in ("info", "ping")), calls.get("ping", 0)


def wait_ready(ops_port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Poll the supervisor's /readyz until every worker is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"clickguard exited early: {process.args!r}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the workers were not ready after {timeout}s")


def clickguard(workdir: Path, name: str, workers: int, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """`clickguard run --workers N` in a directory of its own under workdir, its output in a log there."""
    home = workdir / name
    home.mkdir()
    log = open(home / "clickguard.log", "wb")  # noqa: SIM115 (the process keeps it)
    return subprocess.Popen(
        [str(BIN / "clickguard"), "run", "--workers", str(workers), "--listen", f"127.0.0.1:{port}",
         "--policy", str(workdir / "policy.yaml"), "--certs", str(workdir / "certs"),
         "--audit-log", str(home / "audit.jsonl"), "--audit-store", str(home / "audit.sqlite"),
         "--state-dir", str(home / "var"), *extra], stdout=log, stderr=subprocess.STDOUT)


def bench_workers(workdir: Path, rounds: int, seconds: int) -> None:
    """--workers 1 vs --workers 2, same upstream, same load, alternating."""
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(REPO / "bench" / "upstream.py"), "127.0.0.2",
                                 str(up_port), "1024"])
    selftest = REPO / "policies" / "feeds" / "selftest.txt"
    (workdir / "policy.yaml").write_text(f"feeds:\n  - {{name: selftest, format: ip, path: {selftest}}}\n")
    one_port, two_port, ops_port = free_port(), free_port(), free_port()
    one = clickguard(workdir, "one", 1, one_port)
    two = clickguard(workdir, "two", 2, two_port, "--ops", f"127.0.0.1:{ops_port}")
    redis = workdir / "two" / "var" / "workers" / "redis.sock"
    try:
        wait_port(up_port, upstream, host="127.0.0.2")
        wait_port(one_port, one)
        wait_ready(ops_port, two)
        target = f"http://127.0.0.2:{up_port}/"
        for port in (one_port, two_port):  # warm-up
            wrk(port, target, 2, CONNECTIONS // 2, workdir)
        one_runs, two_runs = [], []
        commands = pings = requests = 0
        for _ in range(rounds):
            one_runs.append(wrk(one_port, target, seconds, CONNECTIONS, workdir)[0])
            before = redis_calls(redis)
            rate, total = wrk(two_port, target, seconds, CONNECTIONS, workdir)
            after = redis_calls(redis)
            commands += after[0] - before[0]
            pings += after[1] - before[1]
            requests += total
            two_runs.append(rate)
        before = redis_calls(redis)
        time.sleep(seconds)
        after = redis_calls(redis)
        idle, idle_pings = after[0] - before[0], after[1] - before[1]
        one_rate, two_rate = statistics.median(one_runs), statistics.median(two_runs)
        ratio = two_rate / one_rate
        per_request = commands / max(requests, 1)
        print(f"workers: 2 vs 1, plain requests: ratio {ratio:.2f} (goal >= 1.5 on 2 cores): --workers 1 "
              f"{one_rate:,.0f} req/s, --workers 2 {two_rate:,.0f} req/s, median of {rounds} alternating "
              f"runs of {seconds} s (wrk -c{CONNECTIONS}): {'MET' if ratio >= 1.5 else 'NOT MET'}")
        print(f"redis round trips per plain request: {per_request:.3f} (goal 0): {commands} commands over "
              f"{requests:,} requests; besides {pings} health PINGs, one a second per worker whatever the "
              f"load; idle for {seconds} s: {idle} commands and {idle_pings} PINGs: "
              f"{'MET' if commands == 0 else 'NOT MET'}")
    finally:
        for process in (two, one, upstream):
            process.terminate()
            process.wait()


def main() -> None:
    """Run the comparison and print its lines."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clickguard-bench-workers-") as tmp:
        bench_workers(Path(tmp), args.rounds, args.seconds)


if __name__ == "__main__":
    main()
