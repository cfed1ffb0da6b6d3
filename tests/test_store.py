"""The audit store: rows of every record shape, import, retention, query plans, and kill -9."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from clickguard import cli
from clickguard.audit import store
from clickguard.audit import writer as audit
from clickguard.audit.writer import AuditLog, OnFailure, read_records
from clickguard.decision.verdict import Finding
from clickguard.errors import AuditError
from clickguard.proxy.runtime import Runtime
from tests.harness import (
    HTML,
    Proxy,
    Syscall,
    kill_after_acks,
    start_proxy,
    traced_syscalls,
    upstream,
    wait_until,
)

WAIT = 30.0  # seconds before a write counts as hung
DAY = 86400.0

FINGERPRINT = {"name": "MikroTik RouterOS", "class": "router", "strength": "strong", "trait": "server",
               "evidence": "Server: MikroTik", "appliance": True}
PAYLOAD = {"kind": "elf", "arch": "mips", "label": "ELF executable (MIPS)", "filename": "x.mips",
           "declared_type": "text/plain", "evidence": ["ELF magic"]}

# Each record shape the proxy writes (see addons/guard.py and addons/endpoint.py), with the
# decisions columns and the (code, feed, tag) findings rows it must become.
SHAPES: list[tuple[str, dict[str, Any], dict[str, Any], list[tuple[str, str | None, str | None]]]] = [
    ("decision",
     audit.record(ref="d1", event="decision", client="10.0.0.5", user="ana",
                  url="http://203.0.113.9:8080/x.sh", action="block", navigation=True,
                  findings=[Finding("landing.thingbot", "203.0.113.9 is listed", "urlhaus",
                                    ("mirai", "elf"), "203.0.113.9")],
                  host="203.0.113.9", addresses=["203.0.113.9"]),
     {"event": "decision", "client": "10.0.0.5", "user": "ana", "host": "203.0.113.9", "action": "block",
      "origin_ip": None, "click_id": None, "hop": None, "recipient": None, "device_class": None},
     [("landing.thingbot", "urlhaus", "mirai"), ("landing.thingbot", "urlhaus", "elf")]),
    ("click with origin",
     audit.record(ref="c1", event="click", client="10.0.0.6", user=None, url="http://shop.example/a",
                  action="warn", origin_ip="198.51.100.7", host="shop.example", click_id="c1", hop=0,
                  recipient="h:5f3a", findings=[
                      Finding("origin.thingbot", "handed over by 198.51.100.7", "drop", (), "198.51.100.7"),
                      Finding("origin.unknown_landing", "shop.example is not a known domain")]),
     {"event": "click", "user": None, "host": "shop.example", "action": "warn",
      "origin_ip": "198.51.100.7", "click_id": "c1", "hop": 0, "recipient": "h:5f3a"},
     [("origin.thingbot", "drop", None), ("origin.unknown_landing", None, None)]),
    ("hop",
     audit.record(ref="h1", event="hop", client="10.0.0.6", user=None, url="http://shop.example/b",
                  action="allow", findings=[], origin_ip="198.51.100.7", host="shop.example",
                  click_id="c1", hop=2, recipient="h:5f3a"),
     {"event": "hop", "action": "allow", "click_id": "c1", "hop": 2, "origin_ip": "198.51.100.7"},
     []),
    ("continue",
     audit.record(ref="k1", event="continue", client="10.0.0.6", user="bo", url="http://shop.example/a",
                  action="allow", origin_ip="198.51.100.7", click_id="c1", warn_ref="w1",
                  host="shop.example",
                  findings=[Finding("origin.thingbot", "the user chose to continue past the warning")]),
     {"event": "continue", "user": "bo", "action": "allow", "click_id": "c1", "hop": None},
     [("origin.thingbot", None, None)]),
    ("response from an appliance",
     audit.record(ref="p1", event="response", client="10.0.0.5", user=None,
                  url="http://198.51.100.20:7547/fw.bin", action="block", host="198.51.100.20",
                  inspection={"fingerprint": FINGERPRINT, "payload": PAYLOAD, "suspect": True},
                  findings=[Finding("landing.appliance", "MikroTik RouterOS (router)"),
                            Finding("response.drive_by", "an ELF executable for MIPS")]),
     {"event": "response", "action": "block", "device_class": "router", "host": "198.51.100.20"},
     [("landing.appliance", None, None), ("response.drive_by", None, None)]),
    ("response from embedded software, not an appliance",
     audit.record(ref="p2", event="response", client="10.0.0.5", user=None, url="http://intranet.example/",
                  action="allow", host="intranet.example",
                  inspection={"fingerprint": {**FINGERPRINT, "class": "embedded_server", "appliance": False}},
                  findings=[Finding("response.redirect", "meta refresh to http://elsewhere.example/")]),
     {"event": "response", "device_class": None},
     [("response.redirect", None, None)]),
    ("tunnel",
     audit.record(ref="t1", event="tunnel", client="10.0.0.7", user="cy", url="https://bank.example/",
                  action="block", host="bank.example", addresses=["192.0.2.80"],
                  findings=[Finding("policy.deny", "bank.example is on the deny list")]),
     {"event": "tunnel", "host": "bank.example", "action": "block"},
     [("policy.deny", None, None)]),
    ("refused click link, no host in the record",
     audit.record(ref="b1", event="click", client="10.0.0.5", user=None,
                  url="http://clickguard.local/v1/AAAA/http://x.example/", action="block",
                  findings=[Finding("link.bad_signature", "click link refused: bad signature")]),
     {"event": "click", "host": "clickguard.local", "click_id": None},
     [("link.bad_signature", None, None)]),
]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A writer connection to a fresh store."""
    connection = store.connect(tmp_path / "audit.sqlite")
    yield connection
    store.close(connection)


