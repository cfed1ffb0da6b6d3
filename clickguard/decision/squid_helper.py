"""Squid's external ACL helper: clickguard's verdict on each URL a Squid site asks about.

Squid starts `clickguard squid-helper` from an `external_acl_type` line and writes
one request a line: `[CHANNEL-ID] %URI [%DATA…]`, each value URL-escaped, the URI
a URL or `host:port` for CONNECT. Each gets one answer line, `[CHANNEL-ID] OK`
(the ACL matches: clickguard would block; `message=` holds the reason codes,
shown as %o on Squid's error page) or `ERR` (it would not), or `BH` for a line
that names nothing to judge. With channel IDs an answer goes out as soon as it
is ready, so a slow name lookup delays only its own; without them (Squid's
`concurrency=0`) answers keep the order of the requests.

The judge is the proxy's (`build_judge`): the same index, feeds and learned
Thingbots, rebuilt off the answering path when the policy, a feed file or the
learned-hosts file changes; the last good judge serves meanwhile. With a Redis
(`--redis`, the policy's cluster.redis) the hosts the proxy nodes learn arrive
as they learn them (`clickguard.cluster`; events signed with the key in `--certs`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import socket
import sys
import threading
import traceback
import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple, cast

from clickguard.cluster import SharedState
from clickguard.decision.build import build_judge
from clickguard.decision.check import Decision, check, check_offline
from clickguard.decision.judge import Judge
from clickguard.decision.verdict import Verdict
from clickguard.errors import ClickguardError, URLError
from clickguard.files import mtime
from clickguard.intel.learned import STATE_FILE, LearnedHost, LearnedHosts
from clickguard.intel.resolver import Resolver
from clickguard.intel.sources import FeedSet
from clickguard.policy.model import Policy, load_policy
from clickguard.urls import NormalizedURL, normalize_url

logger = logging.getLogger(__name__)

MAX_LINE = 65536  # bytes; Squid's own URLs stop at 8 KiB, tripled at most by its escaping
MAX_PENDING = 1024  # requests judged at once; past it, reading waits
POLL_SECONDS = 1.0  # how often the policy, feed and learned-hosts files are looked at
LOOKUP_THREADS = 64  # name lookups under way at once (each holds a thread while getaddrinfo runs)

type WarnAs = Literal["block", "pass"]


class Request(NamedTuple):
    """One request line: its channel ID (None without concurrency) and the URI, if it names one."""

    channel: str | None
    uri: str | None
    problem: str | None = None  # why the line cannot be judged as it is


def parse_line(line: bytes, *, overlong: bool = False) -> Request:
    """A request line as Squid writes it: `[CHANNEL-ID] URI [more values]`, values URL-escaped.

    A first word of digits is a channel ID (a URI is never all digits).
    Values after the URI (`%DATA`, `-` when the acl line has none) are not used.
    """
    try:
        words = line.decode("utf-8").split()
    except UnicodeDecodeError:
        words = line.decode("utf-8", "backslashreplace").split()
        channel = words[0] if words and words[0].isdigit() else None
        return Request(channel, None, "the request line is not UTF-8 text")
    channel = None
    if words and words[0].isdigit():
        channel, words = words[0], words[1:]
    if not words or words[0] == "-":
        return Request(channel, None, "the request line names no URI")
    uri = words[0]
    if overlong:
        return Request(channel, uri, f"the request line is longer than {MAX_LINE} bytes")
    try:
        return Request(channel, urllib.parse.unquote(uri, errors="strict") if "%" in uri else uri)
    except UnicodeDecodeError:
        return Request(channel, uri, "the URI escapes bytes that are not UTF-8 text")


def target_url(uri: str) -> str:
    """The URL to judge for a %URI: itself, or https://host:port/ for CONNECT's host:port."""
    if "://" in uri:
        return uri
    host, sep, port = uri.rpartition(":")
    if sep and host and port.isdigit():
        return f"https://{host}:{port}/"
    return uri  # not a URL and not host:port: normalize_url says why


