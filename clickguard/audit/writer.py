"""The audit log: every decision in a JSON Lines file and in the SQLite store, durable before acknowledged.

Records are written by one thread off the event loop. The writer takes every
record queued so far, writes them to the file and calls fdatasync once, and
inserts them into the store (`clickguard.store`) in one transaction (group
commit); only then does it resolve each caller's future. A page that shows a
reference id, or a response let through, is never ahead of its record in
either sink, so a crash loses nothing that was acknowledged. A sink that fails
fails the futures of its batch (OSError; `AuditError` for the store) after
logging why; each sink still keeps what it could take. An exception the writer
does not expect (a bug) is logged with its traceback and fails the batch it
met (`AuditError`), or delays the prune it met; the thread goes on, so no
later write waits forever for a writer that died.

The same thread keeps the store's retention: at start-up and then every
`prune_every` seconds it deletes what is older than `retention`, a few
thousand records a transaction, between batches of new records. The file is
never pruned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickguard.audit import store
from clickguard.decision.verdict import Finding
from clickguard.errors import AuditError

logger = logging.getLogger(__name__)

PRUNE_BATCH = 5000  # decisions a prune transaction deletes: tens of milliseconds of writer time

type _Entry = tuple[str, dict[str, Any], asyncio.Future[None], asyncio.AbstractEventLoop]
type _Item = _Entry | None


def new_ref() -> str:
    """A short reference id that a user can read out to the help desk."""
    return secrets.token_hex(6)


def record(*, ref: str, event: str, client: str | None, user: str | None, url: str,
           action: str, findings: Iterable[Finding], origin_ip: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """One audit record with the fields DESIGN.md fixes, plus any extra context."""
    found = list(findings)
    out: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "ref": ref,
        "event": event,
        "client": client,
        "user": user,
        "url": url,
        "action": action,
        "reasons": list(dict.fromkeys(f.code for f in found)),
        "details": [f.as_dict() for f in found],
        "origin_ip": origin_ip,
    }
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


class AuditLog:
    """Commits records to a JSON Lines file and to the store from one writer thread, then acknowledges."""

    def __init__(self, path: Path | None, store_path: Path | None = None, *,
                 retention: float | None = None, prune_every: float = 3600.0) -> None:
        self.path = path  # the JSON Lines file; None: no file
        self.store_path = store_path  # the SQLite store; None: no store
        self.retention = retention  # seconds the store keeps a record; None: forever (may change live)
        self.prune_every = prune_every
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._store: sqlite3.Connection | None = None  # opened and used by the writer thread only
        self.written = 0  # records acknowledged: in every sink
        self.pruned = 0  # records the retention deleted from the store
        self._pruning = 0  # deleted so far in this round of prune batches, for one log line

    def start(self) -> None:
        """Open the file and start the writer thread (the store is opened by the thread)."""
        if self._thread is not None:
            return
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a failed write leaves nothing behind to be written later by surprise.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._thread = threading.Thread(target=self._run, name="clickguard-audit", daemon=True)
        self._thread.start()

    async def write(self, entry: Mapping[str, Any]) -> None:
        """Queue one record and return once every sink has it; OSError if one could not take it."""
        if self._thread is None:
            self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        # ASCII-only JSON: a lone surrogate (mitmproxy keeps undecodable bytes that way)
        # cannot make the line unwritable. The store keeps the same text as the file.
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        self._queue.put((line, dict(entry), future, loop))
        await future

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the file and the store."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError as e:
                logger.error("audit log %s: close failed: %s", self.path, e)
            self._fd = None

    def _run(self) -> None:
        """Writer thread: group commit until told to stop; prune the store when due."""
        next_prune = time.monotonic()  # at start-up, then every prune_every
        stop = False
        if self.store_path is not None:
            # Created now, not at the first record: readers (the dashboard) can open it at once.
            try:
                self._connection()
            except (sqlite3.Error, OSError) as e:
                logger.error("audit store %s: cannot open: %s", self.store_path, e)
            except Exception:  # a bug: the first batch meets it again and fails with it
                logger.exception("audit store %s: cannot open", self.store_path)
        try:
            while not stop:
                if time.monotonic() >= next_prune:
                    try:
                        next_prune = self._prune_step()
                    except Exception:  # a bug must not end the writer: every later flow would hang
                        logger.exception("audit writer: pruning the store failed")
                        self._close_store()
                        next_prune = time.monotonic() + self.prune_every
                try:
                    item = self._queue.get(True, max(0.0, next_prune - time.monotonic()))
                except queue.Empty:
                    continue
                batch: list[_Entry] = []
                while True:
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    try:
                        self._commit(batch)
                    except Exception as e:  # a bug must not end the writer: every later flow would hang
                        logger.exception("audit writer: a batch of %d records failed", len(batch))
                        self._close_store()  # the bug may have left a transaction open
                        _settle_batch(batch, [AuditError(f"audit writer failed: {e!r}")] * len(batch))
        finally:
            self._close_store()

    def _connection(self) -> sqlite3.Connection:
        """The writer's store connection, opened (and the schema created) at first use."""
        if self._store is None:
            assert self.store_path is not None
            self._store = store.connect(self.store_path)
        return self._store

    def _close_store(self) -> None:
        """Close the store connection; the next batch opens it again."""
        connection, self._store = self._store, None
        if connection is not None:
            try:
                store.close(connection)
            except sqlite3.Error as e:
                logger.error("audit store %s: close failed: %s", self.store_path, e)

    def _commit(self, batch: list[_Entry]) -> None:
        """Write and fdatasync the batch to the file, insert it into the store, then settle its futures."""
        errors: list[OSError | None] = [None] * len(batch)
        if self._fd is not None:
            data = "".join(entry[0] for entry in batch).encode("utf-8", "backslashreplace")
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                os.fdatasync(self._fd)  # data and the size it needs, not the timestamps
            except OSError as e:
                logger.error("audit log %s: write failed: %s", self.path, e)
                errors = [e] * len(batch)
        if self.store_path is not None:
            self._store_batch(batch, errors)
        self.written += errors.count(None)
        _settle_batch(batch, errors)

    def _store_batch(self, batch: list[_Entry], errors: list[OSError | None]) -> None:
        """Insert the batch into the store in one transaction; note each record it could not take."""
        rows: list[store.Prepared] = []
        taken: list[int] = []
        for i, (line, entry, _future, _loop) in enumerate(batch):
            try:
                rows.append(store.row_of(entry, line[:-1]))
            except (ValueError, TypeError, AttributeError) as e:
                logger.error("audit store %s: record %s not stored: %s", self.store_path, entry.get("ref"), e)
                errors[i] = errors[i] or AuditError(f"audit store: record not stored: {e}")
                continue
            taken.append(i)
        if not rows:
            return
        try:
            store.insert_rows(self._connection(), rows)
        except (sqlite3.Error, OSError) as e:
            logger.error("audit store %s: write failed: %s", self.store_path, e)
            error = AuditError(f"audit store {self.store_path}: {e}")
            for i in taken:
                errors[i] = errors[i] or error
            # A fresh connection next time: the file may have been replaced, or the error be sticky.
            self._close_store()

    def _prune_step(self) -> float:
        """Delete one batch of records past retention from the store; when the next batch is due."""
        now = time.monotonic()
        retention = self.retention
        if self.store_path is None or retention is None:
            return now + self.prune_every
        try:
            deleted = store.prune(self._connection(), time.time() - retention, PRUNE_BATCH)
        except (sqlite3.Error, OSError) as e:
            logger.error("audit store %s: prune failed: %s", self.store_path, e)
            self._close_store()
            return now + self.prune_every
        self.pruned += deleted
        self._pruning += deleted
        if deleted == PRUNE_BATCH:
            return now  # more is due: the next batch right after the records queued meanwhile
        if self._pruning:
            logger.info("audit store %s: deleted %d records older than %g days",
                        self.store_path, self._pruning, retention / 86400)
            self._pruning = 0
        return now + self.prune_every


def _settle_batch(batch: list[_Entry], errors: list[OSError | None]) -> None:
    """Hand each caller its outcome on its own loop: one wake-up per loop and batch, not per record."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], OSError | None]]] = {}
    for (_line, _entry, future, loop), error in zip(batch, errors, strict=True):
        by_loop.setdefault(loop, []).append((future, error))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:  # that loop is closed: nobody waits for these records any more
            logger.warning("audit writer: %d records done for an event loop now closed", len(settled))


def _settle(settled: list[tuple[asyncio.Future[None], OSError | None]]) -> None:
    """Resolve callers' futures on their own loop (one may have been cancelled meanwhile)."""
    for future, error in settled:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a JSON Lines audit file (a torn last line is ignored)."""
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                out.append(json.loads(line))
    return out