def _record(n: int, *, ts: float | None = None, **extra: Any) -> dict[str, Any]:
    entry = audit.record(ref=f"ref{n}", event="decision", client="10.0.0.5", user="ana",
                         url=f"http://203.0.113.9/{n}", action="block", host="203.0.113.9",
                         findings=[Finding("landing.thingbot", "listed", "bots", ("mirai",))], **extra)
    if ts is not None:
        entry["ts"] = ts
    return entry


def _columns(connection: sqlite3.Connection, where: str = "", *args: object) -> list[dict[str, Any]]:
    """Every decisions row (without id) as a dict, with its findings, in ref order."""
    cursor = connection.execute(f"SELECT * FROM decisions {where} ORDER BY ref, event", args)
    names = [d[0] for d in cursor.description]
    out = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        found = connection.execute("SELECT code, feed, tag FROM findings WHERE decision_id = ? "
                                   "ORDER BY rowid", (row.pop("id"),)).fetchall()
        out.append({**row, "findings": found})
    return out


@pytest.mark.parametrize(("record", "columns", "findings"), [s[1:] for s in SHAPES],
                         ids=[s[0] for s in SHAPES])
async def test_every_record_shape_becomes_its_rows(
        tmp_path: Path, record: dict[str, Any], columns: dict[str, Any],
        findings: list[tuple[str, str | None, str | None]]) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.sqlite")
    try:
        async with asyncio.timeout(WAIT):
            await log.write(record)
    finally:
        log.close()
    reader = store.connect(tmp_path / "audit.sqlite", readonly=True)
    try:
        [row] = _columns(reader)
    finally:
        reader.close()
    assert {k: row[k] for k in columns} == columns
    assert row["findings"] == findings
    assert (row["ref"], row["url"]) == (record["ref"], record["url"])
    # The shapes are made at import: their ts is now, in ISO 8601 UTC, read back here as Unix seconds.
    assert row["ts"] == datetime.fromisoformat(record["ts"]).timestamp()
    # The whole record, as the file has it: the store loses nothing the log keeps.
    assert json.loads(row["record"]) == record == read_records(tmp_path / "audit.jsonl")[0]


@pytest.mark.parametrize(("value", "seconds"), [
    ("2026-01-27T10:00:00.250Z", 1769508000.25),
    ("2026-01-27T11:00:00+01:00", 1769508000.0),
    ("2026-01-27T10:00:00", 1769508000.0),  # no zone: UTC, never the machine's local time
    (1769508000, 1769508000.0),
])
def test_timestamp(value: object, seconds: float) -> None:
    assert store.timestamp(value) == seconds


