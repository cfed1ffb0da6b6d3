"""Feed sources: where each feed's text comes from, its last good copy, and its status.

A feed comes from a file or from an http(s) URL. URL feeds are fetched in the
background (one shared aiohttp session, `feed_session()`; conditional GET with
ETag and Last-Modified) into a cache file that is also read at start-up, so the
proxy never waits for a fetch to serve. Whatever goes wrong (unreachable server, a
file that suddenly parses to nothing), the last good copy keeps serving and the
status says what happened.

A feed server is as much the attacker's as any page, so a fetch is bounded:

- size: at most the feed's `max_bytes` (default 64 MiB), counted after gzip or
  deflate are undone here, piece by piece (a bomb stops at the cap); a
  Content-Length above the cap is refused before reading;
- time: `FetchTimeouts` (connect 15 s, 60 s of silence, 300 s in all);
- the event loop: the body is parsed, compared and written in a worker thread;
- the network: the policy's parent proxy (`upstream.proxy`, its `no_proxy` destinations
  direct) when `FeedSet.fetch` is given the policy's `upstream`; otherwise, and for the
  no_proxy destinations, the environment's proxies (HTTP_PROXY, HTTPS_PROXY, NO_PROXY).

A refused body (HTTP error, timeout, too big, cut short, not decodable, no usable
line, empty) never touches the cached copy.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import logging
import re
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from clickguard import files
from clickguard.intel.index import FeedInput, ReputationIndex
from clickguard.intel.parsers import DEFAULT_KINDS, Kind, ParsedFeed, parse_feed
from clickguard.policy.model import FeedConfig
from clickguard.policy.upstream import UpstreamConfig
from clickguard.urls import canonical_ip

logger = logging.getLogger(__name__)

_SKIPPED_EXAMPLES = 5
_CHUNK = 64 * 1024  # bytes taken off the connection at a time
_PIECE = 256 * 1024  # most bytes one decompression step makes before the event loop runs again
_ACCEPT_ENCODING = "gzip, deflate"  # what fetches ask for and decode; anything else is refused


class FetchTimeouts(NamedTuple):
    """How long one feed fetch may take, in seconds."""

    connect: float = 15.0  # to get a connection to the server, or to the proxy
    read: float = 60.0  # the longest silence between two reads of the response
    total: float = 300.0  # the whole fetch, headers and body

    def client_timeout(self) -> aiohttp.ClientTimeout:
        """The same bounds in aiohttp's terms."""
        return aiohttp.ClientTimeout(total=self.total, connect=self.connect,
                                     sock_connect=self.connect, sock_read=self.read)

    def __str__(self) -> str:
        return f"connect {self.connect:g}s, read {self.read:g}s, total {self.total:g}s"


DEFAULT_TIMEOUTS = FetchTimeouts()


def feed_session() -> aiohttp.ClientSession:
    """The session URL feeds are fetched with (call it inside the running event loop)."""
    # trust_env: HTTP_PROXY, HTTPS_PROXY and NO_PROXY (and ~/.netrc for the proxy's credentials),
    # as every other tool on the host honours them. A feed server's cookies are never sent back,
    # and bodies are decoded by the fetch itself, within the feed's cap.
    return aiohttp.ClientSession(trust_env=True, cookie_jar=aiohttp.DummyCookieJar(),
                                 auto_decompress=False, timeout=DEFAULT_TIMEOUTS.client_timeout())


class FeedRoute(NamedTuple):
    """How a feed's URL is fetched: through this proxy (None: the session's choice) with these headers."""

    proxy: str | None = None
    proxy_headers: dict[str, str] | None = None


