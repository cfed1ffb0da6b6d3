"""The audit store: every decision in SQLite (WAL), indexed for the reports and the dashboard.

One row a decision in ``decisions`` (the columns reports filter and group by,
plus the whole record as JSON) and one row a finding and tag in ``findings``
(so "by reason code", "by feed" and "by tag" are plain GROUP BYs). Records are
written in batches, one transaction each, by the audit writer thread; a
committed transaction survives a crash (WAL with synchronous=FULL), and
``kill -9`` leaves a database SQLite opens as it was at the last commit.

Importing a JSON Lines log written earlier is idempotent: a record is known by
its reference id and event.

Retention is a `prune` of the oldest decisions in short transactions, so the
audit writer (the same thread, see `audit.AuditLog`) never waits long for it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from clickguard import files
from clickguard.audit import aggregates

# 2: decisions.group_name (policy groups); a store of version 1 gets the column when a writer opens it.
# 3: the hourly aggregates reports read (clickguard.audit.aggregates); a writer builds them in an older store.
SCHEMA_VERSION = 3
# Audit events that are not decisions about what users browse: kept in the JSON Lines log
# only, so reports and the dashboard count browsing (a refused dashboard login is no "block").
NOT_STORED = frozenset({"admin_login"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,               -- Unix seconds
    ref TEXT NOT NULL,              -- the reference id pages show; a click's id for its click record
    event TEXT NOT NULL,            -- decision, click, hop, continue, response, tunnel, connected
    client TEXT,
    user TEXT,                      -- the proxy user, when the proxy authenticated one
    group_name TEXT,                -- the policy group whose rules applied (the record's "group")
    recipient TEXT,                 -- the click link's recipient (plain or hashed), for clicks
    url TEXT NOT NULL,
    host TEXT,
    action TEXT NOT NULL,           -- allow, warn, block
    origin_ip TEXT,                 -- the e-mail's origin, for clicks and their hops
    click_id TEXT,
    hop INTEGER,
    device_class TEXT,              -- the appliance class inspection found, if any
    record TEXT NOT NULL            -- the whole audit record, JSON
);
CREATE UNIQUE INDEX IF NOT EXISTS decisions_ref ON decisions(ref, event);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions(ts);
CREATE INDEX IF NOT EXISTS decisions_event ON decisions(event, ts);
CREATE INDEX IF NOT EXISTS decisions_host ON decisions(host, ts);
CREATE INDEX IF NOT EXISTS decisions_click ON decisions(click_id);
CREATE INDEX IF NOT EXISTS decisions_user ON decisions(user, ts);
-- Reports and the dashboard filtered by group; partial, so decisions without a group cost nothing.
CREATE INDEX IF NOT EXISTS decisions_group ON decisions(group_name, ts) WHERE group_name IS NOT NULL;
-- Reports (clickguard.report): blocks and warns counted per hour or day from the index alone,
-- and the blocked or warned clicks of the "most targeted" table found without a scan.
CREATE INDEX IF NOT EXISTS decisions_action ON decisions(action, ts);
-- Reports: landings on appliances over a time range; partial, so it holds only the rows
-- inspection classed, and covering, so the rows themselves are never read.
CREATE INDEX IF NOT EXISTS decisions_device ON decisions(ts, device_class, host)
    WHERE device_class IS NOT NULL;
CREATE TABLE IF NOT EXISTS findings (
    decision_id INTEGER NOT NULL REFERENCES decisions(id) ON DELETE CASCADE,
    ts REAL NOT NULL,               -- the decision's, repeated so time ranges need no join
    code TEXT NOT NULL,             -- reason code
    feed TEXT,
    tag TEXT                        -- one row a tag; NULL for a finding without tags
);
CREATE INDEX IF NOT EXISTS findings_code ON findings(code, ts);
CREATE INDEX IF NOT EXISTS findings_decision ON findings(decision_id);
-- Reports: by reason, feed and tag, and the Thingbot share, read from the index alone
-- (findings_code above is its prefix, kept for stores created before it).
CREATE INDEX IF NOT EXISTS findings_report ON findings(code, ts, decision_id, feed, tag);
"""
# The schema a store is made with; reports over nodes make their private union store with it too.
SCHEMA = _SCHEMA


class Row(NamedTuple):
    """The decisions columns of one record, in table order (without id)."""

    ts: float
    ref: str
    event: str
    client: str | None
    user: str | None
    group_name: str | None
    recipient: str | None
    url: str
    host: str | None
    action: str
    origin_ip: str | None
    click_id: str | None
    hop: int | None
    device_class: str | None
    record: str


type FindingRow = tuple[str, str | None, str | None]  # code, feed, tag
type Prepared = tuple[Row, list[FindingRow]]