@pytest.mark.parametrize("record", [
    {"ref": "x", "event": "decision", "url": "http://a/", "action": "block"},  # no ts
    {"ts": "yesterday", "ref": "x", "event": "decision", "url": "http://a/", "action": "block"},
    {"ts": float("nan"), "ref": "x", "event": "decision", "url": "http://a/", "action": "block"},
    {"ts": True, "ref": "x", "event": "decision", "url": "http://a/", "action": "block"},
    {"ts": 1.0, "ref": "", "event": "decision", "url": "http://a/", "action": "block"},
    {"ts": 1.0, "ref": "x", "event": "decision", "action": "block"},  # no url
])
def test_unusable_records_are_refused(record: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        store.row_of(record)


def test_reasons_only_and_odd_values(db: sqlite3.Connection) -> None:
    # A record that kept only its codes (older or foreign logs), a lone surrogate, a huge hop.
    foreign = {"ts": 1.0, "ref": "f1", "event": "decision", "url": "http://a.example/", "action": "warn",
               "reasons": ["landing.thingbot", "origin.thingbot"], "user": "\udcff", "hop": 2**70}
    assert store.insert(db, [foreign]) == (1, 0)
    [row] = _columns(db)
    assert row["findings"] == [("landing.thingbot", None, None), ("origin.thingbot", None, None)]
    assert row["user"] == "\\udcff" and row["hop"] is None and row["host"] == "a.example"


def _write_jsonl(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="utf-8")


def test_import_is_idempotent(tmp_path: Path, db: sqlite3.Connection) -> None:
    path = tmp_path / "audit.jsonl"
    _write_jsonl(path, [json.dumps(_record(n)) + "\n" for n in range(7)])
    assert store.import_jsonl(db, path, batch=3) == (7, 0)
    assert store.import_jsonl(db, path, batch=3) == (0, 7)
    assert db.execute("SELECT count(*) FROM decisions").fetchone() == (7,)
    assert db.execute("SELECT count(*) FROM findings").fetchone() == (7,)


def test_import_skips_and_counts_garbage_and_a_torn_last_line(tmp_path: Path, db: sqlite3.Connection) -> None:
    good = [json.dumps(_record(n)) + "\n" for n in range(3)]
    path = tmp_path / "audit.jsonl"
    _write_jsonl(path, [
        good[0],
        "not json at all\n",
        "\n",
        "[1, 2, 3]\n",  # JSON, but not a record
        '{"ref": "no-ts", "event": "decision", "url": "http://a/", "action": "block"}\n',
        "[" * 100_000 + "\n",  # nested past the parser's recursion limit
        good[1],
        good[2],
        json.dumps(_record(3))[:40],  # the writer died mid-record
    ])
    assert store.import_jsonl(db, path) == (3, 6)
    assert [r["ref"] for r in _columns(db)] == ["ref0", "ref1", "ref2"]


def test_prune_deletes_old_decisions_and_their_findings(db: sqlite3.Connection) -> None:
    now = time.time()
    ages = [200, 100, 95, 91, 89, 10, 0]  # days
    store.insert(db, [_record(n, ts=now - age * DAY) for n, age in enumerate(ages)])
    before = now - 90 * DAY
    assert store.prune(db, before, limit=2) == 2  # the oldest first
    assert {r["ref"] for r in _columns(db)} == {"ref2", "ref3", "ref4", "ref5", "ref6"}
    assert store.prune(db, before) == 2
    assert store.prune(db, before) == 0
    assert [r["ref"] for r in _columns(db)] == ["ref4", "ref5", "ref6"]
    orphans = db.execute("SELECT count(*) FROM findings WHERE decision_id NOT IN (SELECT id FROM decisions)")
    assert orphans.fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM findings").fetchone() == (3,)


async def test_writer_prunes_at_start_and_then_periodically(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    connection = store.connect(path)
    now = time.time()
    store.insert(connection, [_record(1, ts=now - 100 * DAY), _record(2, ts=now - 10 * DAY)])
    log = AuditLog(None, path, retention=90 * DAY, prune_every=0.05)
    try:
        await log.write(_record(3))
        assert {r["ref"] for r in _columns(connection)} == {"ref2", "ref3"}  # pruned at start-up
        log.retention = 1.0  # as a policy reload sets it
        wait_until(lambda: log.pruned == 3, 10, "the periodic prune")
        assert _columns(connection) == []
        await log.write(_record(4))  # the writer still writes after pruning
        assert [r["ref"] for r in _columns(connection)] == ["ref4"]
    finally:
        log.close()
        store.close(connection)


async def test_writer_prunes_a_large_backlog_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    connection = store.connect(path)
    old = time.time() - 200 * DAY
    store.insert(connection, [_record(n, ts=old) for n in range(audit.PRUNE_BATCH * 2 + 10)])
    log = AuditLog(None, path, retention=90 * DAY)
    try:
        await log.write(_record(-1))
        wait_until(lambda: log.pruned == audit.PRUNE_BATCH * 2 + 10, 30, "the backlog to be pruned")
        assert [r["ref"] for r in _columns(connection)] == ["ref-1"]
    finally:
        log.close()
        store.close(connection)


def _plan(connection: sqlite3.Connection, query: str) -> str:
    return " / ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {query}", (0.0, 1e10)))


