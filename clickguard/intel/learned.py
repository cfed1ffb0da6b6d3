"""Hosts the proxy learned are Thingbots, from what they served, kept across restarts.

A host that served a blocked appliance redirect or payload is remembered for a
time the policy sets, with the evidence, so the next request to it is refused
before the proxy connects. Entries live in memory (one dict lookup a request)
and in a JSON file in the state directory, rewritten whole (write, fsync,
rename) when an entry is added, so a crash leaves the old file or the new one;
the file is private (0640, `clickguard.files`), as it holds the URLs.
A file that cannot be read is set aside, not trusted and not lost.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from clickguard import files

logger = logging.getLogger(__name__)

FEED_NAME = "learned"  # how learned entries are attributed in findings and `feeds status`
STATE_FILE = "learned.json"  # the file in the state directory, beside the feed caches
_MAX_ENTRIES = 100_000  # the oldest go first beyond this: a flood of hosts cannot fill memory


class LearnedHost(NamedTuple):
    """One host (name or IP address) learned as a Thingbot."""

    host: str
    evidence: str  # what it served, in words
    url: str  # the request that showed it
    codes: tuple[str, ...]  # the reason codes of the blocked response
    learned_at: float
    expires: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form for the state file and `feeds status`."""
        return {"host": self.host, "evidence": self.evidence, "url": self.url, "codes": list(self.codes),
                "learned_at": self.learned_at, "expires": self.expires}

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> LearnedHost:
        """The entry `as_dict` made; ValueError, KeyError or TypeError for one that is not."""
        codes = item["codes"]
        if not isinstance(codes, list):
            raise TypeError("codes is not a list")
        return cls(str(item["host"]), str(item["evidence"]), str(item["url"]), tuple(str(c) for c in codes),
                   float(item["learned_at"]), float(item["expires"]))

    @classmethod
    def from_shared(cls, host: str, data: Mapping[str, Any] | None) -> LearnedHost | None:
        """The entry another node shared under its host (`clickguard.cluster`); None for a forgotten one."""
        if data is None:
            return None
        entry = cls.from_dict(data)
        if entry.host != host:
            raise ValueError(f"learned entry for {entry.host!r} under the id {host!r}")
        return entry


class LearnedHosts:
    """The learned Thingbots: looked up per request, added to when a response is blocked."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._hosts: dict[str, LearnedHost] = {}
        self.error: str | None = None  # why the file could not be read, if it could not
        self._generation = self._written = 0
        self._write_lock = threading.Lock()
        # Told of every host learned here, so that other workers and nodes refuse it too (`merge`).
        self.shared: Callable[[LearnedHost], None] | None = None

    def __len__(self) -> int:
        return len(self._hosts)

    def __iter__(self) -> Iterator[LearnedHost]:
        now = time.time()
        return iter([h for h in self._hosts.values() if h.expires > now])

    def lookup(self, host: str) -> LearnedHost | None:
        """The live entry for a host name or address, or None."""
        entry = self._hosts.get(host)
        if entry is None:
            return None
        if entry.expires <= time.time():
            self._hosts.pop(host, None)  # inspection threads look up too: another may have dropped it
            return None
        return entry

    def learn(self, host: str, evidence: str, url: str, codes: tuple[str, ...], ttl: float) -> LearnedHost:
        """Remember a host (again: the newest evidence and expiry win); call save() to keep it."""
        now = time.time()
        entry = LearnedHost(host, evidence, url, codes, now, now + ttl)
        self._put(entry)
        if self.shared is not None:
            self.shared(entry)
        return entry

    def merge(self, entry: LearnedHost) -> bool:
        """Take an entry another node learned, unless this one knows newer evidence or it expired."""
        known = self._hosts.get(entry.host)
        if entry.expires <= time.time() or (known is not None and known.learned_at >= entry.learned_at):
            return False
        self._put(entry)
        return True

    def _put(self, entry: LearnedHost) -> None:
        """Keep an entry as the newest (the oldest go first beyond _MAX_ENTRIES)."""
        self._hosts.pop(entry.host, None)
        self._hosts[entry.host] = entry
        while len(self._hosts) > _MAX_ENTRIES:
            del self._hosts[next(iter(self._hosts))]

    def load(self) -> None:
        """Read the state file (a missing one is an empty list); expired entries are dropped."""
        if self.path is None:
            return
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            self.error = f"{self.path}: cannot read: {e.strerror or e}"
            logger.error("learned hosts not loaded: %s", self.error)
            return
        try:
            items = json.loads(raw)["hosts"]
            entries = [LearnedHost.from_dict(i) for i in items]
        except (ValueError, KeyError, TypeError) as e:
            aside = self.path.with_name(self.path.name + f".bad-{int(time.time())}")
            self.error = f"{self.path}: not a learned-hosts file ({e}); set aside as {aside.name}"
            logger.error("learned hosts not loaded: %s", self.error)
            os.replace(self.path, aside)
            return
        now = time.time()
        self._hosts = {e.host: e for e in sorted(entries, key=lambda e: e.learned_at) if e.expires > now}

    def encoded(self) -> tuple[int, bytes]:
        """Every live entry as the state file holds them, numbered (taken where entries are added)."""
        self._generation += 1
        return self._generation, json.dumps({"hosts": [h.as_dict() for h in self]}, indent=1).encode()

    def save(self, snapshot: tuple[int, bytes] | None = None) -> None:
        """Write a snapshot (default: now) atomically; worker threads may race, the newest wins."""
        if self.path is None:
            return
        generation, data = self.encoded() if snapshot is None else snapshot
        with self._write_lock:
            if generation <= self._written:
                return  # a newer snapshot is already on disk
            files.write_private(self.path, data)  # full URLs (tokens in them): not for every local user
            self._written = generation