def quoted(value: str) -> str:
    """A kv-pair value as Squid's helper protocol reads it: in double quotes, \\ escaping \\ and \"."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
    return f'"{escaped}"'


def answer_line(channel: str | None, result: str, pairs: Sequence[tuple[str, str]] = ()) -> bytes:
    """One answer line: `[CHANNEL-ID] RESULT key="value"…`."""
    words = [channel] if channel is not None else []
    words.append(result)
    words += [f"{key}={quoted(value)}" for key, value in pairs]
    return (" ".join(words) + "\n").encode("utf-8", "backslashreplace")


def verdict_answer(channel: str | None, verdict: Verdict, warn_as: WarnAs) -> bytes:
    """OK when clickguard would block (warn too, unless warn_as is pass), else ERR.

    `message=` holds the reason codes space-separated (Squid's %o on the error page),
    `log=` the action and codes for access.log's %ea, `clickguard_action=` the action
    (an annotation squid.conf can test with `acl … note clickguard_action warn`).
    """
    codes = " ".join(verdict.codes) or ("check.incomplete" if verdict.action != "allow" else "")
    if verdict.action == "allow":
        return answer_line(channel, "ERR")
    pairs = [("message", codes), ("log", f"{verdict.action}:{codes.replace(' ', ',')}"),
             ("clickguard_action", verdict.action)]
    matches = verdict.action == "block" or warn_as == "block"
    return answer_line(channel, "OK" if matches else "ERR", pairs)


class Judging:
    """The judge in force, rebuilt when the files it was built from change (`poll`, off the answer path)."""

    def __init__(self, policy_path: Path, feed_specs: Sequence[str], state_dir: Path) -> None:
        self.policy_path = policy_path
        self.feed_specs = list(feed_specs)
        self.state_dir = state_dir
        self.learned_path = state_dir / STATE_FILE
        self._feeds: FeedSet | None = None
        self._watched: dict[Path, float | None] = {}
        self._learned_seen: float | None = None
        # Hosts the proxy nodes learned, from Redis (`share`): applied again over each reread of the file.
        self._shared: dict[str, LearnedHost] = {}
        self.shared: SharedState | None = None
        # ClickguardError here: the helper does not start (Squid logs why).
        self.judge = self._build(load_policy(policy_path).policy)

    def share(self, url: str, key: bytes) -> None:
        """Take the hosts the proxy nodes learn through their Redis (cluster.redis), as they learn them."""
        shared = SharedState(url, key, node=f"squid-helper/{socket.gethostname()}/{os.getpid()}")
        shared.on("learned", self._apply_learned)
        # Applied in the reader thread as they arrive: one dict assignment each, which lookups
        # in other threads see whole.
        def apply_now() -> None:
            shared.sync()

        shared.on_arrival = apply_now
        self.shared = shared
        shared.start()

    def _apply_learned(self, host: str, data: dict[str, Any] | None) -> None:
        """A host a proxy node learned (or, with data None, one it no longer holds as learned)."""
        entry = LearnedHost.from_shared(host, data)
        if entry is not None:
            self._shared[host] = entry
            self.judge.learned.merge(entry)

    def _build(self, policy: Policy) -> Judge:
        """A judge of this policy, the feeds (the last good copy of each carried over) and learned hosts."""
        watched = {self.policy_path: mtime(self.policy_path), self.state_dir / "feeds": mtime(
            self.state_dir / "feeds")}
        self._learned_seen = mtime(self.learned_path)
        judge, feeds = build_judge(policy, self.state_dir, feed_specs=self.feed_specs, previous=self._feeds)
        self._merge_shared(judge.learned)
        for path in feeds.watched_files():
            watched[path] = mtime(path)
        self._feeds, self._watched = feeds, watched
        return judge

    def poll(self) -> None:
        """Rebuild the judge if the policy or a feed changed, reread learned hosts if they did.

        A policy or feed that does not load leaves the last good judge serving (logged once per change).
        """
        if any(mtime(path) != seen for path, seen in self._watched.items()):
            try:
                self.judge = self._build(load_policy(self.policy_path).policy)
                gc.collect()  # the old index goes, the new one is kept off the cyclic GC's walks
                gc.freeze()
            except ClickguardError as e:
                self._watched = {p: mtime(p) for p in self._watched}
                logger.error("squid-helper: kept the last good policy and feeds: %s", e)
            return
        seen = mtime(self.learned_path)
        if seen != self._learned_seen:
            self._learned_seen = seen
            self.judge.learned.load()  # swaps its table in one assignment; a bad file keeps the old
            self._merge_shared(self.judge.learned)

    def _merge_shared(self, learned: LearnedHosts | None) -> None:
        """What came through Redis, over what the file says (the newer evidence of each host wins)."""
        if learned is not None:
            for entry in list(self._shared.values()):
                learned.merge(entry)


class Lines:
    """Splits bytes into lines, none longer than MAX_LINE: the rest of a longer one is dropped."""

    def __init__(self) -> None:
        self._buffer = b""
        self._dropping = False  # inside a line already answered as too long

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        """The complete lines in this chunk, each with whether it was cut (too long); linear in its size."""
        out: list[tuple[bytes, bool]] = []
        data = self._buffer + chunk if self._buffer else chunk
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if not self._dropping:
                out.append((data[start:end].rstrip(b"\r"), end - start > MAX_LINE))
            self._dropping, start = False, end + 1
        rest = data[start:]
        if len(rest) > MAX_LINE and not self._dropping:
            out.append((rest[:MAX_LINE], True))
            self._dropping = True
        self._buffer = b"" if self._dropping else rest
        return out

    def rest(self) -> list[tuple[bytes, bool]]:
        """The last line when the input ended without a newline."""
        rest, self._buffer = self._buffer, b""
        return [(rest, False)] if rest.strip() and not self._dropping else []


def finished_now[T](step: Coroutine[Any, Any, T]) -> T | None:
    """The coroutine's result if it completes without waiting for anything; else None (and it is closed)."""
    try:
        step.send(None)
    except StopIteration as done:
        return cast("T", done.value)
    step.close()
    return None


class Helper:
    """Answers request lines as their verdicts are ready; channel-less answers keep their order."""

    def __init__(self, judging: Judging, out: BinaryIO, *, resolve: bool = True,
                 warn_as: WarnAs = "block") -> None:
        self.judging = judging
        self.out = out
        self.resolver = Resolver() if resolve else None
        self.warn_as = warn_as
        self._last_in_order: asyncio.Future[None] | None = None

    def settled(self, request: Request, judge: Judge) -> bytes | NormalizedURL:
        """The answer when the line alone settles it (nothing to judge, or no URL), else the URL to judge."""
        if request.uri is None:
            return answer_line(request.channel, "BH", [("message", request.problem or "unreadable")])
        if request.problem is not None:
            return verdict_answer(request.channel, judge.decide([], incomplete=request.problem), self.warn_as)
        try:
            return normalize_url(target_url(request.uri))
        except URLError as e:
            verdict = judge.decide([], incomplete=f"the address cannot be parsed: {e}")
            return verdict_answer(request.channel, verdict, self.warn_as)

    def immediate(self, request: Request) -> bytes | None:
        """The answer now when no name lookup is needed (an address, a name resolved before), else None.

        Most requests are answered here, without a task of their own; a channel-less one
        only when no answer before it is still pending (those keep their order).
        """
        if request.channel is None and self._last_in_order is not None and not self._last_in_order.done():
            return None
        judge = self.judging.judge
        url = self.settled(request, judge)
        if isinstance(url, bytes):
            return url
        if self.resolver is None or url.is_ip:  # check() would not resolve either
            return verdict_answer(request.channel, check_offline(judge, url).verdict, self.warn_as)
        if self.resolver.cached(url.host) is None:
            return None
        decision = finished_now(check(judge, url, self.resolver))  # None: the cached answer just expired
        return None if decision is None else verdict_answer(request.channel, decision.verdict, self.warn_as)

    async def verdict(self, request: Request) -> bytes:
        """The answer line for one request, resolving its host's name when the policy's check needs it."""
        judge = self.judging.judge  # one judge for the whole request, whatever a reload does meanwhile
        url = self.settled(request, judge)
        if isinstance(url, bytes):
            return url
        decision: Decision = (await check(judge, url, self.resolver) if self.resolver
                              else check_offline(judge, url))
        return verdict_answer(request.channel, decision.verdict, self.warn_as)

    def respond(self, request: Request) -> Coroutine[Any, Any, None]:
        """Judge one request and write its answer: at once with a channel ID, else after the one before.

        Its place in the order is taken now, when the line is read, not when the task first runs.
        """
        after = done = None
        if request.channel is None:
            after, done = self._last_in_order, asyncio.get_running_loop().create_future()
            self._last_in_order = done
        return self._respond(request, after, done)

    async def _respond(self, request: Request, after: asyncio.Future[None] | None,
                       done: asyncio.Future[None] | None) -> None:
        """`respond`'s work: the verdict, then the answer once the one before it is written."""
        try:
            line = await self.verdict(request)
        except Exception as e:  # a bug must cost one answer, not the helper Squid depends on
            line = self.internal_error(request, e)
        if after is not None:
            await after
        self.write([line])
        if done is not None:
            done.set_result(None)

    @staticmethod
    def internal_error(request: Request, error: Exception) -> bytes:
        """BH for a request whose judging failed (a bug: its traceback goes to Squid's cache.log)."""
        traceback.print_exception(error, file=sys.stderr)
        return answer_line(request.channel, "BH", [("message", f"internal error: {type(error).__name__}")])

    def write(self, lines: list[bytes]) -> None:
        """Write these answers and flush them (answers ready together go out in one write)."""
        if lines:
            self.out.write(b"".join(lines))
            self.out.flush()
            lines.clear()

    async def serve(self, chunks: asyncio.Queue[bytes]) -> None:
        """Answer every request line from the queue of input chunks (b"" at the end), then return."""
        slots = asyncio.Semaphore(MAX_PENDING)
        tasks: set[asyncio.Task[None]] = set()
        lines = Lines()
        ready: list[bytes] = []  # answered now, written before anything is awaited

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            slots.release()

        async def start(raw: bytes, overlong: bool) -> None:
            if not raw.strip():
                return  # Squid sends none; a blank line asks nothing
            request = parse_line(raw, overlong=overlong)
            try:
                answer = self.immediate(request)
            except Exception as e:  # a bug must cost one answer, not the helper Squid depends on
                answer = self.internal_error(request, e)
            if answer is not None:
                ready.append(answer)
                return
            self.write(ready)  # before this line's answer, which comes after them
            await slots.acquire()
            task = asyncio.create_task(self.respond(request))
            tasks.add(task)
            task.add_done_callback(finished)

        while chunk := await chunks.get():
            for raw, overlong in lines.feed(chunk):
                await start(raw, overlong)
            self.write(ready)
        for raw, overlong in lines.rest():
            await start(raw, overlong)
        self.write(ready)
        if tasks:
            await asyncio.wait(tasks)


def _read_input(fd: int, loop: asyncio.AbstractEventLoop, chunks: asyncio.Queue[bytes]) -> None:
    """Read the helper's input in a thread (any kind of file) into the queue; b"" at its end."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()  # waits while the queue is full
        if not chunk:
            return


def _poll_files(judging: Judging, stop: threading.Event) -> None:
    """Look at the judge's files every POLL_SECONDS until stopped (in a thread of its own)."""
    while not stop.wait(POLL_SECONDS):
        try:
            judging.poll()
        except Exception:  # never let the watcher die: the last good judge goes on serving
            logger.exception("squid-helper: reload failed")


async def _main(helper: Helper, fd: int) -> None:
    """Answer the input until it ends, name lookups in a bounded pool of their own."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(LOOKUP_THREADS))
    chunks: asyncio.Queue[bytes] = asyncio.Queue(16)
    threading.Thread(target=_read_input, args=(fd, loop, chunks), daemon=True, name="squid-input").start()
    await helper.serve(chunks)


def run(judging: Judging, *, resolve: bool = True, warn_as: WarnAs = "block",
        stdin_fd: int = 0, out: BinaryIO | None = None,
        poller: Callable[[Judging, threading.Event], None] = _poll_files) -> int:
    """Serve Squid on stdin/stdout until stdin ends; 0 once every request read is answered."""
    stop = threading.Event()
    watcher = threading.Thread(target=poller, args=(judging, stop), daemon=True, name="squid-reload")
    watcher.start()
    try:
        asyncio.run(_main(Helper(judging, out or sys.stdout.buffer, resolve=resolve, warn_as=warn_as),
                          stdin_fd))
    except BrokenPipeError:
        return 0  # Squid closed our output: nobody is left to answer
    finally:
        stop.set()
    return 0
