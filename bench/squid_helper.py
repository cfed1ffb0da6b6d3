"""Squid alone against Squid asking `clickguard squid-helper` (1,000,000 entries loaded), same wrk load.

Not a test: it prints one figure. Both Squids run side by side, loaded in turn (median of
the rounds), as bench/run.py compares clickguard with bare mitmdump. Every request has a
path of its own, so Squid's external ACL cache never answers for the helper; both Squids
answer 403 themselves (`http_access deny all` after the helper's ERR), so no upstream
server limits either.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import feed_specs
from tests.harness import REPO, running_squid_with

CLICKGUARD = REPO / ".venv" / "bin" / "clickguard"
GOAL = 0.9
ALONE = "http_access deny all\n"
WITH_HELPER = """\
external_acl_type clickguard ttl=60 negative_ttl=60 children-max=1 children-startup=1 concurrency=100 \
%URI {clickguard} squid-helper --policy {{work}}/policy.yaml --state-dir {{work}}/var {feeds}
acl thingbot external clickguard
http_access deny thingbot
http_access deny all
"""
LUA = """\
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "http://127.0.0.69/page/" .. counter)
end
"""


def wrk(url: str, seconds: int, connections: int, script: Path) -> float:
    """Requests/s wrk gets from the proxy at url (each a different path, all answered 403 by Squid)."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"wrk failed:\n{out}")
    return float(match.group(1))


def main() -> None:
    """Print Squid + helper's requests/s against Squid alone's, both running, loaded alternately."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic", type=int, default=800_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clickguard-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # Squid's helper runs as Squid's user
        specs = feed_specs(workdir, args.synthetic)
        (workdir / "synthetic_ips.txt").chmod(0o644)
        script = workdir / "paths.lua"
        script.write_text(LUA)

        def setup(work: Path) -> None:
            (work / "policy.yaml").write_text("version: 1\nfeeds: []\n")

        feeds = " ".join(f"--feed {spec}" for spec in specs)
        urls = {}
        helper_rule = WITH_HELPER.format(clickguard=CLICKGUARD, feeds=feeds)
        for name, rule in (("alone", ALONE), ("helper", helper_rule)):
            (workdir / name).mkdir()
            urls[name] = stack.enter_context(running_squid_with(workdir / name, rule, before_start=setup)).url
        wrk(urls["alone"], 2, 10, script)  # warm-up
        wrk(urls["helper"], 20, 10, script)  # warm-up: the helper loads its feeds
        rates: dict[str, list[float]] = {"alone": [], "helper": []}
        for _ in range(args.rounds):
            for name, url in urls.items():
                rates[name].append(wrk(url, args.seconds, args.connections, script))
        alone, helper = statistics.median(rates["alone"]), statistics.median(rates["helper"])
        print(f"squid + clickguard squid-helper (1,000,000 entries, every URL a helper lookup): ratio "
              f"{helper / alone:.3f} (goal >= {GOAL}): squid alone {alone:,.0f} req/s, squid + helper "
              f"{helper:,.0f} req/s, median of {args.rounds} alternating runs of {args.seconds} s "
              f"(wrk -c{args.connections}): {'MET' if helper / alone >= GOAL else 'NOT MET'}")


if __name__ == "__main__":
    main()
