"""Feed sources: where each feed's text comes from, its last good copy, and its status.

A feed comes from a file or from an http(s) URL. URL feeds are fetched in the
background (one shared aiohttp session, conditional GET with ETag and
Last-Modified) into a cache file that is also read at start-up, so the proxy
never waits for a fetch to serve. Whatever goes wrong (unreachable server, a
file that suddenly parses to nothing), the last good copy keeps serving and the
status says what happened.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from clickguard.intel.index import FeedInput, ReputationIndex
from clickguard.intel.parsers import DEFAULT_KINDS, Kind, ParsedFeed, parse_feed
from clickguard.policy.model import FeedConfig

logger = logging.getLogger(__name__)

_SKIPPED_EXAMPLES = 5


@dataclass
class FeedStatus:
    """What `clickguard feeds status` shows about one feed."""

    name: str
    format: str
    category: str
    source: str
    entries: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    loaded_at: float | None = None  # when the copy now serving was loaded
    data_time: float | None = None  # modification time of that copy (file mtime or fetch time)
    last_attempt: float | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def cache_path(feed: FeedConfig, cache_dir: Path) -> Path:
    """Where a URL feed's last good copy is kept."""
    if feed.cache is not None:
        return Path(feed.cache)
    return cache_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', feed.name)}.feed"


def _read_text(path: Path) -> str:
    """A feed file's text; undecodable bytes become U+FFFD and the line is then skipped by its parser."""
    return path.read_bytes().decode("utf-8", errors="replace")


def _describe(parsed: ParsedFeed, source: str, fmt: str) -> list[str]:
    """The first skipped lines, as file:line: field: message."""
    return [f"{source}:{s.line}: {fmt}: {s.reason}" for s in parsed.skipped[:_SKIPPED_EXAMPLES]]


def _usable(parsed: ParsedFeed) -> bool:
    """A copy that parses to nothing although it has data lines is not used over a good one."""
    return parsed.size > 0 or not parsed.skipped


