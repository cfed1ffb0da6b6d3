"""The audit log: every decision in a JSON Lines file and in the SQLite store, durable before acknowledged.

Two threads write, off the event loop. The log thread takes every record
queued so far, appends them to the file and calls fdatasync once (group
commit); the store thread inserts records into the store in one transaction;
only once both have a record is its caller's future resolved. A page that
shows a reference id, or a response let through, is never ahead of its record,
so a crash loses nothing that was acknowledged. Normally the log thread hands
each batch it committed to the store thread. A record that finds the log thread
idle (one click at a time) is given to both threads at once instead (`_Join`),
under ``on_failure: open``: its acknowledgement waits for the slower of the two
commits, not for their sum (measured here: fdatasync 0.23 ms, an SQLite commit
0.35 ms at the median, each with a long tail on a busy disk). Under load the
hand-over stays, as it groups what the store commits. Under ``closed`` the store
takes only what the file took, always through the log thread. While records
arrive during earlier ones' commits (`_Grouping`), the log thread holds each
batch open up to `GROUP_WINDOW` for more, as a record alone costs the proxy a
sync and a transaction of CPU: at 500-600 navigations a second that saved 8-10%
of the proxy's CPU per navigation. Records one at a time are never held.

The file is the primary record. A record is *recorded* once the file has it
(with the log off: once the store has it); `write` says whether it was, and
under ``on_failure: closed`` raises `AuditError` when it was not, so the proxy
refuses what it cannot record. The store never holds the file up: it waits
`STORE_BUSY_TIMEOUT` for a lock another process holds (an import, a prune by
hand), then keeps the rows in memory (up to `STORE_BACKLOG`) and tries again
every `STORE_RETRY` seconds; while it fails, records are acknowledged once the
file has them. What it still misses when the proxy stops is in the file, for
`clickguard audit import`. Each sink's state (failing or not, its last error and
when) is in `AuditLog.health()`.

A write that fails (a full disk) is cut back to where its batch started, so
the next acknowledged record never joins a torn line; a file that ends torn
anyway (a crash mid-write) gets a newline first. The file is reopened when its
path names another file (logrotate's ``create`` moved it) or none, and on
`AuditLog.reopen()` (SIGHUP); ``copytruncate`` needs nothing: it is opened
O_APPEND, so writes go on at the new end. Files are created private
(`clickguard.files`). Several processes (`clickguard run --workers N`) may write the
same file and store: each batch is appended under an flock (`_LogFile.append`), and the
store is SQLite in WAL mode, each transaction waiting `STORE_BUSY_TIMEOUT` for another's.

An exception the writer does not expect (a bug) is logged with its traceback
and fails the records it met (`AuditError`), or delays the prune it met; the
threads go on, so no later write waits forever for a writer that died.

With ``audit.syslog`` set, every record is also sent to a SIEM (`clickguard.audit.siem`):
once its callers are acknowledged, the thread that settled it hands it to the syslog sender's
bounded queue (an append; no formatting, no I/O on the writer threads), which sends it from a
thread of its own. That is best effort: it never delays an acknowledgement, and an outage only
counts and drops. Under ``on_failure: closed`` a record that was not recorded is not sent (its
request was refused, whatever the record says).

The store thread also keeps the retention: at start-up and then every
`prune_every` seconds it deletes what is older than `retention`, a few thousand
records a transaction, between batches of new records. The file is never pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import queue
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from clickguard import files
from clickguard.audit import store
from clickguard.audit.siem import SyslogSender
from clickguard.decision.verdict import Finding
from clickguard.errors import AuditError
from clickguard.policy.sections import SyslogConfig

logger = logging.getLogger(__name__)

PRUNE_BATCH = 5000  # decisions a prune transaction deletes: tens of milliseconds of writer time
STORE_BUSY_TIMEOUT = 0.5  # seconds the store thread waits for a lock another process holds
STORE_RETRY = 1.0  # seconds before a store that failed is tried again
STORE_BACKLOG = 20_000  # rows (~1.5 KB each) kept for a failing store; older ones: `audit import`
CATCH_UP_BATCH = 5000  # backlog rows a transaction takes besides the new ones

# Group commit under load: how long the log thread holds a batch open for more records, and how
# many a held batch may gather before it is committed at once.
GROUP_WINDOW = 0.002  # seconds; what a record may wait, only while records overlap their commits
GROUP_MAX = 64

type OnFailure = Literal["open", "closed"]
type _Outcome = OSError | None  # None: recorded; else why not


class _Join:
    """A record the file and the store take at once: acknowledged when both did (or the store fails)."""

    __slots__ = ("error", "parts")

    def __init__(self) -> None:
        self.parts = 2  # sinks still writing it; 0 once acknowledged
        self.error: _Outcome = None  # the file's outcome: the file is the record


class _Grouping:
    """Whether the log thread holds a batch open for more records before committing it.

    Records arrive one by one when each caller waits for its own before sending
    the next (clicks one at a time, however fast): a batch held open would only
    add its window to every one. Under load they arrive while earlier ones are
    being committed, and each commit taken alone costs the proxy CPU (a sync
    and a transaction a record) that grouping saves. So the log thread holds a
    batch open for up to `GROUP_WINDOW` only while recent batches saw another
    record arrive during their window or commit: a moving score, each batch
    counting 1/8, on from 0.3. One record that finds nothing overlapping it
    takes the score down; at 100 records a second it stays off.
    """

    __slots__ = ("score",)
    WEIGHT = 0.125
    ON = 0.3

    def __init__(self) -> None:
        self.score = 0.0  # read by the event loop without a lock: a hint

    @property
    def on(self) -> bool:
        """Whether to hold the next batch open."""
        return self.score >= self.ON

    def saw(self, overlapped: bool) -> None:
        """Count one batch: whether another record arrived while it was held open or committed."""
        self.score += ((1.0 if overlapped else 0.0) - self.score) * self.WEIGHT


type _Entry = tuple[str, dict[str, Any], asyncio.Future[None], asyncio.AbstractEventLoop, _Join | None]


class _Handed(NamedTuple):
    """A batch the log thread hands to the store thread."""

    batch: list[_Entry]
    log_error: OSError | None  # why the file did not take it; None if it did, or there is no file
    settled: bool  # the futures are resolved already: nobody waits for the store


# One encoder for every line: json.dumps with non-default separators builds a new one per call.
# ASCII-only (ensure_ascii, the default): a lone surrogate cannot make the line unwritable.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_stamped: tuple[int, str] = (-1, "")  # the last millisecond formatted, and its text


def _timestamp() -> str:
    """Now in UTC to the millisecond, ISO 8601 with Z, formatted once a millisecond (records burst)."""
    global _stamped
    ms = time.time_ns() // 1_000_000
    last, text = _stamped
    if ms != last:
        # ms / 1000 is within a microsecond of the millisecond: fromtimestamp rounds it back exactly.
        at = datetime.fromtimestamp(ms / 1000, UTC)
        text = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        _stamped = (ms, text)  # one assignment: threads see the old pair or the new one
    return text


def new_ref() -> str:
    """A short reference id that a user can read out to the help desk."""
    return secrets.token_hex(6)


def record(*, ref: str, event: str, client: str | None, user: str | None, url: str,
           action: str, findings: Iterable[Finding], origin_ip: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """One audit record with the fields DESIGN.md fixes, plus any extra context."""
    found = list(findings)
    out: dict[str, Any] = {
        "ts": _timestamp(),
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


@dataclass
class SinkHealth:
    """What one sink last did: failing or not, and its last error with when (kept after it recovers)."""

    path: Path
    failing: bool = False
    last_error: str | None = None
    last_error_at: float | None = None  # Unix time
    failures: int = 0  # batches (or opens) that failed

    def failed(self, error: BaseException) -> None:
        """Note a failure."""
        self.failing = True
        self.last_error = str(error) or repr(error)
        self.last_error_at = time.time()
        self.failures += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the status the proxy publishes."""
        return {"path": str(self.path), "failing": self.failing, "last_error": self.last_error,
                "last_error_at": self.last_error_at, "failures": self.failures}