# Each query a report runs, and the indexes any of which may serve it (the planner picks).
@pytest.mark.parametrize(("query", "indexes"), [
    ("SELECT count(*) FROM decisions WHERE ts BETWEEN ? AND ?", {"decisions_ts"}),
    ("SELECT action, count(*) FROM decisions WHERE ts BETWEEN ? AND ? GROUP BY action",
     {"decisions_ts", "decisions_action"}),
    ("SELECT code, count(*) FROM findings WHERE ts BETWEEN ? AND ? GROUP BY code",
     {"findings_code", "findings_report"}),
    ("SELECT f.code, count(DISTINCT f.decision_id) FROM decisions d JOIN findings f ON f.decision_id = d.id "
     "WHERE d.ts BETWEEN ? AND ? AND d.action = 'block' GROUP BY f.code",
     {"findings_decision", "findings_report"}),
])
def test_report_queries_use_the_indexes(db: sqlite3.Connection, query: str, indexes: set[str]) -> None:
    store.insert(db, [_record(n, ts=1000.0 + n) for n in range(200)])
    db.execute("ANALYZE")
    plan = _plan(db, query)
    assert any(f"INDEX {index}" in plan for index in indexes), plan
    # No table is read whole: every SCAN (if any) goes through an index.
    assert all("USING" in step for step in plan.split(" / ") if step.startswith("SCAN")), plan


async def test_both_sinks_get_every_concurrent_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "audit.sqlite")
    try:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(log.write(_record(n)) for n in range(500)))
    finally:
        log.close()
    assert log.written == 500
    refs = {f"ref{n}" for n in range(500)}
    assert {r["ref"] for r in read_records(tmp_path / "audit.jsonl")} == refs
    reader = store.connect(tmp_path / "audit.sqlite", readonly=True)
    try:
        assert {ref for (ref,) in reader.execute("SELECT ref FROM decisions")} == refs
        with pytest.raises(sqlite3.OperationalError):  # readers never write
            reader.execute("DELETE FROM decisions")
    finally:
        reader.close()


async def test_store_only(tmp_path: Path) -> None:
    log = AuditLog(None, tmp_path / "audit.sqlite")
    try:
        await log.write(_record(1))
    finally:
        log.close()
    assert list(tmp_path.iterdir()) == [tmp_path / "audit.sqlite"]  # no file, only the store


@pytest.mark.parametrize("make_store", [
    lambda tmp: tmp / "a-file" / "audit.sqlite",  # its directory is a regular file
    lambda tmp: tmp,  # a directory, not a database
    lambda tmp: tmp / "not-a-db.sqlite",  # a file that is not SQLite
], ids=["parent-is-file", "is-directory", "not-a-database"])
async def test_a_failing_store_shows_in_health_while_the_log_records(
        tmp_path: Path, make_store: Any, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "not-a-db.sqlite").write_bytes(b"this is not a database, just text " * 200)
    log = AuditLog(tmp_path / "audit.jsonl", make_store(tmp_path), on_failure="closed")
    try:
        for n in range(2):  # and again: a failure does not wedge the writer
            with caplog.at_level(logging.ERROR, logger="clickguard.audit"):
                async with asyncio.timeout(WAIT):
                    assert await log.write(_record(n)) is True  # the log, the primary record, has it
        health = log.health()
    finally:
        log.close()
    assert "audit store" in caplog.text
    assert health["written"] == log.written == 2
    assert health["log"]["failing"] is False
    assert health["store"]["failing"] is True and health["store"]["last_error"]
    assert [r["ref"] for r in read_records(tmp_path / "audit.jsonl")] == ["ref0", "ref1"]


