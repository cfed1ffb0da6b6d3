"""Asynchronous, cached name resolution that never blocks the event loop."""

from __future__ import annotations

import asyncio
import socket
import time

from cachetools import TTLCache


class ResolveError(OSError):
    """A name that did not resolve (no such name, time-out, resolver failure)."""


class Resolver:
    """Resolves host names to addresses with a TTL cache; concurrent lookups of one name share one query."""

    def __init__(self, *, ttl: float = 60.0, negative_ttl: float = 10.0,
                 timeout: float = 5.0, maxsize: int = 65536) -> None:
        self.timeout = timeout
        self._answers: TTLCache[str, tuple[str, ...]] = TTLCache(maxsize, ttl, timer=time.monotonic)
        self._failures: TTLCache[str, str] = TTLCache(maxsize, negative_ttl, timer=time.monotonic)
        self._pending: dict[str, asyncio.Future[tuple[str, ...]]] = {}

    def cached(self, host: str) -> tuple[str, ...] | None:
        """The cached addresses of a host, or None when it has none (or only a failure)."""
        return self._answers.get(host)

    async def resolve(self, host: str) -> tuple[str, ...]:
        """Every address a host name resolves to, IPv4 and IPv6; raises ResolveError."""
        answer = self._answers.get(host)
        if answer is not None:
            return answer
        failure = self._failures.get(host)
        if failure is not None:
            raise ResolveError(failure)
        pending = self._pending.get(host)
        if pending is None:
            pending = self._pending[host] = asyncio.ensure_future(self._query(host))
            pending.add_done_callback(lambda _f: self._pending.pop(host, None))
        return await asyncio.shield(pending)

    async def _query(self, host: str) -> tuple[str, ...]:
        """One real lookup (getaddrinfo in the loop's thread pool), cached either way."""
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), self.timeout)
        except (OSError, TimeoutError, UnicodeError) as e:
            reason = f"{host} does not resolve: {e or 'timed out'}"
            self._failures[host] = reason
            raise ResolveError(reason) from e
        addresses = tuple(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
        self._answers[host] = addresses
        return addresses