def _ends_torn(fd: int) -> bool:
    """Whether a regular file's last byte is not a newline (a crash or a failed write mid-line)."""
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_size > 0 and os.pread(fd, 1, info.st_size - 1) != b"\n"


@contextlib.contextmanager
def _appending(fd: int) -> Iterator[None]:
    """An exclusive flock on the log while one process appends; none where the file system has no locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        locked = True
    except OSError as e:  # ENOLCK (some network file systems): one process writing is still safe
        logger.debug("audit log: no lock (%s), appending without", e)
        locked = False
    try:
        yield
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)


class _LogFile:
    """The JSON Lines file: whole batches appended and synced, never a torn line before a record, rotated.

    Used by the log thread only, except `reopen`, which any thread may call.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.health = SinkHealth(path)
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file open
        self._torn = False  # the file ends inside a line: the next batch starts with a newline
        self._reopen = threading.Event()

    def open(self) -> None:
        """Open (creating it 0640) the file the path names now; OSError if it cannot be."""
        self.close()
        # Read and write: the last byte tells whether a crash left a torn line. Unbuffered: a
        # failed write leaves nothing behind to be written later by surprise.
        fd = files.open_private(self.path, os.O_RDWR | os.O_APPEND)
        info = os.fstat(fd)
        self._fd, self._identity = fd, (info.st_dev, info.st_ino)
        self._torn = stat.S_ISREG(info.st_mode) and info.st_size > 0 \
            and os.pread(fd, 1, info.st_size - 1) != b"\n"

    def close(self) -> None:
        """Close the file, if open."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as e:
                logger.error("audit log %s: close failed: %s", self.path, e)

    def reopen(self) -> None:
        """Open the path again before the next batch (after a rotation; safe from any thread)."""
        self._reopen.set()

    def append(self, data: bytes) -> None:
        """Append whole lines and fdatasync; OSError with the file cut back to where it was.

        Several processes (`clickguard run --workers N`) may append to one file: the write and
        any cut back happen under an exclusive flock, so a batch never joins a line another
        process left torn, and a cut back never takes another's lines. The fdatasync runs
        outside it, so the workers' syncs overlap.
        """
        fd = self._current()
        with _appending(fd):
            if self._torn or _ends_torn(fd):
                data = b"\n" + data
            start = os.fstat(fd).st_size
            done = 0
            try:
                view = memoryview(data)
                while done < len(data):
                    done += os.write(fd, view[done:])
            except OSError:
                self._cut_back(fd, start, data, done)
                raise
        try:
            os.fdatasync(fd)  # data and the size it needs, not the timestamps
        except OSError:
            with _appending(fd):
                self._cut_back(fd, start, data, done)
            raise
        self._torn = False

    def _current(self) -> int:
        """The descriptor of the file the path names now: opened again if asked, moved or removed."""
        if self._fd is None or self._reopen.is_set() or self._moved():
            self._reopen.clear()
            self.open()
        assert self._fd is not None
        return self._fd

    def _moved(self) -> bool:
        """Whether the path names another file than the one open, or none (one stat a batch)."""
        try:
            info = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return True  # gone, or its folder replaced by a file: reopening says what is wrong
        except OSError:
            return False  # cannot tell (a parent made unreadable): keep writing where we are
        return (info.st_dev, info.st_ino) != self._identity

    def _cut_back(self, fd: int, start: int, data: bytes, done: int) -> None:
        """After a failed write: take the batch's bytes off again, or note the torn line it left."""
        if not done:
            return
        try:
            info = os.fstat(fd)
            # Only our own bytes: logrotate's copytruncate may have emptied the file meanwhile.
            if stat.S_ISREG(info.st_mode) and info.st_size == start + done:
                os.ftruncate(fd, start)
                return
        except OSError as e:
            logger.error("audit log %s: cannot cut back a failed write: %s", self.path, e)
        self._torn = data[done - 1:done] != b"\n"


