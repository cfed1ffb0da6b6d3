"""State that workers and nodes share through Redis: a local copy in each, so a request never waits on it.

Every change one process makes that the others must know of (a host learned as a
Thingbot, a continue granted, a click's next hop expected, a dashboard session
ended, a failed login) is an *event*: a kind, an id, its data and an expiry. The
process applies the change to its own structures at once and hands the event to
`SharedState.publish`; a background thread writes it to Redis, many at a time in one
round trip::

    SET     clickguard:<kind>:<id>  <signed event>  PXAT <expiry>   replayed by a process starting later
    PUBLISH clickguard:events       <signed event>                  applied by the processes running now

A second thread reads the subscription and queues what other processes published;
`sync()` applies the queue through the functions registered with `on`, in the
caller's thread (the proxy: its event loop, woken as events arrive, and before each
request is judged), so the structures are only ever changed by one thread. Looking
something up stays a local dict lookup: no request makes a Redis round trip.

Events are signed with the key in the certs directory (`clickguard.tokens`), which
every node must share: someone who can write to Redis but does not hold the key can
neither grant a continue nor plant a learned host, and an event whose signature or
shape is wrong is dropped and counted.

Redis unreachable: every process serves on its own state, keeps what it has not
published (up to `MAX_UNSENT`, the oldest dropped and counted), and says so through
`problem` (for /readyz). A Redis frozen or cut off by the network sends no error: the
writer asks it (PING) after `IDLE_PING` seconds without a write, so `connected` turns
false within about IDLE_PING + SOCKET_TIMEOUT seconds (dashboard sessions rely on
it). The writer thread tries again every `RETRY` seconds; once
connected it subscribes, replays what Redis holds (what others published meanwhile,
if Redis kept it), then publishes what it kept.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from clickguard.errors import TokenError
from clickguard.tokens import sign, verify

logger = logging.getLogger(__name__)

PREFIX = "clickguard:"
CHANNEL = PREFIX + "events"
EPOCH_KEY = PREFIX + "epoch"  # made once per Redis: binds dashboard sessions to it (web/dashboard.py)
_PURPOSE = "clickguard shared state"  # keeps these signed events apart from the other tokens of the key
MAX_UNSENT = 100_000  # events kept while Redis is down; beyond, the oldest are dropped (counted)
BATCH = 500  # events written in one round trip at most
REPLAY_MAX = 200_000  # keys of one kind replayed at a (re)connect at most
RETRY = 1.0  # seconds between attempts to reach Redis
SOCKET_TIMEOUT = 2.0  # seconds a Redis command may take before the connection counts as down
IDLE_PING = 1.0  # seconds without a write after which Redis is asked whether it still answers
_FORGET_SECONDS = 60.0  # how long a "forgotten" event is kept for processes that replay

type Data = dict[str, Any]


def redacted(url: str) -> str:
    """A Redis URL without its password, for logs, /readyz and status pages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:" if parts.username else ":"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}***@{host}"))
type Apply = Callable[[str, Data | None], None]  # (id, data), data None: the entry was forgotten


class Event(NamedTuple):
    """A change another process made: its kind, its id, and its data (None: forgotten)."""

    kind: str
    ident: str
    data: Data | None


@dataclass
class _Write:
    """One event on its way to Redis."""

    key: str
    value: str | None  # the signed event; None deletes the key (a "forget" publishes `note`)
    pxat: int  # expiry, ms since the epoch
    note: str | None  # what to publish (None: nothing, e.g. a node's own status)
    done: concurrent.futures.Future[bool] = field(default_factory=concurrent.futures.Future)


