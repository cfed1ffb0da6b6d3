"""The proxy's state shared with its other workers and nodes through Redis (`cluster.redis`, `--redis`).

What goes, as `clickguard.cluster` events (kind: id → data, expiry):

- ``learned``: host → the `LearnedHost` (its evidence, URL, codes, times), until it expires:
  a host learned on one node is refused by the others before they connect to it;
- ``grant``: digest of (client, user, host) → the three and the deadline: a continue on one
  node is honoured on the others;
- ``trail``: digest of (client, user, URL) → the three and the click's mark (None once the
  hop was made): a click's next hop keeps its origin and click id on another node.

Each structure tells this module of its own changes (its ``shared`` hook) and takes other
nodes' through its ``apply``/``merge``, applied on the event loop (`SharedState.on_arrival`
wakes it; `sync` runs before each request is judged too). A change that another node may
need at once — the click's redirect, a continue's — is awaited (`settled`, bounded) before
the browser is answered, so the browser's next request finds it wherever it lands. Nothing
here runs per plain request but a deque's truth test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from clickguard.cluster import SharedState
from clickguard.intel.learned import LearnedHost
from clickguard.mail.clicks import FOLLOW_SECONDS, ClickMark

if TYPE_CHECKING:
    from clickguard.proxy.runtime import Runtime

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 0.5  # at most this long a click's or continue's answer waits for Redis to have its change
STATUS_SECONDS = 600.0  # a node's status in Redis outlives it by this much (`feeds status` of other nodes)


def digest(*parts: str | None) -> str:
    """A short fixed-length id for a tuple of texts (a client, a user, a URL): Redis keys stay small."""
    joined = "\0".join("\1" if p is None else p for p in parts)
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Sharing:
    """Links a runtime's learned hosts, grants and click trail to the shared state, while one is set."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.shared: SharedState | None = None
        self._last: concurrent.futures.Future[bool] | None = None  # the latest change handed to Redis
        self.learned_changed = False  # another node's learned host merged: the state file is behind
        self._extra: list[Callable[[SharedState | None], None]] = []

    @property
    def active(self) -> bool:
        """Whether state is shared (a Redis URL is set), up or not."""
        return self.shared is not None

    def also(self, link: Callable[[SharedState | None], None]) -> None:
        """Another part's link (the dashboard's sessions and lock-outs), called with each shared state."""
        self._extra.append(link)
        link(self.shared)

    def start(self, url: str, key: bytes, loop: asyncio.AbstractEventLoop | None) -> None:
        """Share from now on through the Redis at url (events signed with key); returns at once."""
        rt = self.runtime
        shared = SharedState(url, key)
        shared.on("learned", self._apply_learned)
        shared.on("grant", self._apply_grant)
        shared.on("trail", self._apply_trail)
        for link in self._extra:
            link(shared)
        if loop is not None:
            def wake() -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed: the proxy is stopping
                    loop.call_soon_threadsafe(self.sync)

            shared.on_arrival = wake
        self.shared = shared
        rt.learned.shared = self._learned
        rt.grants.shared = self._granted
        rt.trail.shared = self._trail
        shared.start()
        logger.info("shared state: through %s, as node %s", shared.where, shared.node)

    def sync(self) -> None:
        """Apply what other nodes changed (cheap when nothing arrived)."""
        if self.shared is not None:
            self.shared.sync()

    async def settled(self, timeout: float = SETTLE_SECONDS, *,
                      then: Awaitable[object] | None = None) -> None:
        """Wait (at most timeout) until the latest change is in Redis, or kept because Redis is down.

        `then`: awaited after (a response's audit record, which it waits for anyway).
        """
        last = self._last
        if last is not None and not last.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.wrap_future(last), timeout)
        if then is not None:
            await then

    def problem(self) -> str | None:
        """Why the state is not shared right now (Redis unreachable), None when it is or nothing is shared."""
        return self.shared.problem if self.shared is not None else None

    def put_status(self, status: dict[str, Any]) -> None:
        """This node's feed status, for `clickguard feeds status` of the whole cluster."""
        if self.shared is not None:
            self.shared.put_status(status, seconds=STATUS_SECONDS)

    def close(self) -> None:
        """Write what is queued (briefly) and stop sharing."""
        shared, self.shared = self.shared, None
        if shared is None:
            return
        rt = self.runtime
        rt.learned.shared = None
        rt.grants.shared = None
        rt.trail.shared = None
        for link in self._extra:
            link(None)
        shared.close()

    # -- this node's changes, out ----------------------------------------------------------------

    def _learned(self, entry: LearnedHost) -> None:
        """A host learned here."""
        if self.shared is not None:
            self._last = self.shared.publish("learned", entry.host, entry.as_dict(), expires=entry.expires)

    def _granted(self, client: str, user: str | None, host: str, until: float) -> None:
        """A continue granted here."""
        if self.shared is not None:
            self._last = self.shared.publish("grant", digest(client, user, host),
                                             {"client": client, "user": user, "host": host, "until": until},
                                             expires=until)

    def _trail(self, client: str, user: str | None, url: str, mark: ClickMark | None) -> None:
        """A click's next hop expected here (mark), or made here (None)."""
        if self.shared is not None:
            data = {"client": client, "user": user, "url": url,
                    "mark": mark.as_dict() if mark is not None else None}
            self._last = self.shared.publish("trail", digest(client, user, url), data,
                                             expires=time.time() + FOLLOW_SECONDS)

    # -- other nodes' changes, in (on the event loop) --------------------------------------------

    def _apply_learned(self, host: str, data: dict[str, Any] | None) -> None:
        """Another node learned a host."""
        entry = LearnedHost.from_shared(host, data)
        if entry is not None and self.runtime.learned.merge(entry):
            self.learned_changed = True
            logger.info("learned %s as a Thingbot on another node: %s", host, entry.evidence[:200])

    def _apply_grant(self, _ident: str, data: dict[str, Any] | None) -> None:
        """Another node granted a continue."""
        if data is None:
            return
        user = data["user"]
        self.runtime.grants.apply(str(data["client"]), None if user is None else str(user), str(data["host"]),
                                  float(data["until"]))

    def _apply_trail(self, _ident: str, data: dict[str, Any] | None) -> None:
        """Another node expects a click's next hop, or saw it made."""
        if data is None:
            return
        user, mark = data["user"], data["mark"]
        self.runtime.trail.apply(str(data["client"]), None if user is None else str(user), str(data["url"]),
                                 None if mark is None else ClickMark.from_dict(mark))
