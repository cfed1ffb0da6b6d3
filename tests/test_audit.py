"""The audit log: JSON Lines records, concurrent writes, and no acknowledged record lost to a crash."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from clickguard.audit import store
from clickguard.audit import writer as audit
from clickguard.audit.writer import AuditLog, read_records
from clickguard.decision.verdict import Finding
from clickguard.errors import AuditError
from tests.harness import kill_after_acks

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


def path_of(log: AuditLog) -> Path:
    """The log's JSON Lines file (every log of these tests has one)."""
    assert log.path is not None
    return log.path


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
    records = read_records(path_of(log))
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
    lines = path_of(log).read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 500
    assert all(line.endswith("\n") for line in lines)
    refs = [json.loads(line)["ref"] for line in lines]
    assert sorted(refs) == sorted(f"ref{n}" for n in range(500))
    assert list(path_of(log).parent.iterdir()) == [path_of(log)]  # one file
    assert log.written == 500


@pytest.mark.parametrize("with_store", [False, True])
async def test_records_one_at_a_time_are_never_held_for_more(tmp_path: Path, with_store: bool) -> None:
    """A caller that waits for each record (clicks one at a time): every record committed at once.

    Its next record follows its acknowledgement at once; it must not count as one that arrived
    during the commit (with the file alone the log thread itself acknowledges).
    """
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.sqlite" if with_store else None)
    try:
        async with asyncio.timeout(WAIT):
            for n in range(1000):
                assert await log.write(_record(n))
        assert (log.health()["batches"], log.health()["held"]) == (1000, 0)
    finally:
        log.close()


async def test_records_arriving_during_commits_are_grouped_until_they_stop(tmp_path: Path) -> None:
    """Group commit under load: once records overlap earlier ones' commits, batches are held open.

    Another process appending (its flock on the file) makes each commit wait, so the
    next record arrives during it, on any disk. Records one at a time turn it off again.
    """
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, tmp_path / "audit.sqlite")
    log.start()
    n = 0
    try:
        async with asyncio.timeout(WAIT):
            with open(path, "rb") as other:
                for _ in range(40):
                    if log.health()["held"]:
                        break
                    fcntl.flock(other, fcntl.LOCK_EX)
                    n += 2
                    first = asyncio.ensure_future(log.write(_record(n - 1)))
                    await asyncio.sleep(0)  # queued
                    while log.queue_depth():  # taken: its commit waits for the lock
                        await asyncio.sleep(0.001)
                    second = asyncio.ensure_future(log.write(_record(n)))
                    await asyncio.sleep(0)
                    fcntl.flock(other, fcntl.LOCK_UN)
                    assert await first and await second
            assert log.health()["held"] >= 1
            for _ in range(40):  # one at a time: the score falls below its threshold
                n += 1
                assert await log.write(_record(n))
            held = log.health()["held"]
            for _ in range(20):
                n += 1
                assert await log.write(_record(n))
            assert log.health()["held"] == held
    finally:
        log.close()
    assert sorted(r["ref"] for r in read_records(path)) == sorted(f"ref{i}" for i in range(1, n + 1))
    reader = store.connect(tmp_path / "audit.sqlite", readonly=True)
    try:
        assert reader.execute("SELECT count(*) FROM decisions").fetchone() == (n,)
    finally:
        reader.close()


async def test_close_flushes_and_is_idempotent(log: AuditLog) -> None:
    writes = [asyncio.ensure_future(log.write(_record(n))) for n in range(20)]
    await asyncio.gather(*writes)
    log.close()
    log.close()
    assert len(read_records(path_of(log))) == 20
    await log.write(_record(20))  # a closed log opens again on the next write
    log.close()
    assert len(read_records(path_of(log))) == 21


UNWRITABLE = [
    lambda tmp: tmp / "a-file" / "audit.jsonl",  # its directory is a regular file
    lambda tmp: tmp,  # a directory, not a file
    lambda tmp: Path("/dev/full"),  # opens, but every write fails (ENOSPC)
]


@pytest.mark.parametrize("make_path", UNWRITABLE, ids=["parent-is-file", "is-directory", "dev-full"])
async def test_unwritable_path_refuses_the_record_when_closed(tmp_path: Path, make_path: object) -> None:
    (tmp_path / "a-file").write_text("")
    assert callable(make_path)
    log = AuditLog(make_path(tmp_path), on_failure="closed")
    try:
        for n in range(2):  # and again: a failure does not wedge the log
            with pytest.raises(AuditError, match=f"audit record ref{n} not recorded: audit log ") as raised:
                async with asyncio.timeout(WAIT):
                    await log.write(_record(n))
            assert not isinstance(raised.value, TimeoutError), "write hung"
    finally:
        with contextlib.suppress(OSError):  # see test_close_after_failed_write_does_not_raise
            log.close()
    health = log.health()
    assert health["log"]["failing"] is True and health["log"]["last_error"]
    assert (health["written"], health["not_recorded"]) == (0, 2)


