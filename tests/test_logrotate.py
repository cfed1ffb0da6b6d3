"""The audit log under Debian's logrotate, in `create` and `copytruncate` modes: no record lost or misplaced.

logrotate runs as the test's own user, with a state file and a configuration
the test writes (never the system's), so the tests need no privileges.
"""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path

from clickguard.audit import store
from clickguard.audit import writer as audit
from clickguard.audit.writer import AuditLog
from tests.harness import required_tool

LOGROTATE_HINT = "apt-get install -y logrotate (.ci/run does it)"
WAIT = 30.0  # seconds before a write counts as hung


def _rotate(tmp_path: Path, log: Path, mode: str) -> None:
    """Rotate the log once with the real logrotate, as a daily cron run would (forced)."""
    logrotate = required_tool("logrotate", LOGROTATE_HINT)
    config = tmp_path / "logrotate.conf"
    config.write_text(f"{log} {{\n    rotate 3\n    {mode}\n    missingok\n    nocompress\n}}\n")
    config.chmod(0o644)  # logrotate ignores a configuration others may write
    done = subprocess.run([logrotate, "-s", str(tmp_path / "logrotate.state"), "-f", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _record(ref: str) -> dict[str, object]:
    return audit.record(ref=ref, event="decision", client="10.0.0.5", user="ana",
                        url=f"http://203.0.113.9/{ref}", action="allow", findings=[])


def _refs(path: Path) -> list[str]:
    """The refs of a log's lines, in order; None for a line that is not a whole record."""
    return [r["ref"] if r else "<not a record>" for r in store.read_jsonl(path)]


async def test_create_mode_records_written_after_go_to_the_new_file(tmp_path: Path) -> None:
    """logrotate moves the log and creates a new one: the writer follows, while writing and after."""
    path = tmp_path / "log" / "audit.jsonl"
    rotated = path.with_name("audit.jsonl.1")
    log = AuditLog(path)
    acked: list[str] = []

    async def keep_writing(name: str, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            await log.write(_record(f"{name}{n}"))
            acked.append(f"{name}{n}")
            n += 1

    try:
        async with asyncio.timeout(WAIT):
            await log.write(_record("before"))
            stop = asyncio.Event()
            writers = [asyncio.create_task(keep_writing(f"w{i}-", stop)) for i in range(4)]
            await asyncio.to_thread(_rotate, tmp_path, path, "create 0640")  # while they write
            stop.set()
            await asyncio.gather(*writers)
            for n in range(5):
                await log.write(_record(f"after{n}"))
    finally:
        log.close()
    old, new = _refs(rotated), _refs(path)
    assert old[0] == "before"
    assert new[-5:] == [f"after{n}" for n in range(5)]  # not into the moved file
    assert sorted(old + new) == sorted(["before", *acked, *(f"after{n}" for n in range(5))])
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


async def test_copytruncate_mode_appends_at_the_new_end(tmp_path: Path) -> None:
    """logrotate copies the log and empties it: the writer goes on at offset 0, leaving no hole."""
    path = tmp_path / "audit.jsonl"
    rotated = path.with_name("audit.jsonl.1")
    log = AuditLog(path)
    try:
        async with asyncio.timeout(WAIT):
            for n in range(20):
                await log.write(_record(f"before{n}"))
            # Records written between logrotate's copy and its truncate are lost (its documented
            # limit): this test writes none meanwhile.
            await asyncio.to_thread(_rotate, tmp_path, path, "copytruncate")
            for n in range(5):
                await log.write(_record(f"after{n}"))
    finally:
        log.close()
    assert _refs(rotated) == [f"before{n}" for n in range(20)]
    assert _refs(path) == [f"after{n}" for n in range(5)]
    assert path.read_bytes().startswith(b'{"ts":')  # O_APPEND: no run of NUL bytes where the old end was