def feed_route(upstream: UpstreamConfig | None, url: str) -> FeedRoute:
    """Through the policy's parent proxy unless the URL's host is in its no_proxy (by name or address)."""
    parent = upstream.proxy if upstream is not None else None
    if upstream is None or parent is None:
        return FeedRoute()
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    address = canonical_ip(host)
    # Names are matched as written: the fetch does not resolve them first (no_proxy networks
    # match feed URLs that name an address).
    if upstream.goes_direct(address or host, (address,) if address else ()):
        return FeedRoute()
    authorization = parent.authorization()
    return FeedRoute(parent.url, {"Proxy-Authorization": authorization} if authorization else None)


class _Refused(Exception):
    """Why a fetched body is not used (never leaves `FeedSet.fetch`); the message names the URL."""


class _Download(NamedTuple):
    """A feed body read within its cap, with the validators for the next conditional GET."""

    body: bytes
    etag: str | None
    last_modified: str | None


def _decompressor(url: str, encoding: str) -> zlib._Decompress | None:
    """The decoder of a Content-Encoding fetches ask for; None for identity; _Refused otherwise."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise _Refused(f"{url}: Content-Encoding {encoding!r} was not asked for ({_ACCEPT_ENCODING})")


class _BoundedBody:
    """A response body gathered within a cap, its Content-Encoding undone on the way."""

    def __init__(self, url: str, encoding: str, cap: int) -> None:
        self.url = url
        self.cap = cap
        self.size = 0  # decoded bytes so far
        self._pieces: list[bytes] = []
        self._inflate = _decompressor(url, encoding)

    async def add(self, chunk: bytes) -> None:
        """Take one chunk as it came off the connection; _Refused past the cap or if it does not decode."""
        if self._inflate is None:
            self._keep(chunk)
            return
        pending = chunk
        while True:
            try:
                # At most _PIECE bytes a step: a gzip bomb grows by 256 KiB at a time, never past
                # the cap, and the event loop gets its turn between steps.
                piece = self._inflate.decompress(pending, _PIECE)
            except zlib.error as e:
                raise _Refused(f"{self.url}: the compressed body does not decode: {e}") from None
            self._keep(piece)
            if self._inflate.eof and self._inflate.unused_data:
                raise _Refused(f"{self.url}: data after the end of the compressed body")
            pending = self._inflate.unconsumed_tail
            if not pending and len(piece) < _PIECE:
                return  # a full piece may leave output inside zlib: ask again with no input
            await asyncio.sleep(0)

    def _keep(self, piece: bytes) -> None:
        """Count and keep decoded bytes; _Refused once they pass the cap."""
        self.size += len(piece)
        if self.size > self.cap:
            decoded = " decoded" if self._inflate is not None else ""
            raise _Refused(f"{self.url}: body over the cap of {self.cap} bytes{decoded} "
                           "(max_bytes); stopped reading")
        self._pieces.append(piece)

    def finish(self) -> bytes:
        """The whole decoded body; _Refused if a compressed body ended before its end mark."""
        if self._inflate is not None and not self._inflate.eof:
            raise _Refused(f"{self.url}: the compressed body ends early")
        return b"".join(self._pieces)


async def _download(session: aiohttp.ClientSession, feed: FeedConfig, headers: dict[str, str],
                    route: FeedRoute, timeouts: FetchTimeouts) -> _Download | None:
    """GET a feed's URL within its cap and the timeouts; None for 304; _Refused or aiohttp's errors."""
    url = str(feed.url)
    async with session.get(url, headers={**headers, "Accept-Encoding": _ACCEPT_ENCODING},
                           proxy=route.proxy, proxy_headers=route.proxy_headers,
                           timeout=timeouts.client_timeout(),
                           auto_decompress=False) as response:
        if response.status == 304:
            return None
        if response.status != 200:
            raise _Refused(f"{url}: HTTP {response.status}")
        length = response.content_length
        if length is not None and length > feed.max_bytes:
            raise _Refused(f"{url}: Content-Length {length} is over the cap of {feed.max_bytes} "
                           "bytes (max_bytes); not read")
        body = _BoundedBody(url, response.headers.get("Content-Encoding", ""), feed.max_bytes)
        received = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            received += len(chunk)
            if received > feed.max_bytes:  # compressed and still bigger than the cap
                raise _Refused(f"{url}: body over the cap of {feed.max_bytes} bytes (max_bytes); "
                               "stopped reading")
            await body.add(chunk)
        return _Download(body.finish(), response.headers.get("ETag"),
                         response.headers.get("Last-Modified"))


def _error_text(error: BaseException) -> str:
    """An exception's type and message, for a status line."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _conditional_headers(path: Path, meta_path: Path) -> dict[str, str]:
    """If-None-Match and If-Modified-Since for the cached copy, if there is one."""
    headers: dict[str, str] = {}
    if not path.exists():
        return headers
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("etag"):
            headers["If-None-Match"] = meta["etag"]
        if meta.get("last_modified"):
            headers["If-Modified-Since"] = meta["last_modified"]
    except (OSError, ValueError, AttributeError):  # AttributeError: JSON that is not an object
        pass
    return headers