@pytest.mark.parametrize("on_failure", ["open", "closed"])
async def test_a_failing_store_alone_fails_the_write(tmp_path: Path, on_failure: OnFailure) -> None:
    """With the log off the store is the record: a record it cannot take is not recorded."""
    (tmp_path / "not-a-db.sqlite").write_bytes(b"this is not a database, just text " * 200)
    log = AuditLog(None, tmp_path / "not-a-db.sqlite", on_failure=on_failure)
    try:
        async with asyncio.timeout(WAIT):
            if on_failure == "closed":
                with pytest.raises(AuditError, match="audit record ref1 not recorded: audit store "):
                    await log.write(_record(1))
            else:
                assert await log.write(_record(1)) is False
    finally:
        log.close()
    assert (log.written, log.health()["not_recorded"]) == (0, 1)


@pytest.mark.parametrize("with_log", [True, False], ids=["log-and-store", "store-only"])
async def test_unusable_record_fails_alone(tmp_path: Path, with_log: bool) -> None:
    log = AuditLog(tmp_path / "audit.jsonl" if with_log else None, tmp_path / "audit.sqlite",
                   on_failure="closed")
    try:
        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(log.write({"ref": "no-url"}), log.write(_record(1)),
                                           return_exceptions=True)
    finally:
        log.close()
    if with_log:  # the log has it as it came; the store could not index it (and said so)
        assert list(results) == [True, True]
    else:
        assert isinstance(results[0], AuditError) and results[1] is True
    assert _store_rows(tmp_path / "audit.sqlite")[0]["ref"] == "ref1"


async def test_a_locked_store_holds_up_nothing_and_catches_up(tmp_path: Path) -> None:
    """Another process holds the store's write lock (an import, sqlite3 by hand): nothing waits for it.

    The log takes every record at once; the store keeps them in memory, tries again
    every second and takes them when the lock is let go.
    """
    store_path = tmp_path / "audit.sqlite"
    holder = store.connect(store_path)
    log = AuditLog(tmp_path / "audit.jsonl", store_path, on_failure="closed")
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as an import's transaction holds it
        async with asyncio.timeout(WAIT):
            assert [await log.write(_record(n)) for n in range(5)] == [True] * 5  # one batch each
        assert [r["ref"] for r in read_records(tmp_path / "audit.jsonl")] == [f"ref{n}" for n in range(5)]
        wait_until(lambda: log.health()["store"]["backlog"] == 5, WAIT, "the store thread to keep them")
        health = log.health()["store"]
        assert health["failing"] is True and "locked" in health["last_error"]
        holder.execute("ROLLBACK")
        wait_until(lambda: log.health()["store"]["backlog"] == 0, WAIT, "the store to catch up")
        assert log.health()["store"]["failing"] is False
    finally:
        store.close(holder)
        log.close()
    assert [r["ref"] for r in _store_rows(store_path)] == [f"ref{n}" for n in range(5)]


async def test_a_failing_store_keeps_a_bounded_backlog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Memory stays bounded however long the store fails: past the cap the oldest are only in the log."""
    monkeypatch.setattr(audit, "STORE_BACKLOG", 3)
    (tmp_path / "not-a-db.sqlite").write_bytes(b"this is not a database, just text " * 200)
    log = AuditLog(tmp_path / "audit.jsonl", tmp_path / "not-a-db.sqlite")
    try:
        async with asyncio.timeout(WAIT):
            assert [await log.write(_record(n)) for n in range(5)] == [True] * 5
        wait_until(lambda: (log.health()["store"]["backlog"], log.health()["store"]["dropped"]) == (3, 2),
                   WAIT, "the backlog at its cap")
    finally:
        log.close()
    assert "the oldest are only in the log now" in caplog.text
    assert len(read_records(tmp_path / "audit.jsonl")) == 5


async def test_the_log_is_not_held_up_by_a_slow_store(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that takes its time (a slow disk) delays acknowledgements, never the log's own writes."""
    release = threading.Event()
    insert_rows = store.insert_rows

    def slow_insert(connection: sqlite3.Connection, rows: Any) -> int:
        release.wait(WAIT)
        return insert_rows(connection, rows)

    monkeypatch.setattr(store, "insert_rows", slow_insert)
    log_path = tmp_path / "audit.jsonl"
    log = AuditLog(log_path, tmp_path / "audit.sqlite")
    writes = []
    try:
        for n in range(3):
            writes.append(asyncio.ensure_future(log.write(_record(n))))
            await asyncio.sleep(0)  # queued
            wait_until(lambda n=n: len(read_records(log_path)) == n + 1, 10, f"ref{n} in the log")  # type: ignore[misc]
        assert not any(w.done() for w in writes)  # acknowledged only once the store has them too
        release.set()
        async with asyncio.timeout(WAIT):
            assert await asyncio.gather(*writes) == [True] * 3
    finally:
        release.set()
        log.close()
    assert [r["ref"] for r in _store_rows(tmp_path / "audit.sqlite")] == ["ref0", "ref1", "ref2"]


