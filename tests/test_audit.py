"""The audit log: JSON Lines records, concurrent writes, and no acknowledged record lost to a crash."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickguard.audit import writer as audit
from clickguard.audit.writer import AuditLog, read_records
from clickguard.decision.verdict import Finding

REPO = Path(__file__).resolve().parents[1]
DESIGN_FIELDS = {"ts", "client", "user", "url", "action", "reasons", "origin_ip"}
FINDINGS = [
    Finding("landing.thingbot", "203.0.113.9 is listed by feed 'bots'", "bots", ("mirai",), "203.0.113.9"),
    Finding("origin.thingbot", "the e-mail was handed over by 198.51.100.7", "drop"),
    Finding("landing.thingbot", "the address http://203.0.113.9/i is listed", "urlhaus"),
]
WAIT = 30.0  # seconds before a write counts as hung; a healthy write takes milliseconds


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(tmp_path / "var" / "audit.jsonl")  # the directory is created on first write
    yield log
    log.close()


def _record(n: int, user: str = "ana", **extra: object) -> dict[str, object]:
    return audit.record(ref=f"ref{n}", event="decision", client="10.0.0.5", user=user,
                        url=f"http://203.0.113.9/{n}", action="block", findings=FINDINGS,
                        origin_ip="198.51.100.7", **extra)


def test_record_has_design_fields() -> None:
    entry = _record(1, host="203.0.113.9", addresses=None)
    assert entry.keys() >= DESIGN_FIELDS
    assert entry["reasons"] == ["landing.thingbot", "origin.thingbot"]  # codes, de-duplicated
    assert entry["details"] == [f.as_dict() for f in FINDINGS]
    assert entry["host"] == "203.0.113.9"
    assert "addresses" not in entry  # None extras are left out
    ts = str(entry["ts"])
    assert ts.endswith("Z") and "T" in ts


async def test_write_appends_json_lines(log: AuditLog) -> None:
    for n in range(3):
        await log.write(_record(n))
    records = read_records(log.path)
    assert [r["ref"] for r in records] == ["ref0", "ref1", "ref2"]
    assert all(r.keys() >= DESIGN_FIELDS for r in records)
    assert records[0]["url"] == "http://203.0.113.9/0"
    assert records[0]["origin_ip"] == "198.51.100.7"
    assert log.written == 3


async def test_write_keeps_non_ascii_and_appends_to_existing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"ref":"old"}\n', encoding="utf-8")
    log = AuditLog(path)
    try:
        await log.write(_record(1, user="zoë"))
    finally:
        log.close()
    assert [r["ref"] for r in read_records(path)] == ["old", "ref1"]
    assert read_records(path)[1]["user"] == "zoë"
    assert path.read_bytes().isascii()  # JSON escapes: no byte sequence can make a line unwritable


async def test_concurrent_writes_all_land(log: AuditLog) -> None:
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(log.write(_record(n)) for n in range(500)))
    lines = log.path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 500
    assert all(line.endswith("\n") for line in lines)
    refs = [json.loads(line)["ref"] for line in lines]
    assert sorted(refs) == sorted(f"ref{n}" for n in range(500))
    assert list(log.path.parent.iterdir()) == [log.path]  # one file
    assert log.written == 500


async def test_close_flushes_and_is_idempotent(log: AuditLog) -> None:
    writes = [asyncio.ensure_future(log.write(_record(n))) for n in range(20)]
    await asyncio.gather(*writes)
    log.close()
    log.close()
    assert len(read_records(log.path)) == 20
    await log.write(_record(20))  # a closed log opens again on the next write
    log.close()
    assert len(read_records(log.path)) == 21


@pytest.mark.parametrize(
    "make_path",
    [
        lambda tmp: tmp / "a-file" / "audit.jsonl",  # its directory is a regular file
        lambda tmp: tmp,  # a directory, not a file
        lambda tmp: Path("/dev/full"),  # opens, but every write fails (ENOSPC)
    ],
    ids=["parent-is-file", "is-directory", "dev-full"],
)
async def test_unwritable_path_raises_oserror(tmp_path: Path, make_path: object) -> None:
    (tmp_path / "a-file").write_text("")
    assert callable(make_path)
    log = AuditLog(make_path(tmp_path))
    try:
        for n in range(2):  # and again: a failure does not wedge the log
            with pytest.raises(OSError) as raised:
                async with asyncio.timeout(WAIT):
                    await log.write(_record(n))
            assert not isinstance(raised.value, TimeoutError), "write hung"
    finally:
        with contextlib.suppress(OSError):  # see test_close_after_failed_write_does_not_raise
            log.close()


async def test_close_after_failed_write_does_not_raise() -> None:
    log = AuditLog(Path("/dev/full"))
    with pytest.raises(OSError):
        async with asyncio.timeout(WAIT):
            await log.write(_record(1))
    log.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_unencodable_record_does_not_wedge_the_log(log: AuditLog) -> None:
    try:
        async with asyncio.timeout(5):
            await log.write(_record(1, user="\udcff"))
    except TimeoutError:
        pytest.fail("write of an unencodable record hung")
    except (ValueError, OSError):
        pass  # refusing the record is fine; hanging is not
    try:
        async with asyncio.timeout(5):
            await log.write(_record(2))
    except TimeoutError:
        pytest.fail("the log is wedged after an unencodable record")
    assert read_records(log.path)[-1]["ref"] == "ref2"


CHILD = """
import asyncio, sys
from pathlib import Path
from clickguard.audit import writer as audit

async def main() -> None:
    log = audit.AuditLog(Path(sys.argv[1]))
    n = 0
    while True:
        ref = f"crash{n}"
        await log.write(audit.record(ref=ref, event="decision", client="10.0.0.5", user=None,
                                     url=f"http://203.0.113.9/{n}", action="block", findings=[]))
        print("acked", ref, flush=True)
        n += 1

asyncio.run(main())
"""


def _read_acks(proc: subprocess.Popen[bytes], wanted: int, deadline: float) -> list[str]:
    """Refs the child acknowledged, read from its stdout until `wanted` of them or the deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    acked: list[str] = []
    while len(acked) < wanted:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(acked)} acks before the deadline"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"child exited after {len(acked)} acks: rc={proc.wait()}"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        acked += [line.decode().split()[1] for line in lines if line.startswith(b"acked ")]
    return acked


def kill_after_acks(script: str, args: list[str], wanted: int) -> list[str]:
    """Run a writer child, read `wanted` acknowledged refs, SIGKILL it while it still writes."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        acked = _read_acks(proc, wanted, time.monotonic() + 120)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    acked = kill_after_acks(CHILD, [str(path)], 200)
    written = {r["ref"] for r in read_records(path)}
    missing = [ref for ref in acked if ref not in written]
    assert missing == []
    assert len(acked) >= 200