class SharedState:
    """One process's link to the shared state (see the module's docstring)."""

    def __init__(self, url: str, key: bytes, *, node: str | None = None, retry: float = RETRY,
                 max_unsent: int = MAX_UNSENT) -> None:
        self.url = url
        self.max_unsent = max_unsent
        self.node = node or f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
        self._key = key
        self._retry = retry
        self._appliers: dict[str, Apply] = {}
        self._arrived: deque[Event] = deque()  # from the subscription and replays; sync() applies
        self._outbox: deque[_Write] = deque()
        self._wake = threading.Event()  # the writer: something to write, or stop
        self._up = threading.Event()  # the reader: a subscription to read
        self._apply_lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.on_arrival: Callable[[], None] | None = None  # called (in the reader thread) as events arrive
        self.connected = False
        self._error: str | None = None  # the last reason Redis could not be used
        self.down_since: float | None = time.time()
        self.epoch: str | None = None  # set at the first connection (EPOCH_KEY)
        self.round_trips = 0  # commands (or pipelines) sent to Redis
        self.published = self.applied = self.refused = self.dropped = 0

    @property
    def where(self) -> str:
        """The Redis URL without its password, for logs and /readyz."""
        return redacted(self.url)

    @property
    def problem(self) -> str | None:
        """Why the state is not shared right now (None while connected), for /readyz and the logs."""
        if self.connected:
            return None
        if self.down_since is None or self._error is None:
            return f"{self.where}: not connected yet"
        since = datetime.fromtimestamp(self.down_since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{self.where} unreachable since {since} ({self._error}); {self.unsent} changes to publish"

    # -- the caller's side ------------------------------------------------------------------------

    def on(self, kind: str, apply: Apply) -> None:
        """Apply other processes' events of this kind with apply(id, data) (register before `start`)."""
        self._appliers[kind] = apply

    def start(self) -> None:
        """Connect and subscribe in the background: returns at once, Redis up or not."""
        for name, target in (("writer", self._writer), ("reader", self._reader)):
            thread = threading.Thread(target=target, name=f"clickguard-shared-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def publish(self, kind: str, ident: str, data: Data, *,
                expires: float) -> concurrent.futures.Future[bool]:
        """Share a change: written and published in the background; the future says True once in Redis.

        False means Redis is down: the event is kept and published once it is back.
        """
        value = sign({"p": _PURPOSE, "n": self.node, "k": kind, "i": ident, "d": data}, self._key,
                     expires=expires)
        return self._queue(_Write(f"{PREFIX}{kind}:{ident}", value, int(expires * 1000), value))

    def forget(self, kind: str, ident: str) -> concurrent.futures.Future[bool]:
        """Share that an entry is gone (its key deleted; running processes told)."""
        value = sign({"p": _PURPOSE, "n": self.node, "k": kind, "i": ident, "d": None}, self._key,
                     expires=time.time() + _FORGET_SECONDS)
        return self._queue(_Write(f"{PREFIX}{kind}:{ident}", None, 0, value))

    def put_status(self, data: Data, *, seconds: float) -> None:
        """This process's own status (feeds, counts) for `statuses`: kept `seconds`, not published."""
        value = sign({"p": _PURPOSE, "n": self.node, "k": "node", "i": self.node, "d": data}, self._key,
                     expires=time.time() + seconds)
        self._queue(_Write(f"{PREFIX}node:{self.node}", value, int((time.time() + seconds) * 1000), None))

    def statuses(self) -> dict[str, Data]:
        """Every process's status in Redis (`put_status`), by node; empty when Redis is down."""
        client = self._client
        if client is None or not self.connected:
            return {}
        try:
            found = self._read_kind(client, "node", own=True)
        except redis.RedisError:
            return {}
        return {event.ident: event.data for event in found if event.data is not None}

    def sync(self) -> int:
        """Apply what other processes published since the last call; the count applied.

        Cheap when nothing arrived (a deque's truth); one thread applies at a time, another
        caller meanwhile returns at once (the events will be applied by the first).
        """
        if not self._arrived or not self._apply_lock.acquire(blocking=False):
            return 0
        count = 0
        try:
            while self._arrived:
                event = self._arrived.popleft()
                apply = self._appliers.get(event.kind)
                if apply is None:
                    continue
                try:
                    apply(event.ident, event.data)
                    count += 1
                except (ValueError, KeyError, TypeError) as e:
                    # Signed by a node with the key, yet not what this version reads: say so, go on.
                    self.refused += 1
                    logger.warning("shared state: a %s event from another node not applied: %s",
                                   event.kind, e)
        finally:
            self._apply_lock.release()
        self.applied += count
        return count

    @property
    def unsent(self) -> int:
        """Events kept for Redis, not yet written."""
        return len(self._outbox)

    def status(self) -> Data:
        """For /readyz and status pages: where, connected or since when not, what waits."""
        out: Data = {"redis": self.where, "connected": self.connected, "node": self.node,
                     "unsent": self.unsent, "dropped": self.dropped}
        if self.problem:
            out["problem"] = self.problem
        return out

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued if Redis is up (within timeout), then stop the threads."""
        deadline = time.monotonic() + timeout
        while self._outbox and self.connected and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)  # the writer thread empties the outbox; bounded by the deadline
        self._stopping = True
        self._wake.set()
        self._up.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
        self._disconnect()

    # -- the threads ------------------------------------------------------------------------------

    def _queue(self, write: _Write) -> concurrent.futures.Future[bool]:
        """Hand a write to the writer thread (dropping the oldest kept one beyond MAX_UNSENT)."""
        if len(self._outbox) >= self.max_unsent:
            old = self._outbox.popleft()
            self.dropped += 1
            if not old.done.done():
                old.done.set_result(False)
        self._outbox.append(write)
        if not self.connected and not write.done.done():
            write.done.set_result(False)  # kept: published when Redis is back
        self._wake.set()
        return write.done

    def _writer(self) -> None:
        """Connect (again) while down; write the outbox while up."""
        while not self._stopping:
            if not self.connected and not self._connect():
                self._wake.wait(self._retry)
                self._wake.clear()
                continue
            if not self._outbox:
                if not self._wake.wait(IDLE_PING):
                    self._ping()  # a Redis frozen or cut off sends no error: ask, so `connected` is right
                self._wake.clear()
                continue
            batch = [self._outbox.popleft() for _ in range(min(BATCH, len(self._outbox)))]
            try:
                self._write(batch)
            except redis.RedisError as e:
                self._outbox.extendleft(reversed(batch))  # kept, in order, for the next connection
                self._down(e)

    def _ping(self) -> None:
        """Idle: check that Redis still answers (the dashboard's sessions trust `connected`)."""
        client = self._client
        if client is None:
            return
        try:
            client.ping()
            self.round_trips += 1
        except redis.RedisError as e:
            self._down(e)

    def _write(self, batch: list[_Write]) -> None:
        """Write (or delete) and publish a batch in one round trip."""
        client = self._client
        assert client is not None
        pipe = client.pipeline(transaction=False)
        now_ms = int(time.time() * 1000)
        for write in batch:
            if write.value is None:
                pipe.delete(write.key)
            elif write.pxat > now_ms:
                pipe.set(write.key, write.value, pxat=write.pxat)
            if write.note is not None:
                pipe.publish(CHANNEL, write.note)
        pipe.execute()
        self.round_trips += 1
        self.published += len(batch)
        for write in batch:
            if not write.done.done():
                write.done.set_result(True)

    def _reader(self) -> None:
        """Read the subscription while up; queue other processes' events for `sync`."""
        while not self._stopping:
            pubsub = self._pubsub
            if pubsub is None or not self.connected:
                self._up.wait(1.0)
                self._up.clear()
                continue
            try:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (redis.RedisError, OSError, ValueError) as e:  # ValueError: closed under us
                if self._pubsub is pubsub:
                    self._down(e)
                continue
            if message is None or message.get("type") != "message":
                continue
            event = self._event(message["data"])
            if event is not None:
                self._arrived.append(event)
                if self.on_arrival is not None:
                    self.on_arrival()

    def _event(self, raw: bytes | str, *, own: bool = False) -> Event | None:
        """A verified event of another process (or ours too: own), None for one that does not verify."""
        try:
            text = raw.decode("ascii") if isinstance(raw, bytes) else raw
            payload = verify(text, self._key, now=time.time())
        except (TokenError, UnicodeDecodeError):
            self.refused += 1
            return None
        kind, ident, data = payload.get("k"), payload.get("i"), payload.get("d")
        if payload.get("p") != _PURPOSE or not isinstance(kind, str) or not isinstance(ident, str) \
                or not (data is None or isinstance(data, dict)):
            self.refused += 1
            return None
        if payload.get("n") == self.node and not own:
            return None  # our own, applied when it was made
        return Event(kind, ident, data)

    def _connect(self) -> bool:
        """Connect, subscribe, learn the epoch and replay what Redis holds; False while it cannot."""
        client = redis.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT,
                                      socket_connect_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0),
                                      health_check_interval=0)
        try:
            client.ping()
            pubsub = client.pubsub()  # type: ignore[no-untyped-call]
            pubsub.subscribe(CHANNEL)  # before the replay: nothing published in between is missed
            client.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
            epoch = client.get(EPOCH_KEY)
            self.round_trips += 4
            replayed = 0
            for kind in self._appliers:
                events = self._read_kind(client, kind)
                self._arrived.extend(events)
                replayed += len(events)
        except redis.RedisError as e:
            client.close()
            self._note_down(e)
            return False
        self.epoch = epoch.decode("ascii", "replace") if isinstance(epoch, bytes) else str(epoch)
        self._client, self._pubsub = client, pubsub
        was_down = self.down_since if self._error else None
        self.connected, self.down_since = True, None
        self._up.set()
        if replayed and self.on_arrival is not None:
            self.on_arrival()
        logger.info("shared state: connected to %s (%d entries of other nodes replayed, %d changes of this "
                    "one to publish%s)", self.where, replayed, len(self._outbox),
                    f", after {time.time() - was_down:.1f} s unreachable" if was_down else "")
        return True

    def _read_kind(self, client: redis.Redis, kind: str, *, own: bool = False) -> list[Event]:
        """Every live entry of one kind in Redis, verified (at most REPLAY_MAX); this process's too if own."""
        events: list[Event] = []
        keys: list[bytes] = []
        for key in client.scan_iter(match=f"{PREFIX}{kind}:*", count=1000):
            keys.append(key)
            if len(keys) >= REPLAY_MAX:
                break
        self.round_trips += 1 + len(keys) // 1000
        for start in range(0, len(keys), 1000):
            values = client.mget(keys[start:start + 1000])
            self.round_trips += 1
            for value in values:
                if value is not None:
                    event = self._event(value, own=own)
                    if event is not None:
                        events.append(event)
        return events

    def _down(self, error: BaseException) -> None:
        """Redis stopped answering: serve on local state, keep what is unsent, reconnect in the background."""
        if self.connected:
            self.connected = False
            self.down_since = time.time()
            logger.warning("shared state: %s unreachable (%s); serving on this node's own state, changes "
                           "kept to publish when it is back", self.where, error)
        self._note_down(error)
        self._disconnect()
        self._wake.set()

    def _note_down(self, error: BaseException) -> None:
        """Remember why Redis could not be used (`problem` says it)."""
        self._error = str(error) or type(error).__name__

    def _disconnect(self) -> None:
        """Drop the connections (the reader's subscription too)."""
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        for thing in (pubsub, client):
            if thing is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    thing.close()