# The writer in a child: four coroutines write at once (so batches hold several records) and print
# "acked REF" (one write on fd 1) once each write returned; forever, or COUNT records each and then close.
CHILD = """
import asyncio, itertools, os, sys
from pathlib import Path
from clickguard.audit import writer as audit
from clickguard.decision.verdict import Finding

FOUND = [Finding("landing.thingbot", "listed", "bots", ("mirai",))]
COUNT = int(sys.argv[3]) if len(sys.argv) > 3 else None

async def writer(log: audit.AuditLog, name: str) -> None:
    for n in itertools.count() if COUNT is None else range(COUNT):
        ref = f"{name}-{n}"
        await log.write(audit.record(ref=ref, event="decision", client="10.0.0.5", user=None,
                                     url=f"http://203.0.113.9/{n}", action="block", findings=FOUND))
        os.write(1, f"acked {ref}\\n".encode())  # one write: one line in the trace

async def main() -> None:
    log = audit.AuditLog(Path(sys.argv[1]), Path(sys.argv[2]), retention=86400.0)
    await asyncio.gather(*(writer(log, f"w{i}") for i in range(4)))
    log.close()

asyncio.run(main())
"""


@pytest.mark.slow
def test_acknowledged_records_survive_sigkill_in_both_sinks(tmp_path: Path) -> None:
    """What was acknowledged is in both sinks after kill -9 (the kernel kept it: see the trace below)."""
    log_path, store_path = tmp_path / "audit.jsonl", tmp_path / "audit.sqlite"
    acked = kill_after_acks(CHILD, [str(log_path), str(store_path)], 300, cwd=tmp_path)  # while still writing
    assert len(acked) >= 300
    # Read-only, as the dashboard opens it: the WAL the dead writer left is recovered for reading.
    reader = store.connect(store_path, readonly=True)
    try:
        assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {ref for (ref,) in reader.execute("SELECT ref FROM decisions")}
        orphans = reader.execute("SELECT count(*) FROM findings WHERE decision_id NOT IN "
                                 "(SELECT id FROM decisions)").fetchone()
    finally:
        reader.close()
    assert [ref for ref in acked if ref not in stored] == []
    assert orphans == (0,)
    written = {r["ref"] for r in read_records(log_path)}
    assert [ref for ref in acked if ref not in written] == []
    # And the writer's next start opens it again and goes on.
    connection = store.connect(store_path)
    try:
        assert store.insert(connection, [_record(1)]) == (1, 0)
    finally:
        store.close(connection)


WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
SYNCS = {"fsync", "fdatasync"}


def _synced_between(calls: list[Syscall], path: str, written: Syscall, acked: Syscall) -> bool:
    """Whether a sync of path started after the write returned and returned before the ack started."""
    return any(c.name in SYNCS and c.path == path and c.result == "0" and written.end < c.start
               and c.end < acked.start for c in calls)


