"""The audit log: one JSON object a line for every decision, durable before it is acknowledged.

Records are written by one thread off the event loop. The writer takes every
record queued so far, writes them and calls fdatasync once (group commit), and
only then resolves each caller's future: a page that shows a reference id, or a
response let through, is never ahead of its record on disk, so a crash loses
nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import secrets
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickguard.verdict import Finding

logger = logging.getLogger(__name__)

type _Item = tuple[str, asyncio.Future[None], asyncio.AbstractEventLoop] | None


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
    """Appends records to a JSON Lines file from a writer thread, fsyncing before acknowledging."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self.written = 0

    def start(self) -> None:
        """Open the file and start the writer thread."""
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: a failed write leaves nothing behind to be written later by surprise.
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._thread = threading.Thread(target=self._run, name="clickguard-audit", daemon=True)
        self._thread.start()

    async def write(self, entry: Mapping[str, Any]) -> None:
        """Queue one record and return once it is on disk; OSError if it could not be written."""
        if self._thread is None:
            self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        # ASCII-only JSON: a lone surrogate (mitmproxy keeps undecodable bytes that way)
        # cannot make the line unwritable.
        self._queue.put((json.dumps(entry, separators=(",", ":")) + "\n", future, loop))
        await future

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the file."""
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
        """Writer thread: group commit until told to stop."""
        stop = False
        while not stop:
            batch: list[tuple[str, asyncio.Future[None], asyncio.AbstractEventLoop]] = []
            item = self._queue.get()
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
                self._commit(batch)

    def _commit(self, batch: list[tuple[str, asyncio.Future[None], asyncio.AbstractEventLoop]]) -> None:
        """Write, flush and fsync one batch, then settle its futures."""
        error: OSError | None = None
        assert self._fd is not None
        data = "".join(line for line, _f, _l in batch).encode("utf-8", "backslashreplace")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fdatasync(self._fd)  # data and the size it needs, not the timestamps
        except OSError as e:
            logger.error("audit log %s: write failed: %s", self.path, e)
            error = e
        else:
            self.written += len(batch)
        # One wake-up per loop and batch, not one per record.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _line, future, loop in batch:
            by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: OSError | None) -> None:
    """Resolve callers' futures on their own loop (one may have been cancelled meanwhile)."""
    for future in futures:
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