def _store(feed: FeedConfig, download: _Download, path: Path, meta_path: Path) -> bool:
    """Parse a fetched body and, if usable, make it the cached copy; True if it changed (in a thread)."""
    url = str(feed.url)
    parsed = parse_feed(feed.format, download.body.decode("utf-8", errors="replace"),
                        min_count=feed.min_count)
    if not _usable(parsed):
        first = parsed.skipped[0]
        raise _Refused(f"{url}:{first.line}: {feed.format}: {first.reason} (no usable line)")
    try:
        cached: bytes | None = path.read_bytes()
    except OSError:
        cached = None
    if parsed.size == 0 and cached is not None:
        # A body with no entry at all is far likelier a failed export than a clean world.
        raise _Refused(f"{url}: no entries in {len(download.body)} bytes")
    changed = cached != download.body
    if changed:
        _atomic_write(path, download.body)
    _atomic_write(meta_path, json.dumps({"etag": download.etag,
                                         "last_modified": download.last_modified,
                                         "fetched_at": time.time()}).encode())
    return changed


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


def _digest(data: bytes) -> bytes:
    """A feed text's fingerprint."""
    return hashlib.blake2b(data, digest_size=16).digest()


class _GoodCopy(NamedTuple):
    """A feed's last good text, kept compressed (a big feed is tens of MB of text), and its file's mtime."""

    packed: bytes
    digest: bytes  # of the text: whether a copy read again is the same one
    mtime: float

    @classmethod
    def of(cls, text: str, mtime: float) -> _GoodCopy:
        """The copy of this text (level 1: an IP list still shrinks to about a third, in tens of ms)."""
        data = text.encode("utf-8")
        return cls(zlib.compress(data, 1), _digest(data), mtime)

    def text(self) -> str:
        """The text again."""
        return zlib.decompress(self.packed).decode("utf-8")

    def holds(self, text: str, mtime: float) -> bool:
        """Whether this is the copy of that text, read at that mtime."""
        return self.mtime == mtime and _digest(text.encode("utf-8")) == self.digest