_INT64 = 2**63


def timestamp(value: object) -> float:
    """A record's ts (ISO 8601, as the audit log writes it, or Unix seconds) as Unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # The audit log writes UTC; a zone-less time from elsewhere is read as UTC, not local time.
        seconds = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if not math.isfinite(seconds):  # json.loads accepts NaN, which SQLite would store as NULL
        raise ValueError(f"not a timestamp: {value!r}")
    return seconds


def _clean(text: str) -> str:
    """Text SQLite can bind: a lone surrogate (undecodable bytes, as mitmproxy keeps them) escaped."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _text(value: object) -> str | None:
    """A column value as text, None for missing."""
    return None if value is None else _clean(str(value))


def _host_of(url: str) -> str | None:
    """The host of a URL, for records that do not name it (refused click links)."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def row_of(record: Mapping[str, Any], text: str | None = None) -> Prepared:
    """The decisions row and the (code, feed, tag) rows of one audit record; ValueError if unusable.

    ``text`` is the record's JSON when the caller has it already (the audit writer does).
    """
    for key in ("ts", "ref", "event", "url", "action"):
        if record.get(key) in (None, ""):
            raise ValueError(f"missing {key}")
    inspection = record.get("inspection") or {}
    fingerprint = inspection.get("fingerprint") if isinstance(inspection, dict) else None
    device_class = None
    if isinstance(fingerprint, dict) and fingerprint.get("appliance"):
        device_class = _text(fingerprint.get("class"))
    hop = record.get("hop")
    if not isinstance(hop, int) or isinstance(hop, bool) or not -_INT64 <= hop < _INT64:
        hop = None
    url = _clean(str(record["url"]))
    host = _text(record.get("host")) or _host_of(url)
    if text is None:
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=True)
    row = Row(
        timestamp(record["ts"]), _clean(str(record["ref"])), _clean(str(record["event"])),
        _text(record.get("client")), _text(record.get("user")), _text(record.get("group")),
        _text(record.get("recipient")), url,
        host, _clean(str(record["action"])), _text(record.get("origin_ip")), _text(record.get("click_id")),
        hop, device_class, text)
    findings: list[FindingRow] = []
    details = record.get("details")
    if isinstance(details, list) and details:
        for finding in details:
            if not isinstance(finding, dict) or not finding.get("code"):
                continue
            code, feed = _clean(str(finding["code"])), _text(finding.get("feed"))
            tags = finding.get("tags")
            # One row a tag, so "by tag" is a GROUP BY; a finding without tags is one row.
            for tag in tags if isinstance(tags, list) and tags else [None]:
                findings.append((code, feed, _text(tag)))
    else:  # a record that kept only its codes
        reasons = record.get("reasons")
        if isinstance(reasons, list):
            findings = [(_clean(str(code)), None, None) for code in reasons if code]
    return row, findings


def connect(path: Path, *, readonly: bool = False, timeout: float = 10.0) -> sqlite3.Connection:
    """A connection to the store; the writer's creates the file (0640) and the schema, readers never write.

    ``timeout`` is how long a writer waits for a lock another one holds (an
    import, a prune) before failing: the proxy's audit writer waits briefly and
    tries again later, a command waits longer.
    """
    if readonly:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                     check_same_thread=False)
        connection.execute("PRAGMA query_only=ON")
        return connection
    _make_private(path)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{path}: store schema version {version} is newer than this clickguard's ({SCHEMA_VERSION})")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")  # a commit is durable before it is acknowledged
        connection.execute("PRAGMA foreign_keys=ON")
        if version < SCHEMA_VERSION:  # a write: not at every connect, so a busy store still opens
            _migrate(connection)
        connection.executescript(_SCHEMA)  # what exists is left alone, without taking the write lock
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring a new store, or one an older clickguard made, up to this schema in one transaction.

    Version 1 had no group_name: added with ALTER TABLE ... ADD COLUMN, which SQLite does
    without rewriting the table (existing rows keep NULL). Versions 1 and 2 had no
    aggregates: built from every record, once (about 20 s a million records); a second
    writer opening the store meanwhile waits, then finds it done.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            columns = {row[1] for row in connection.execute("PRAGMA table_info(decisions)")}
            if columns and "group_name" not in columns:
                connection.execute("ALTER TABLE decisions ADD COLUMN group_name TEXT")
            for statement in _statements(_SCHEMA):  # executescript would commit first
                connection.execute(statement)
            aggregates.create(connection)
            aggregates.rebuild(connection)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        _rollback(connection)
        raise


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script (semicolons in its comments included)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""


def has_aggregates(connection: sqlite3.Connection) -> bool:
    """Whether the store keeps the aggregates up to date (a writer of this version has opened it)."""
    return bool(connection.execute("PRAGMA user_version").fetchone()[0] >= 3)


def has_groups(connection: sqlite3.Connection) -> bool:
    """Whether the store has the group_name column (a version 1 store no writer has opened since has not)."""
    return any(row[1] == "group_name" for row in connection.execute("PRAGMA table_info(decisions)"))


def _make_private(path: Path) -> None:
    """Create the database file 0640 before SQLite does (its -wal and -shm files take its mode).

    A store, -wal or -shm left world-readable by an older version is made private too.
    """
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if name is not path and not name.exists():
            continue
        try:
            fd = files.open_private(name, os.O_RDONLY)
        except FileNotFoundError:
            continue  # a -wal or -shm that another connection's close just removed
        os.close(fd)


def close(connection: sqlite3.Connection) -> None:
    """Close a writer's connection, leaving the query planner statistics up to date."""
    try:
        # Bounded: an unbounded ANALYZE of a large store would hold up the proxy's shutdown.
        connection.execute("PRAGMA analysis_limit=1000")
        connection.execute("PRAGMA optimize")
    finally:
        connection.close()