@pytest.mark.parametrize("make_path", UNWRITABLE, ids=["parent-is-file", "is-directory", "dev-full"])
async def test_unwritable_path_says_not_recorded_when_open(tmp_path: Path, make_path: object,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-file").write_text("")
    assert callable(make_path)
    log = AuditLog(make_path(tmp_path))  # open: the policy's default
    try:
        async with asyncio.timeout(WAIT):
            assert [await log.write(_record(n)) for n in range(2)] == [False, False]
    finally:
        with contextlib.suppress(OSError):
            log.close()
    assert log.health()["log"]["failing"] is True


async def test_close_after_failed_write_does_not_raise() -> None:
    log = AuditLog(Path("/dev/full"))
    async with asyncio.timeout(WAIT):
        assert await log.write(_record(1)) is False
    log.close()


async def test_unencodable_record_is_written_escaped(log: AuditLog) -> None:
    """A lone surrogate (mitmproxy keeps undecodable bytes so) is written as a JSON escape, not refused."""
    async with asyncio.timeout(WAIT):
        await log.write(_record(1, user="\udcff"))
        await log.write(_record(2))
    path = path_of(log)
    assert '"user":"\\udcff"' in path.read_text(encoding="ascii").splitlines()[0]
    assert [(r["ref"], r["user"]) for r in read_records(path)] == [("ref1", "\udcff"), ("ref2", "ana")]
    assert log.written == 2


BUG = RuntimeError("a bug in the writer")


def _raise_bug(*args: object, **kwargs: object) -> NoReturn:
    raise BUG


async def test_a_bug_in_a_batch_fails_it_loudly_and_the_writer_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.sqlite", on_failure="closed")
    try:
        with monkeypatch.context() as patched:
            patched.setattr(audit._LogFile, "append", _raise_bug)
            with pytest.raises(AuditError, match="a bug in the writer"):
                async with asyncio.timeout(WAIT):
                    await log.write(_record(1))
        async with asyncio.timeout(WAIT):
            await log.write(_record(2))  # the same thread, still writing
    finally:
        log.close()
    assert "audit writer: a batch of 1 records failed" in caplog.text
    assert any(r.exc_info and r.exc_info[1] is BUG for r in caplog.records)  # with its traceback
    assert log.written == 1


async def test_a_bug_in_the_store_is_logged_and_the_log_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.sqlite", on_failure="closed")
    try:
        with monkeypatch.context() as patched:
            patched.setattr(store, "insert_rows", _raise_bug)
            async with asyncio.timeout(WAIT):
                assert await log.write(_record(1)) is True  # the file, the primary record, has it
            assert log.health()["store"]["last_error"] == "a bug in the writer"
        async with asyncio.timeout(WAIT):
            await log.write(_record(2))  # the store thread, still there
    finally:
        log.close()
    assert "audit store" in caplog.text and "a batch of 1 records failed" in caplog.text
    assert any(r.exc_info and r.exc_info[1] is BUG for r in caplog.records)
    assert log.written == 2
    connection = store.connect(tmp_path / "audit.sqlite", readonly=True)
    try:  # the first record waited in memory and went in with the second, or at close
        assert {ref for (ref,) in connection.execute("SELECT ref FROM decisions")} == {"ref1", "ref2"}
    finally:
        connection.close()


async def test_a_bug_in_pruning_is_logged_and_the_writer_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(store, "prune", _raise_bug)
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.sqlite", retention=86400.0)
    try:
        async with asyncio.timeout(WAIT):
            await log.write(_record(1))  # pruning at start-up met the bug first
    finally:
        log.close()
    assert "audit writer: pruning the store failed" in caplog.text
    assert any(r.exc_info and r.exc_info[1] is BUG for r in caplog.records)
    assert log.written == 1
    # Unhandled, the bug would end the thread: pytest turns that into an error (pyproject.toml).


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


@pytest.mark.slow
def test_acknowledged_records_survive_sigkill(tmp_path: Path) -> None:
    """What was acknowledged is in the file after kill -9 (that it was synced: the trace in test_store.py)."""
    path = tmp_path / "audit.jsonl"
    acked = kill_after_acks(CHILD, [str(path)], 200, cwd=tmp_path)
    written = {r["ref"] for r in read_records(path)}
    missing = [ref for ref in acked if ref not in written]
    assert missing == []
    assert len(acked) >= 200


# The disk fills up in a child: RLIMIT_FSIZE caps the size of any file the process writes (Python
# ignores SIGXFSZ), so a write past it is cut short and the next fails with EFBIG, as one fails with
# ENOSPC on a full disk. Raising the limit again is the space freed. The child prints one JSON object:
# what each write returned, and the writer's health while failing and after.
FULL_DISK = """
import asyncio, json, resource, sys
from pathlib import Path
from clickguard.audit import writer as audit
from clickguard.errors import AuditError

def record(ref: str, pad: str = "") -> dict[str, object]:
    return audit.record(ref=ref, event="decision", client="10.0.0.5", user=None,
                        url="http://203.0.113.9/" + pad, action="allow", findings=[])

async def main() -> None:
    path = Path(sys.argv[1])
    log = audit.AuditLog(path, on_failure=sys.argv[2])
    out: dict[str, object] = {"first": await log.write(record("first"))}
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 100, hard))  # nearly full
    try:
        out["big"] = await log.write(record("big", "x" * 4000))  # its first 100 bytes fit
    except AuditError as e:
        out["big"] = f"AuditError: {e}"
    out["failing"] = log.health()
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space freed
    out["after"] = await log.write(record("after"))
    out["recovered"] = log.health()
    log.close()
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.parametrize("on_failure", ["open", "closed"])
def test_a_full_disk_leaves_no_torn_line_and_shows_in_health(tmp_path: Path, on_failure: str) -> None:
    path = tmp_path / "audit.jsonl"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(path), on_failure], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["first"], out["after"]) == (True, True)
    if on_failure == "closed":  # refused: the caller must not serve what was not recorded
        assert out["big"].startswith("AuditError: audit record big not recorded: audit log ")
        assert "File too large" in out["big"]
    else:
        assert out["big"] is False  # not recorded, served anyway; the writer logged why
    failing, recovered = out["failing"], out["recovered"]
    assert failing["on_failure"] == on_failure
    assert failing["log"]["failing"] is True and "File too large" in failing["log"]["last_error"]
    assert failing["not_recorded"] == 1 and failing["written"] == 1
    assert recovered["log"]["failing"] is False
    assert recovered["log"]["last_error"] == failing["log"]["last_error"]  # kept, with its time
    assert recovered["written"] == 2
    # The failed batch was cut back to where it started: the next record is a line of its own.
    assert [r and r["ref"] for r in store.read_jsonl(path)] == ["first", "after"]


async def test_a_torn_last_line_is_ended_before_the_next_record(tmp_path: Path) -> None:
    """A crash or power cut mid-write leaves a torn line: the next record starts a line of its own."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"ref":"old"}\n{"ref":"torn","url":"http://exa')
    log = AuditLog(path)
    try:
        async with asyncio.timeout(WAIT):
            assert await log.write(_record(1)) is True
    finally:
        log.close()
    assert [r and r["ref"] for r in store.read_jsonl(path)] == ["old", None, "ref1"]


def _open_by_us(path: Path) -> bool:
    """Whether this process holds a file descriptor on path (the writer's, here)."""
    fds = Path("/proc/self/fd")
    return any(os.path.realpath(fds / fd) == str(path) for fd in os.listdir(fds))


async def test_a_moved_or_removed_log_is_followed_to_the_new_file(tmp_path: Path) -> None:
    """Rotated by a tool that sends no signal: the next batch sees another file (or none) at the path."""
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    log = AuditLog(path)
    try:
        async with asyncio.timeout(WAIT):
            await log.write(_record(1))
            path.rename(rotated)
            await log.write(_record(2))  # into a new file at the path, not the moved one
            assert not _open_by_us(rotated)  # let go of: it can be compressed and deleted
            path.unlink()
            await log.write(_record(3))
    finally:
        log.close()
    assert [r["ref"] for r in read_records(rotated)] == ["ref1"]
    assert [r["ref"] for r in read_records(path)] == ["ref3"]


async def test_reopen_from_another_thread_loses_nothing(tmp_path: Path) -> None:
    """SIGHUP's handler may call reopen() at any moment, however often: every record lands once."""
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    log = AuditLog(path)

    def hangups() -> None:
        for _ in range(200):
            log.reopen()

    try:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(log.write(_record(n)) for n in range(100)))
            hup = threading.Thread(target=hangups)
            hup.start()
            path.rename(rotated)  # rotated meanwhile
            await asyncio.gather(*(log.write(_record(n)) for n in range(100, 300)))
            hup.join()
            log.reopen()
            await log.write(_record(300))
    finally:
        log.close()
    old, new = read_records(rotated), read_records(path)
    assert {r["ref"] for r in old} >= {f"ref{n}" for n in range(100)}
    assert new[-1]["ref"] == "ref300"
    assert sorted(r["ref"] for r in old + new) == sorted(f"ref{n}" for n in range(301))


async def test_a_log_whose_folder_became_a_file_is_failing_not_written_elsewhere(tmp_path: Path) -> None:
    """The folder replaced by a file: stat says NotADirectory; the log must not go on into the old inode."""
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "audit.jsonl"
    log = AuditLog(path)
    try:
        async with asyncio.timeout(WAIT):
            await log.write(_record(1))
            folder.rename(tmp_path / "old-logs")
            folder.write_text("not a folder")
            with contextlib.suppress(Exception):
                await log.write(_record(2))
            assert log.health()["log"]["failing"]
    finally:
        log.close()
    assert [r["ref"] for r in read_records(tmp_path / "old-logs" / "audit.jsonl")] == ["ref1"]
