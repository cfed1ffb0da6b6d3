"""What the benchmarks share: the feeds, processes on loopback, wrk, CPU and memory from /proc.

CPU and memory are read from ``/proc``: a proxy's CPU is its own plus its live child
processes' (clickguard's inspection workers) plus what its reaped children used, so
work handed to another process is not hidden from the per-request figure.
"""

from __future__ import annotations

import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
FEEDS = Path(os.environ.get("CLICKGUARD_SHARED_DATA", REPO.parent / "shared" / "data")) / "feeds"
BIN = Path(sys.executable).parent

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


def verdict(met: bool) -> str:
    """How a goal line ends."""
    return "MET" if met else "NOT MET"


def has_option(command: str, option: str) -> bool:
    """Whether `clickguard COMMAND --help` lists an option (flags other engineers may be adding)."""
    out = subprocess.run([str(BIN / "clickguard"), command, "--help"], capture_output=True, text=True,
                         timeout=60).stdout
    return re.search(rf"(^|[\s\[,]){re.escape(option)}\b", out) is not None


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


def _status(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status in MiB (0 when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss(pid: int) -> float:
    """The most memory (MiB) a process has held so far (VmHWM)."""
    return _status(pid, "VmHWM")


def rss(pid: int) -> float:
    """The memory (MiB) a process holds now (VmRSS)."""
    return _status(pid, "VmRSS")


def pss(pid: int) -> float:
    """A process's proportional share (MiB) of its memory: pages shared with its parent count half."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name ([] when the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def descendants(pid: int) -> list[int]:
    """The live processes started by a process, its children's children too."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, its live descendants and the children it has reaped."""
    fields = _stat(pid)
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK") if fields else 0.0
    return cpu_seconds(pid) + reaped + sum(cpu_seconds(child) for child in descendants(pid))


class Load(NamedTuple):
    """One wrk run through a proxy: requests/s, and the proxy's CPU milliseconds per request."""

    rate: float
    cpu_ms: float


def wrk(proxy_port: int, target: str, seconds: int, connections: int, workdir: Path,
        headers: dict[str, str], pid: int | None = None) -> Load:
    """A wrk run through a proxy for an absolute-form GET of target; CPU counted for pid's process tree."""
    script = workdir / "proxy.lua"
    host = target.split("/")[2]
    lines = [f'wrk.path = "{target}"', f'wrk.headers["Host"] = "{host}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    cpu_before = tree_cpu_seconds(pid) if pid else 0.0
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{proxy_port}/"], capture_output=True, text=True)
    out = done.stdout
    cpu = tree_cpu_seconds(pid) - cpu_before if pid else 0.0
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode or not match or not total or "Non-2xx" in out:
        raise SystemExit(f"wrk through port {proxy_port} failed:\n{out}{done.stderr}")
    return Load(float(match.group(1)), 1000 * cpu / max(int(total.group(1)), 1))


def median_load(runs: Iterable[Load]) -> Load:
    """The median rate and the median CPU per request of some runs (each median taken on its own)."""
    runs = list(runs)
    return Load(statistics.median(r.rate for r in runs), statistics.median(r.cpu_ms for r in runs))