def _rollback(connection: sqlite3.Connection) -> None:
    """Roll back what is open (a failed COMMIT may already have ended the transaction)."""
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def insert_rows(connection: sqlite3.Connection, rows: Sequence[Prepared]) -> int:
    """Insert prepared rows (`row_of`) and their aggregates in one transaction; how many were new."""
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        added = aggregates.Batch()
        inserted = 0
        for row, findings in rows:
            if row.event in NOT_STORED:
                continue
            cursor.execute("INSERT OR IGNORE INTO decisions (ts, ref, event, client, user, group_name, "
                           "recipient, url, host, action, origin_ip, click_id, hop, device_class, record) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
            if cursor.rowcount == 0:
                continue  # there already (the same ref and event), and counted then
            if findings:
                decision_id = cursor.lastrowid
                cursor.executemany("INSERT INTO findings (decision_id, ts, code, feed, tag) "
                                   "VALUES (?,?,?,?,?)", [(decision_id, row.ts, *f) for f in findings])
            added.decision(row, findings)
            inserted += 1
        added.write(cursor)
        cursor.execute("COMMIT")
    except BaseException:
        _rollback(connection)
        raise
    return inserted


def insert(connection: sqlite3.Connection, records: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """Insert records in one transaction; (inserted, skipped: already there or unusable)."""
    rows: list[Prepared] = []
    unusable = 0
    for record in records:
        try:
            rows.append(row_of(record))
        except (ValueError, TypeError, AttributeError):
            unusable += 1
    inserted = insert_rows(connection, rows) if rows else 0
    return inserted, unusable + len(rows) - inserted


def prune(connection: sqlite3.Connection, before: float, limit: int | None = None) -> int:
    """Delete up to `limit` decisions and their findings older than `before` (Unix time); how many."""
    # The same ordered subquery twice in one transaction picks the same decisions both times;
    # findings go by decision_id (indexed) rather than by their own ts (not indexed alone).
    oldest = "SELECT id FROM decisions WHERE ts < ? ORDER BY ts, id LIMIT ?"
    args = (before, -1 if limit is None else limit)
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        newest = cursor.execute(f"SELECT max(ts) FROM decisions WHERE id IN ({oldest})", args).fetchone()[0]
        cursor.execute(f"DELETE FROM findings WHERE decision_id IN ({oldest})", args)
        cursor.execute(f"DELETE FROM decisions WHERE id IN ({oldest})", args)
        deleted = cursor.rowcount
        if newest is not None:
            aggregates.pruned(cursor, newest)
        cursor.execute("COMMIT")
    except BaseException:
        _rollback(connection)
        raise
    return deleted


def read_jsonl(path: Path) -> Iterator[dict[str, Any] | None]:
    """The records of a JSON Lines log; None for a line that is not a JSON object (torn or foreign)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                yield None  # a torn last line: the writer died mid-record
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: absurdly nested garbage
                yield None
                continue
            yield value if isinstance(value, dict) else None


def import_jsonl(connection: sqlite3.Connection, path: Path, batch: int = 5000) -> tuple[int, int]:
    """Load a JSON Lines audit log into the store; (imported, skipped). Importing twice adds nothing."""
    imported = skipped = 0
    pending: list[dict[str, Any]] = []
    for record in read_jsonl(path):
        if record is None:
            skipped += 1
            continue
        pending.append(record)
        if len(pending) >= batch:
            done, left = insert(connection, pending)
            imported, skipped, pending = imported + done, skipped + left, []
    if pending:
        done, left = insert(connection, pending)
        imported, skipped = imported + done, skipped + left
    return imported, skipped