class FeedSet:
    """The feeds of one policy (plus the command line's), their last good texts and statuses."""

    def __init__(self, feeds: Sequence[FeedConfig], cache_dir: Path,
                 previous: FeedSet | None = None) -> None:
        self.feeds = list(feeds)
        self.cache_dir = cache_dir
        self.status: dict[str, FeedStatus] = {}
        # Last good text per feed, carried over from the previous FeedSet so a reload
        # that meets a broken file still serves the copy that worked.
        self._good: dict[str, tuple[str, float]] = {}
        for feed in self.feeds:
            source = str(feed.path) if feed.path is not None else str(feed.url)
            old = previous.status.get(feed.name) if previous else None
            if old is not None and old.source == source and old.format == feed.format:
                self.status[feed.name] = old
                if previous is not None and feed.name in previous._good:
                    self._good[feed.name] = previous._good[feed.name]
            else:
                self.status[feed.name] = FeedStatus(feed.name, feed.format, feed.category, source)

    def watched_files(self) -> list[Path]:
        """Files whose change means the index must be rebuilt."""
        return [Path(f.path) for f in self.feeds if f.path is not None]

    def url_feeds(self) -> list[FeedConfig]:
        """Feeds fetched from a URL."""
        return [f for f in self.feeds if f.url is not None]

    def unloaded(self) -> list[str]:
        """Feeds with no good copy at all (a URL feed before its first fetch, a missing file)."""
        return [f.name for f in self.feeds if f.name not in self._good]

    def _current_text(self, feed: FeedConfig) -> tuple[str, float] | None:
        """Read the feed's source now: the file, or the URL feed's cache; None if there is none."""
        status = self.status[feed.name]
        path = Path(feed.path) if feed.path is not None else cache_path(feed, self.cache_dir)
        try:
            mtime = path.stat().st_mtime
            good = self._good.get(feed.name)
            if good is not None and good[1] == mtime and status.last_error is None:
                return good
            return _read_text(path), mtime
        except FileNotFoundError:
            if feed.path is not None:
                status.last_error = f"{path}: file not found"
            return None
        except OSError as e:
            status.last_error = f"{path}: {e.strerror or e}"
            return None

    def _inputs(self) -> Iterator[FeedInput]:
        """Parse each feed in turn (last good copy on failure) for the index builder."""
        for feed in self.feeds:
            status = self.status[feed.name]
            status.last_attempt = time.time()
            current = self._current_text(feed)
            parsed: ParsedFeed | None = None
            if current is not None:
                text, mtime = current
                candidate = parse_feed(feed.format, text, min_count=feed.min_count)
                if _usable(candidate):
                    parsed = candidate
                    if self._good.get(feed.name) != current:
                        status.loaded_at = time.time()
                    self._good[feed.name] = current
                    status.data_time = mtime
                    status.last_error = None
                else:
                    first = candidate.skipped[0]
                    status.last_error = (f"{status.source}:{first.line}: {feed.format}: {first.reason} "
                                         f"(no usable line; keeping the last good copy)")
            if parsed is None and feed.name in self._good:
                parsed = parse_feed(feed.format, self._good[feed.name][0], min_count=feed.min_count)
            if parsed is None:
                status.entries = 0
                continue
            status.skipped = len(parsed.skipped)
            status.skipped_examples = _describe(parsed, status.source, feed.format)
            kinds = frozenset(Kind(k) for k in feed.match) if feed.match else DEFAULT_KINDS[feed.format]
            yield FeedInput(feed.name, feed.category, kinds, parsed.indicators, parsed.plain_ipv4)

    def build_index(self) -> ReputationIndex:
        """Read and parse every feed and build a new index (run it off the event loop)."""
        index = ReputationIndex.build(self._inputs())
        for name, status in self.status.items():
            status.entries = index.counts.get(name, 0)
        return index

    async def fetch(self, session: aiohttp.ClientSession, feed: FeedConfig) -> bool:
        """Fetch one URL feed into its cache; True if a new good copy arrived. Never raises for I/O."""
        status = self.status[feed.name]
        path = cache_path(feed, self.cache_dir)
        meta_path = path.with_suffix(path.suffix + ".meta.json")
        headers: dict[str, str] = {}
        if path.exists():
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("etag"):
                    headers["If-None-Match"] = meta["etag"]
                if meta.get("last_modified"):
                    headers["If-Modified-Since"] = meta["last_modified"]
            except (OSError, ValueError):
                pass
        status.last_attempt = time.time()
        try:
            async with session.get(str(feed.url), headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=120)) as response:
                if response.status == 304:
                    status.last_error = None
                    return False
                if response.status != 200:
                    status.last_error = f"{feed.url}: HTTP {response.status}; keeping the last good copy"
                    return False
                body = await response.read()
                etag = response.headers.get("ETag")
                last_modified = response.headers.get("Last-Modified")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            status.last_error = f"{feed.url}: {type(e).__name__}: {e}; keeping the last good copy"
            return False
        text = body.decode("utf-8", errors="replace")
        parsed = parse_feed(feed.format, text, min_count=feed.min_count)
        if not _usable(parsed):
            first = parsed.skipped[0]
            status.last_error = (f"{feed.url}:{first.line}: {feed.format}: {first.reason} "
                                 "(no usable line; keeping the last good copy)")
            return False
        try:
            unchanged = path.read_bytes() == body
        except OSError:
            unchanged = False
        if not unchanged:
            _atomic_write(path, body)
        _atomic_write(meta_path, json.dumps({"etag": etag, "last_modified": last_modified,
                                             "fetched_at": time.time()}).encode())
        status.last_error = None
        return not unchanged

    def snapshot(self) -> list[dict[str, Any]]:
        """Every feed's status, JSON-ready."""
        return [self.status[f.name].as_dict() for f in self.feeds]


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace a file in one step, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_status(path: Path, feeds: FeedSet) -> None:
    """Publish the feeds' status for `clickguard feeds status` (another process)."""
    _atomic_write(path, json.dumps({"written_at": time.time(), "feeds": feeds.snapshot()},
                                   indent=1).encode())