class _StoreSink:
    """The store as the store thread uses it: a connection, rows kept while it fails, the prune."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.health = SinkHealth(path)
        self.backlog: list[store.Prepared] = []  # rows the file has and the store does not, oldest first
        self.dropped = 0  # rows given up on while the backlog was full (they are in the file)
        self.error: OSError | None = None  # the last failure, while failing
        self.retry_at = 0.0  # monotonic
        self._connection: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        """The writer's connection, opened (and the schema created) at first use."""
        if self._connection is None:
            self._connection = store.connect(self.path, timeout=STORE_BUSY_TIMEOUT)
        return self._connection

    def close(self) -> None:
        """Close the connection; the next use opens it again."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                store.close(connection)
            except sqlite3.Error as e:
                logger.error("audit store %s: close failed: %s", self.path, e)

    def take(self, rows: list[store.Prepared], *, keep: bool, now: float) -> OSError | None:
        """Insert rows, and some of the backlog, in one transaction; the error if the store failed.

        While failing it is tried again only every STORE_RETRY seconds; rows it
        could not take are kept for then if `keep`.
        """
        if self.health.failing and now < self.retry_at:
            if keep:
                self._keep(rows)
            return self.error
        catch_up = self.backlog[:CATCH_UP_BATCH]
        try:
            if rows or catch_up:
                store.insert_rows(self.connection(), rows + catch_up)
            else:
                self.connection()
        except (sqlite3.Error, OSError) as e:
            logger.error("audit store %s: write failed: %s", self.path, e)
            return self._failed(e, rows if keep else [], now)
        except Exception as e:  # a bug must not end the writer: later records would wait forever
            logger.exception("audit store %s: a batch of %d records failed", self.path, len(rows))
            return self._failed(e, rows if keep else [], now)
        del self.backlog[:len(catch_up)]
        if self.health.failing:
            logger.warning("audit store %s: writing again", self.path)
        self.health.failing, self.error = False, None
        return None

    def _failed(self, e: Exception, rows: list[store.Prepared], now: float) -> OSError:
        """Note a failure: rows kept, the next try scheduled, a fresh connection then."""
        self.close()  # the file may have been replaced, or the error be sticky
        self._keep(rows)
        self.health.failed(e)
        self.error = AuditError(f"audit store {self.path}: {e}")
        self.retry_at = now + STORE_RETRY
        return self.error

    def _keep(self, rows: list[store.Prepared]) -> None:
        """Keep rows for the next try; past STORE_BACKLOG the oldest go (the file has them)."""
        self.backlog.extend(rows)
        over = len(self.backlog) - STORE_BACKLOG
        if over > 0:
            del self.backlog[:over]
            if not self.dropped:
                logger.error("audit store %s: more than %d records wait for it; the oldest are only in "
                             "the log now (`clickguard audit import` loads them)", self.path, STORE_BACKLOG)
            self.dropped += over

    def prune_step(self, retention: float | None, prune_every: float) -> tuple[float, int]:
        """Delete one batch of records past retention; (when the next batch is due, how many went)."""
        now = time.monotonic()
        if retention is None:
            return now + prune_every, 0
        try:
            deleted = store.prune(self.connection(), time.time() - retention, PRUNE_BATCH)
        except (sqlite3.Error, OSError) as e:
            logger.error("audit store %s: prune failed: %s", self.path, e)
            self.close()
            return now + prune_every, 0
        # More is due: the next batch right after the records queued meanwhile.
        return (now if deleted == PRUNE_BATCH else now + prune_every), deleted


class AuditLog:
    """Commits records to a JSON Lines file and to the store from two writer threads, then acknowledges."""

    def __init__(self, path: Path | None, store_path: Path | None = None, *,
                 retention: float | None = None, prune_every: float = 3600.0,
                 on_failure: OnFailure = "open", syslog: SyslogConfig | None = None) -> None:
        self.path = path  # the JSON Lines file; None: no file
        self.store_path = store_path  # the SQLite store; None: no store
        self.retention = retention  # seconds the store keeps a record; None: forever (may change live)
        self.prune_every = prune_every
        self.on_failure: OnFailure = on_failure  # what write() does about a record not recorded (live)
        self._queue: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._handed: queue.SimpleQueue[_Handed | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._log = _LogFile(path) if path is not None else None
        self._store = _StoreSink(store_path) if store_path is not None else None
        self._syslog = SyslogSender(syslog) if syslog is not None else None  # records also sent there
        self._count_lock = threading.Lock()
        self._logging = False  # the log thread is committing a batch (read without a lock: a hint)
        self._grouping = _Grouping()
        self.batches = 0  # batches the log thread committed
        self.held = 0  # of those, batches it held open for more records (group commit under load)
        self.written = 0  # records recorded: in the file (in the store, with the file off)
        self.not_recorded = 0
        self.pruned = 0  # records the retention deleted from the store
        self._pruning = 0  # deleted so far in this round of prune batches, for one log line

    def start(self) -> None:
        """Open the file (OSError if it cannot be) and start the writer threads."""
        if self._threads:
            return
        if self._log is not None:
            try:
                self._log.open()
            except OSError as e:
                self._log.health.failed(e)
                raise
        self._threads = [threading.Thread(target=self._run_log, name="clickguard-audit", daemon=True)]
        if self._store is not None:
            self._threads.append(threading.Thread(target=self._run_store, name="clickguard-audit-store",
                                                  daemon=True))
        for thread in self._threads:
            thread.start()
        if self._syslog is not None:
            self._syslog.start()

    def use_syslog(self, config: SyslogConfig | None) -> None:
        """Send records to this syslog target from now on (None: none); the old sender drains on its own."""
        old = self._syslog
        if (old.config if old is not None else None) == config:
            return
        new = SyslogSender(config) if config is not None else None
        if new is not None and self._threads:
            new.start()
        self._syslog = new
        if old is not None:
            old.close(wait=False)

    async def write(self, entry: Mapping[str, Any]) -> bool:
        """Queue one record and return True once it is recorded.

        A record not recorded returns False under on_failure ``open`` (the writer
        logged why) and raises `AuditError` under ``closed``.
        """
        if not self._threads:
            try:
                self.start()
            except OSError as e:
                return self._refused(entry, AuditError(f"audit log {self.path}: {e}"), count=True)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        # ASCII-only JSON: a lone surrogate (mitmproxy keeps undecodable bytes that way)
        # cannot make the line unwritable. The store keeps the same text as the file.
        line = _ENCODE(entry) + "\n"
        # Both sinks at once (_Join) when the log thread is idle and records do not overlap, under
        # open; under closed the store only takes what the file took.
        both = (not self._logging and not self._grouping.on and self._store is not None
                and self._log is not None and self.on_failure == "open")
        item: _Entry = (line, dict(entry), future, loop, _Join() if both else None)
        self._queue.put(item)
        if both:
            self._handed.put(_Handed([item], None, False))
        try:
            await future
        except OSError as e:
            return self._refused(entry, e, count=False)
        return True

    def _refused(self, entry: Mapping[str, Any], error: OSError, *, count: bool) -> bool:
        """False, or AuditError under on_failure closed, for a record not recorded."""
        if count:
            with self._count_lock:
                self.not_recorded += 1
        if self.on_failure == "closed":
            raise AuditError(f"audit record {entry.get('ref')} not recorded: {error}") from error
        return False

    def reopen(self) -> None:
        """Open the log file again before the next batch (SIGHUP after a rotation); safe from any thread."""
        if self._log is not None:
            self._log.reopen()

    def queue_depth(self) -> int:
        """Records waiting for the writer thread (approximate, for /metrics)."""
        return self._queue.qsize()

    def health(self) -> dict[str, Any]:
        """Each sink's state (failing, last error and when; the store's and syslog's backlog), the counts."""
        out: dict[str, Any] = {"on_failure": self.on_failure, "written": self.written,
                               "not_recorded": self.not_recorded, "batches": self.batches, "held": self.held,
                               "log": self._log.health.as_dict() if self._log is not None else None,
                               "store": None,
                               "syslog": self._syslog.health() if self._syslog is not None else None}
        if self._store is not None:
            out["store"] = {**self._store.health.as_dict(), "backlog": len(self._store.backlog),
                            "dropped": self._store.dropped}
        return out

    def close(self) -> None:
        """Write what is queued, stop the threads, close the file and the store; syslog drains briefly."""
        if not self._threads:
            return
        self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []
        if self._log is not None:
            self._log.close()
        if self._syslog is not None:
            self._syslog.close()

    # The log thread.

    def _run_log(self) -> None:
        """Group commit to the file until told to stop, handing each batch to the store thread."""
        stop = False
        while not stop:
            batch: list[_Entry] = []
            stop = self._drain(batch, self._queue.get())
            if not batch:
                continue
            self._logging = True
            overlapped = False
            if not stop and self._grouping.on and len(batch) < GROUP_MAX:
                self.held += 1
                taken = len(batch)
                stop = self._hold(batch, time.monotonic() + GROUP_WINDOW)
                overlapped = len(batch) > taken
            try:
                overlapped = self._log_batch(batch) or overlapped
            except Exception as e:  # a bug must not end the writer: every later flow would hang
                logger.exception("audit writer: a batch of %d records failed", len(batch))
                self._finish(batch, [AuditError(f"audit writer failed: {e!r}")] * len(batch), by_log=True)
            finally:
                self._logging = False
            self.batches += 1
            self._grouping.saw(overlapped)
        self._handed.put(None)

    def _drain(self, batch: list[_Entry], item: _Entry | None) -> bool:
        """Add `item` and every record queued now to the batch; True if the stop mark came."""
        while item is not None:
            batch.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
        return True

    def _hold(self, batch: list[_Entry], until: float) -> bool:
        """Add the records arriving until `until` (monotonic), up to GROUP_MAX; True if the stop mark came."""
        while len(batch) < GROUP_MAX:
            try:
                item = self._queue.get(True, max(0.0, until - time.monotonic()))
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _log_batch(self, batch: list[_Entry]) -> bool:
        """Append the batch to the file, then settle it or hand it to the store thread.

        Whether another record arrived during the commit: looked at before this batch's
        acknowledgements, as a caller that waits for its own record may send the next at once.
        """
        error: OSError | None = None
        if self._log is not None:
            data = "".join(entry[0] for entry in batch).encode("utf-8", "backslashreplace")
            try:
                self._log.append(data)
            except OSError as e:
                logger.error("audit log %s: %d records not written: %s", self.path, len(batch), e)
                self._log.health.failed(e)
                error = AuditError(f"audit log {self.path}: {e}")
            else:
                self._log.health.failing = False
        overlapped = not self._queue.empty()
        if self._store is None:
            self._finish(batch, [error] * len(batch))
            return overlapped
        joined = [entry for entry in batch if entry[4] is not None]  # the store has them already
        if joined:
            self._finish(joined, [error] * len(joined), by_log=True)
            batch = [entry for entry in batch if entry[4] is None]
            if not batch:
                return overlapped
        # Under closed nothing serves a record the file refused: no sink keeps it, none says "allowed".
        refused = error is not None and self.on_failure == "closed"
        # The file is the record: while the store fails, nobody waits for it.
        settled = refused or (self._log is not None and self._store.health.failing)
        if settled:
            self._finish(batch, [error] * len(batch))
        if not refused:
            self._handed.put(_Handed(batch, error, settled))
        return overlapped

    # The store thread.

    def _run_store(self) -> None:
        """Insert what the log thread hands over, retry what failed, prune when due; until told to stop."""
        sink = self._store
        assert sink is not None
        sink.take([], keep=False, now=time.monotonic())  # created now: readers can open it at once
        next_prune = time.monotonic()  # at start-up, then every prune_every
        stop = False
        while not stop:
            if time.monotonic() >= next_prune:
                next_prune = self._prune(sink)
            wake = min(next_prune, sink.retry_at) if sink.backlog else next_prune
            handed: list[_Handed] = []
            try:
                item = self._handed.get(True, max(0.0, wake - time.monotonic()))
                while item is not None:
                    handed.append(item)
                    item = self._handed.get_nowait()
                stop = True
            except queue.Empty:
                pass
            if handed or (sink.backlog and time.monotonic() >= sink.retry_at):
                self._store_batches(sink, handed)
        if sink.backlog:  # a last try, then what is left is only in the file
            sink.retry_at = 0.0
            self._store_batches(sink, [])
            if sink.backlog:
                logger.error("audit store %s: %d records are not in it; `clickguard audit import %s` loads "
                             "them", self.store_path, len(sink.backlog), self.path)
                sink.backlog.clear()
        sink.close()

    def _store_batches(self, sink: _StoreSink, handed: list[_Handed]) -> None:
        """Insert handed batches in one transaction and settle those still waiting."""
        outcomes: list[list[_Outcome]] = []
        rows: list[store.Prepared] = []
        owners: list[tuple[int, int]] = []
        for h, (batch, log_error, _settled) in enumerate(handed):
            outcome: list[_Outcome] = [log_error] * len(batch)
            for i, (line, entry, _future, _loop, _join) in enumerate(batch):
                try:
                    rows.append(store.row_of(entry, line[:-1]))
                except (ValueError, TypeError, AttributeError) as e:
                    logger.error("audit store %s: record %s not stored: %s",
                                 self.store_path, entry.get("ref"), e)
                    if self._log is None:
                        outcome[i] = AuditError(f"audit store: record not stored: {e}")
                    continue
                owners.append((h, i))
            outcomes.append(outcome)
        # With the file off the store is the record: under closed, rows refused are not kept for later.
        keep = self._log is not None or self.on_failure == "open"
        error = sink.take(rows, keep=keep, now=time.monotonic())
        if error is not None and self._log is None:
            for h, i in owners:
                outcomes[h][i] = error
        for (batch, _log_error, settled), outcome in zip(handed, outcomes, strict=True):
            if not settled:
                self._finish(batch, outcome)

    def _prune(self, sink: _StoreSink) -> float:
        """One prune batch; when the next is due (a bug delays it, and is logged)."""
        try:
            next_prune, deleted = sink.prune_step(self.retention, self.prune_every)
        except Exception:  # a bug must not end the writer: every later flow would hang
            logger.exception("audit writer: pruning the store failed")
            sink.close()
            return time.monotonic() + self.prune_every
        self.pruned += deleted
        self._pruning += deleted
        if deleted < PRUNE_BATCH and self._pruning and self.retention is not None:
            logger.info("audit store %s: deleted %d records older than %g days",
                        self.store_path, self._pruning, self.retention / 86400)
            self._pruning = 0
        return next_prune

    def _finish(self, batch: list[_Entry], outcomes: list[_Outcome], *, by_log: bool = False) -> None:
        """Count a batch's outcomes and resolve its futures; a joined record's once both sinks are done.

        ``by_log``: the log thread's part of joined records (their outcome, the file's); else the store's.
        """
        if any(entry[4] is not None for entry in batch):
            batch, outcomes = self._joined(batch, outcomes, by_log)
            if not batch:
                return
        failed = sum(1 for outcome in outcomes if outcome is not None)
        with self._count_lock:
            self.written += len(outcomes) - failed
            self.not_recorded += failed
        _settle_batch(batch, outcomes)
        sender = self._syslog
        if sender is not None:  # after the acknowledgements: syslog never delays one
            served = self.on_failure == "open"
            sender.offer([(line, entry) for (line, entry, _future, _loop, _join), outcome
                          in zip(batch, outcomes, strict=True) if outcome is None or served])

    def _joined(self, batch: list[_Entry], outcomes: list[_Outcome],
                by_log: bool) -> tuple[list[_Entry], list[_Outcome]]:
        """Of a sink's part of a batch, the records now done: both sinks had them, or the store fails."""
        # The file is the record: while the store fails, nobody waits for it (as in _log_batch).
        store_failing = by_log and self._store is not None and self._store.health.failing
        ready: list[_Entry] = []
        ready_outcomes: list[_Outcome] = []
        with self._count_lock:
            for entry, outcome in zip(batch, outcomes, strict=True):
                join = entry[4]
                if join is None:
                    ready.append(entry)
                    ready_outcomes.append(outcome)
                    continue
                if join.parts == 0:
                    continue  # acknowledged already (the file's part, while the store failed)
                if by_log:
                    join.error = outcome
                join.parts = 0 if store_failing else join.parts - 1
                if join.parts == 0:
                    ready.append(entry)
                    ready_outcomes.append(join.error)
        return ready, ready_outcomes


def _settle_batch(batch: list[_Entry], errors: list[_Outcome]) -> None:
    """Hand each caller its outcome on its own loop: one wake-up per loop and batch, not per record."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], _Outcome]]] = {}
    for (_line, _entry, future, loop, _join), error in zip(batch, errors, strict=True):
        by_loop.setdefault(loop, []).append((future, error))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:  # that loop is closed: nobody waits for these records any more
            logger.warning("audit writer: %d records done for an event loop now closed", len(settled))


def _settle(settled: list[tuple[asyncio.Future[None], _Outcome]]) -> None:
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