@pytest.mark.slow
def test_every_acknowledgement_follows_the_syncs_of_both_sinks(tmp_path: Path) -> None:
    """Acknowledged means on disk: the record written, then the file and the WAL synced, then the ack.

    The child prints "acked REF" once its write returned; strace (all threads, one
    output in the order the calls happened) shows where that ack falls among the
    writer thread's writes and syncs. A killed process keeps what the page cache
    holds, so only the syncs make a record survive the machine going down.
    """
    log_path, store_path = tmp_path / "audit.jsonl", tmp_path / "audit.sqlite"
    wal = f"{store_path}-wal"
    calls = traced_syscalls([sys.executable, "-c", CHILD, str(log_path), str(store_path), "10"],
                            tmp_path / "trace.txt", ",".join(sorted(WRITES | SYNCS)), cwd=tmp_path)
    acks = [c for c in calls if c.name == "write" and c.fd == 1 and (c.data or b"").startswith(b"acked ")]
    assert len(acks) == 40
    for ack in acks:
        assert ack.data is not None
        ref = ack.data.split()[1].decode()
        record = f'"ref":"{ref}"'.encode()  # in the JSON line, and in the store's record column
        for sink in (str(log_path), wal):
            # The first write holding the record is its own commit's (later ones rewrite its page).
            written = next((c for c in calls if c.name in WRITES and c.path == sink
                            and record in (c.data or b"")), None)
            assert written is not None and written.end < ack.start, f"{ref} acknowledged before {sink} had it"
            synced = _synced_between(calls, sink, written, ack)
            assert synced, f"{ref} acknowledged before {sink} was synced"
    assert {r["ref"] for r in read_records(log_path)} == {a.data.split()[1].decode() for a in acks if a.data}


def test_the_writers_store_is_wal_with_full_sync(tmp_path: Path) -> None:
    """The pragmas the durability rests on, read back from the writer's connection and from the file."""
    path = tmp_path / "audit.sqlite"
    writer = store.connect(path)  # as the audit writer opens it
    try:
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert writer.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: the WAL synced at each commit
        assert writer.execute("PRAGMA foreign_keys").fetchone() == (1,)
    finally:
        store.close(writer)
    header = path.read_bytes()[:100]
    assert header[:16] == b"SQLite format 3\0"
    assert (header[18], header[19]) == (2, 2)  # file format versions 2: WAL, kept in the file
    reader = store.connect(path, readonly=True)
    try:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        reader.close()


def _policy(tmp_path: Path, audit_section: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n" + textwrap.dedent(audit_section))
    return path


@pytest.mark.parametrize(("section", "log", "store_at"), [
    ("", "cwd/var/audit.jsonl", "cwd/var/audit.sqlite"),  # nothing said: both, in var/
    ("audit:\n  log: a.jsonl\n  store: db/a.sqlite\n", "a.jsonl", "db/a.sqlite"),  # next to the policy
    ("audit:\n  store: off\n", "cwd/var/audit.jsonl", None),
    ("audit:\n  log: off\n", None, "cwd/var/audit.sqlite"),
    ("audit:\n  log: off\n  store: off\n", None, None),
])
def test_runtime_follows_the_policys_sinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: str,
                                           log: str | None, store_at: str | None) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    rt = Runtime(state_dir=tmp_path / "var", certs_dir=tmp_path / "certs")
    rt.policy_path = _policy(tmp_path, section)
    try:
        rt.install(rt.build())
        assert rt.store_path == (tmp_path / store_at if store_at else None)
        assert (rt.audit.path if rt.audit else None) == (tmp_path / log if log else None)
        # The command line's paths win over the policy's.
        rt.audit_override, rt.store_override = tmp_path / "cli.jsonl", tmp_path / "cli.sqlite"
        rt.install(rt.build())
        assert rt.audit is not None and rt.audit.path == tmp_path / "cli.jsonl"
        assert rt.store_path == tmp_path / "cli.sqlite"
    finally:
        rt.close()


