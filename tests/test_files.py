"""Private files: what clickguard writes under var/ is 0640 (directories 0750) whatever the umask.

Each test runs under umask 000 (a careless service unit), 022 (the usual default)
and 077, with real files: the audit log, the store with its -wal and -shm, the
learned hosts.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickguard import files
from clickguard.audit import store
from clickguard.audit import writer as audit
from clickguard.audit.writer import AuditLog
from clickguard.intel.learned import LearnedHosts

WAIT = 30.0


@pytest.fixture(params=[0o000, 0o022, 0o077], ids=["umask-000", "umask-022", "umask-077"], autouse=True)
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under this umask (the process's: the writer threads create files under it too)."""
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_creates_missing_parents_0750(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir(mode=0o755)
    os.chmod(tmp_path / "lib", 0o755)
    files.private_dir(tmp_path / "lib" / "clickguard" / "var")
    assert mode(tmp_path / "lib") == 0o755  # there already: left as it is
    assert mode(tmp_path / "lib" / "clickguard") == 0o750
    assert mode(tmp_path / "lib" / "clickguard" / "var") == 0o750
    files.private_dir(tmp_path / "lib" / "clickguard" / "var")  # again: nothing to do
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError):
        files.private_dir(tmp_path / "a-file" / "var")


def test_open_private_creates_0640_and_makes_an_existing_file_private(tmp_path: Path) -> None:
    fd = files.open_private(tmp_path / "var" / "new.log", os.O_WRONLY | os.O_APPEND)
    os.close(fd)
    assert (mode(tmp_path / "var"), mode(tmp_path / "var" / "new.log")) == (0o750, 0o640)
    old = tmp_path / "var" / "old.log"
    old.write_text("kept\n")
    os.chmod(old, 0o666)  # written by an older version under umask 000
    os.close(files.open_private(old, os.O_WRONLY | os.O_APPEND))
    assert mode(old) == 0o640 and old.read_text() == "kept\n"
    os.chmod(old, 0o600)
    os.close(files.open_private(old, os.O_WRONLY | os.O_APPEND))
    assert mode(old) == 0o600  # private already: as IT set it


def test_write_private_replaces_atomically_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "var" / "state.json"
    files.write_private(path, b"one")
    assert (path.read_bytes(), mode(path)) == (b"one", 0o640)
    os.chmod(path, 0o600)
    files.write_private(path, b"two")
    assert (path.read_bytes(), mode(path)) == (b"two", 0o600)
    os.chmod(path, 0o644)
    files.write_private(path, b"three")
    assert (path.read_bytes(), mode(path)) == (b"three", 0o640)
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]  # no temporary file left


async def test_audit_log_and_store_with_wal_and_shm_are_private(tmp_path: Path) -> None:
    var = tmp_path / "var"
    log = AuditLog(var / "audit.jsonl", var / "audit.sqlite")
    try:
        async with asyncio.timeout(WAIT):
            assert await log.write(audit.record(ref="r1", event="decision", client="10.0.0.5", user="ana",
                                                url="http://203.0.113.9/reset?token=s3cret", action="allow",
                                                findings=[]))
        # While the writer's connection is open, SQLite's companions exist: created by SQLite itself.
        names = {p.name: mode(p) for p in var.iterdir()}
    finally:
        log.close()
    assert mode(var) == 0o750
    assert names == {"audit.jsonl": 0o640, "audit.sqlite": 0o640, "audit.sqlite-wal": 0o640,
                     "audit.sqlite-shm": 0o640}


def test_a_world_readable_store_from_before_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    connection = store.connect(path)
    store.close(connection)
    os.chmod(path, 0o644)
    connection = store.connect(path)
    try:
        assert mode(path) == 0o640
        assert mode(tmp_path / "audit.sqlite-wal") == 0o640
    finally:
        store.close(connection)


def test_learned_hosts_file_is_private(tmp_path: Path) -> None:
    hosts = LearnedHosts(tmp_path / "var" / "learned.json")
    hosts.learn("cam.example", "a camera redirecting elsewhere", "http://cam.example/?k=1",
                ("response.redirect",), ttl=3600)
    hosts.save()
    assert (mode(tmp_path / "var"), mode(tmp_path / "var" / "learned.json")) == (0o750, 0o640)
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["learned.json"]


def test_restrict_umask_only_ever_tightens(umask: int) -> None:
    assert files.restrict_umask() == umask
    now = os.umask(0o022)
    os.umask(now)
    assert now == umask | 0o027  # 000 and 022 become 027; 077 stays 077