class FeedSet:
    """The feeds of one policy (plus the command line's), their last good texts and statuses."""

    def __init__(self, feeds: Sequence[FeedConfig], cache_dir: Path,
                 previous: FeedSet | None = None) -> None:
        self.feeds = list(feeds)
        self.cache_dir = cache_dir
        self.status: dict[str, FeedStatus] = {}
        # Last good text per feed, carried over from the previous FeedSet so a reload
        # that meets a broken file still serves the copy that worked.
        self._good: dict[str, _GoodCopy] = {}
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
            if good is not None and good.mtime == mtime and status.last_error is None:
                return good.text(), mtime
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
                    good = self._good.get(feed.name)
                    if good is None or not good.holds(text, mtime):
                        status.loaded_at = time.time()
                        self._good[feed.name] = _GoodCopy.of(text, mtime)
                    status.data_time = mtime
                    status.last_error = None
                else:
                    first = candidate.skipped[0]
                    status.last_error = (f"feed {feed.name}: {status.source}:{first.line}: {feed.format}: "
                                         f"{first.reason} (no usable line); keeping the last good copy")
            if parsed is None and feed.name in self._good:
                parsed = parse_feed(feed.format, self._good[feed.name].text(), min_count=feed.min_count)
            if parsed is None:
                status.entries = 0
                continue
            status.skipped = len(parsed.skipped)
            status.skipped_examples = _describe(parsed, status.source, feed.format)
            kinds = frozenset(Kind(k) for k in feed.match) if feed.match else DEFAULT_KINDS[feed.format]
            yield FeedInput(feed.name, feed.category, kinds, parsed.indicators,
                            plain_ipv4_packed=parsed.plain_ipv4_packed)

    def build_index(self) -> ReputationIndex:
        """Read and parse every feed and build a new index (run it off the event loop)."""
        index = ReputationIndex.build(self._inputs())
        for name, status in self.status.items():
            status.entries = index.counts.get(name, 0)
        _release_freed_memory()
        return index

    async def fetch(self, session: aiohttp.ClientSession, feed: FeedConfig, *,
                    proxy: str | None = None, upstream: UpstreamConfig | None = None,
                    timeouts: FetchTimeouts = DEFAULT_TIMEOUTS) -> bool:
        """Fetch one URL feed into its cache; True if a new good copy arrived. Never raises for I/O.

        `session` is best `feed_session()`'s. The route: `proxy` if given; else the policy's
        parent proxy (`upstream`, see `feed_route`); else, and for its no_proxy destinations, the
        session's choice (the environment's proxies with `feed_session()`). On any failure the
        cached copy stays as it was, byte for byte, and the status says why.
        """
        status = self.status[feed.name]
        path = cache_path(feed, self.cache_dir)
        meta_path = path.with_suffix(path.suffix + ".meta.json")
        status.last_attempt = time.time()
        try:
            headers = await asyncio.to_thread(_conditional_headers, path, meta_path)
            route = FeedRoute(proxy) if proxy is not None else feed_route(upstream, str(feed.url))
            download = await _download(session, feed, headers, route, timeouts)
            if download is None:
                status.last_error = None
                return False
            changed = await asyncio.to_thread(_store, feed, download, path, meta_path)
        except _Refused as e:
            why = str(e)
        except TimeoutError as e:  # aiohttp's own timeouts are TimeoutErrors too
            why = f"{feed.url}: timed out ({timeouts}): {_error_text(e)}"
        except (aiohttp.ClientError, OSError) as e:
            why = f"{feed.url}: {_error_text(e)}"
        else:
            status.last_error = None
            return changed
        status.last_error = f"feed {feed.name}: {why}; keeping the last good copy"
        return False

    def snapshot(self) -> list[dict[str, Any]]:
        """Every feed's status, JSON-ready."""
        return [self.status[f.name].as_dict() for f in self.feeds]


def _release_freed_memory() -> None:
    """Give the C allocator's free memory back to the system, where the C library can (glibc)."""
    # Parsing a million-line feed frees tens of MB of texts, lists and buffers; glibc keeps
    # much of it for the process, counted in its resident memory, until malloc_trim hands
    # the free pages back (a few ms). Other C libraries have no malloc_trim.
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return
    trim(0)


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace a file in one step, so a reader never sees half of it; private (0640, folders 0750)."""
    files.write_private(path, data)


def write_status(path: Path, feeds: FeedSet, *, audit: dict[str, Any] | None = None) -> None:
    """Publish the feeds' status, and the audit sinks' (`AuditLog.health`), for `clickguard feeds status`."""
    _atomic_write(path, json.dumps({"written_at": time.time(), "feeds": feeds.snapshot(), "audit": audit},
                                   indent=1).encode())