def test_runtime_applies_a_new_retention_without_a_new_writer(tmp_path: Path) -> None:
    rt = Runtime(state_dir=tmp_path / "var", certs_dir=tmp_path / "certs")
    rt.policy_path = _policy(tmp_path, "audit:\n  log: a.jsonl\n  store: a.sqlite\n")
    try:
        rt.install(rt.build())
        writer = rt.audit
        assert writer is not None and writer.retention == 90 * DAY
        rt.policy_path.write_text(rt.policy_path.read_text() + "  retention: 7d\n")
        rt.install(rt.build())
        assert rt.audit is writer and writer.retention == 7 * DAY
    finally:
        rt.close()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clickguard.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_cli_import(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_jsonl(path, [json.dumps(_record(n)) + "\n" for n in range(3)] + ["garbage\n"])
    first = _cli("audit", "import", str(path), "--store", "s.sqlite", cwd=tmp_path)
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout == "imported 3 records, skipped 1 (already in the store or not audit records)\n"
    again = _cli("audit", "import", str(path), "--store", "s.sqlite", cwd=tmp_path)
    assert again.stdout == "imported 0 records, skipped 4 (already in the store or not audit records)\n"


def test_cli_import_defaults_to_the_policys_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "audit.jsonl"
    _write_jsonl(path, [json.dumps(_record(1)) + "\n"])
    # No policies/default.yaml here: the built-in default, var/ under the working directory.
    assert cli.main(["audit", "import", str(path)]) == 0
    assert (tmp_path / "var" / "audit.sqlite").exists()
    policy = _policy(tmp_path, "audit:\n  store: elsewhere.sqlite\n")
    assert cli.main(["audit", "import", str(path), "--policy", str(policy)]) == 0
    assert _store_rows(tmp_path / "elsewhere.sqlite")[0]["ref"] == "ref1"
    off = _policy(tmp_path, "audit:\n  store: off\n")
    assert cli.main(["audit", "import", str(path), "--policy", str(off)]) == 2
    assert "--store" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["missing.jsonl", "."], ids=["missing", "directory"])
def test_cli_import_of_an_unreadable_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], name: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["audit", "import", name, "--store", "s.sqlite"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("clickguard audit import: cannot read ") and err.count("\n") == 1
    assert not (tmp_path / "s.sqlite").exists()  # no empty store left behind


def test_cli_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    connection = store.connect(tmp_path / "s.sqlite")
    now = time.time()
    store.insert(connection, [_record(1, ts=now - 40 * DAY), _record(2, ts=now - DAY)])
    store.close(connection)
    assert cli.main(["audit", "prune", "--before", "30d", "--store", "s.sqlite"]) == 0
    assert capsys.readouterr().out == "deleted 1 records older than 30.0d\n"
    assert [r["ref"] for r in _store_rows(tmp_path / "s.sqlite")] == ["ref2"]
    with pytest.raises(SystemExit) as exited:
        cli.main(["audit", "prune", "--before", "soon", "--store", "s.sqlite"])
    assert exited.value.code == 2 and "--before" in capsys.readouterr().err


def _store_rows(path: Path) -> list[dict[str, Any]]:
    reader = store.connect(path, readonly=True)
    try:
        return _columns(reader)
    finally:
        reader.close()


# Through the real proxy.

def test_proxy_records_a_block_in_the_store_and_import_gives_the_same_rows(tmp_path: Path,
                                                                           certs: Path) -> None:
    (tmp_path / "thingbots.txt").write_text("127.0.0.3\n")
    policy = _policy(tmp_path, "feeds:\n  - {name: thingbots, format: ip, path: thingbots.txt}\n")
    store_path = tmp_path / "proxy.sqlite"
    proxy: Proxy | None = None
    with upstream("127.0.0.3") as bad, upstream("127.0.0.4") as good:
        try:
            proxy = start_proxy(tmp_path, policy, certs, "--audit-store", str(store_path))
            blocked = proxy.get(f"{bad.base}/payload.sh", HTML)
            assert blocked.status == 403
            ref = blocked.headers["x-clickguard-ref"]
            # Acknowledged before the block page went out: in the store already, with its reasons.
            [row] = [r for r in _store_rows(store_path) if r["ref"] == ref]
            assert (row["event"], row["action"], row["host"]) == ("decision", "block", "127.0.0.3")
            assert row["findings"] == [("landing.thingbot", "thingbots", None)]
            assert json.loads(row["record"])["reasons"] == ["landing.thingbot"]
            assert proxy.get(f"{good.base}/page", HTML).status == 200
            wait_until(lambda: len(proxy.audit()) == 2, 10, "the allowed navigation's record")
        finally:
            if proxy is not None:
                proxy.stop()
    rows = _store_rows(store_path)
    assert len(rows) == 2 and {r["action"] for r in rows} == {"block", "allow"}
    fresh = tmp_path / "fresh.sqlite"
    result = _cli("audit", "import", str(proxy.audit_path), "--store", str(fresh), cwd=tmp_path)
    assert result.stdout.startswith("imported 2 records, skipped 0")
    assert _store_rows(fresh) == rows
