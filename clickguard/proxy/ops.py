"""The ops listener: /healthz, /readyz, /metrics and /proxy.pac on a port of their own.

`clickguard run --ops HOST:PORT` (option ``clickguard_ops``) or the policy's ``ops.listen``
opens it, inside the proxy process on mitmproxy's event loop, never through the proxy's own
listener. The address is bound when the options are applied, so a port in use stops the start
with a clear error; a later policy reload that changes ``ops.listen`` needs a restart.

A slow or hostile client must never hold the proxy up: at most `MAX_CLIENTS` connections at
once (more are closed unanswered), a request head of at most `MAX_HEAD` bytes read within
`READ_TIMEOUT`, one request a connection, an answer written within `WRITE_TIMEOUT` or dropped,
and /metrics rendered at most once per `METRICS_FRESH` seconds however often it is asked for.

- ``/healthz``: 200 while the process serves (liveness).
- ``/readyz``: 200, or 503 with ``{"ready": false, "reasons": [...]}`` while no policy is
  loaded, a feed has no copy (a URL feed never fetched, a missing file), or an audit sink fails
  or its directory cannot be written (`not_ready`). A policy or feed list left empty is ready.
  ``"degraded": [...]`` lists what it serves without (Redis unreachable: each node on its own
  state), a 200 unless the policy's ``cluster.redis_down`` is ``not_ready``.
- ``/metrics``: the Prometheus text format (`clickguard.proxy.metrics`); the request path only
  counts into `clickguard.audit.tally.Tally`.
- ``/proxy.pac``, ``/wpad.dat``: the PAC file, as on the click host (`pac_page`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions

from clickguard.policy.ops import HostPort, parse_host_port
from clickguard.proxy.runtime import Runtime
from clickguard.web.pac import PAC_PATHS, PAC_TYPE, pac_file
from clickguard.web.pages import Page

logger = logging.getLogger(__name__)

MAX_CLIENTS = 8  # connections served at once; monitoring needs one or two
MAX_HEAD = 8192  # bytes of request line and headers
READ_TIMEOUT = 5.0  # seconds to send the request head
WRITE_TIMEOUT = 10.0  # seconds to take the answer
METRICS_FRESH = 1.0  # seconds a rendered /metrics is served again (scrapers ask every 15 s or so)
_WILDCARDS = {"", "0.0.0.0", "::"}


def _plain(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> Page:
    """An answer with no HTML around it."""
    return Page(status, {"Content-Type": content_type, "Cache-Control": "no-store",
                         "X-Content-Type-Options": "nosniff"}, body)


def pac_page(runtime: Runtime) -> Page:
    """The PAC file for the policy in force; 404 naming the fix when it has no proxy to name."""
    policy = runtime.judge.policy
    proxies = policy.pac.proxies or own_address()
    if not proxies:
        return _plain(404, b"no PAC file: list the proxies browsers should use in the policy "
                           b"(pac.proxies)\n")
    text = pac_file(policy.pac, click_host=policy.click_host, proxies=proxies)
    page = _plain(200, text.encode("ascii"), PAC_TYPE)
    page.headers["Cache-Control"] = "max-age=300"  # browsers keep it anyway; a policy change shows soon
    return page


def own_address() -> tuple[HostPort, ...]:
    """The proxy's listen address when it is a specific one (a wildcard names no address to browsers)."""
    host, port = ctx.options.listen_host, ctx.options.listen_port
    if host in _WILDCARDS or port is None:  # None: a port in mitmproxy's mode spec, not known here
        return ()
    return (HostPort(host, port),)


def _sink_problems(kind: str, sink: dict[str, Any] | None) -> Iterator[str]:
    """Why one audit sink cannot take records: it failed last time, or its directory is gone or read-only."""
    if sink is None:
        return
    path = Path(sink["path"])
    if sink["failing"]:
        yield f"audit {kind} {path}: failing: {sink['last_error']}"
    directory = path.parent
    if not directory.exists():
        yield f"audit {kind} {path}: its directory {directory} is missing"
    elif not directory.is_dir():
        yield f"audit {kind} {path}: {directory} is not a directory"
    elif not os.access(directory, os.W_OK | os.X_OK):
        yield f"audit {kind} {path}: its directory {directory} is not writable"
    elif path.exists() and not os.access(path, os.W_OK):
        yield f"audit {kind} {path}: not writable"


def not_ready(runtime: Runtime) -> list[str]:
    """Why the proxy should not be sent traffic now; [] when it is ready."""
    state = runtime.state
    if state is None:
        return ["no policy loaded"]
    reasons: list[str] = []
    for name in state.feeds.unloaded():
        error = state.feeds.status[name].last_error
        reasons.append(f"feed {name}: no copy loaded ({error or 'never fetched'})")
    if runtime.readers.processes and not runtime.readers.up.done():
        # Until one is up, a page to inspect waits for it (a second or more after start).
        reasons.append("inspection workers starting")
    health = runtime.audit_health()
    if health is not None:
        reasons += _sink_problems("log", health["log"])
        reasons += _sink_problems("store", health["store"])
    shared = runtime.sharing.problem()
    if shared is not None and state.loaded.policy.cluster.redis_down == "not_ready":
        reasons.append(f"shared state: {shared}")
    return reasons


def degraded(runtime: Runtime) -> list[str]:
    """What the proxy serves without, yet serves (cluster.redis_down: degraded): [] when nothing."""
    shared = runtime.sharing.problem()
    state = runtime.state
    if shared is None or (state is not None and state.loaded.policy.cluster.redis_down == "not_ready"):
        return []
    return [f"shared state: {shared}; serving on this node's own state"]


class BoundedListener:
    """A few short HTTP/1.1 exchanges on the loop, each bounded in size and time; `respond` answers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._server: asyncio.Server | None = None
        self._clients = 0

    async def respond(self, method: str, path: str) -> Page:
        """The page for one GET or HEAD request."""
        raise NotImplementedError

    async def start(self) -> None:
        """Serve on the bound socket."""
        self._server = await asyncio.start_server(self._client, sock=self.sock, limit=MAX_HEAD)

    async def close(self) -> None:
        """Stop accepting; connections under way end within their timeouts."""
        if self._server is not None:
            self._server.close()
        self.sock.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: one request, one answer, closed."""
        if self._clients >= MAX_CLIENTS:
            writer.transport.abort()
            return
        self._clients += 1
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = _request_line(head)
            page = await self.respond(method, path) if method in ("GET", "HEAD") else _not_allowed()
            writer.write(_response(page, with_body=method != "HEAD"))
            async with asyncio.timeout(WRITE_TIMEOUT):
                await writer.drain()
            writer.close()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            writer.transport.abort()  # a slow, oversized or malformed request gets nothing
        except Exception:  # a bug answering: logged to be fixed; the connection must not linger
            logger.exception("ops listener: answering failed")
            writer.transport.abort()
        finally:
            self._clients -= 1


def _not_allowed() -> Page:
    """405 for a method other than GET and HEAD."""
    page = _plain(405, b"method not allowed\n")
    page.headers["Allow"] = "GET, HEAD"
    return page


class OpsServer(BoundedListener):
    """The proxy's listener, on its loop."""

    def __init__(self, runtime: Runtime, sock: socket.socket) -> None:
        super().__init__(sock)
        self.runtime = runtime
        # Imported here: prometheus_client reads /proc when imported, and a proxy without the
        # listener (or `mitmdump -s` importing the addon) must touch no file it does not need.
        from clickguard.proxy import metrics

        self.metrics = metrics.Metrics(runtime)
        self._metrics: tuple[float, bytes] = (float("-inf"), b"")

    async def respond(self, method: str, path: str) -> Page:
        """The page for one GET or HEAD request."""
        if path == "/healthz":
            return _plain(200, b"ok\n")
        if path == "/readyz":
            reasons = not_ready(self.runtime)
            body = json.dumps({"ready": not reasons, "reasons": reasons,
                               "degraded": degraded(self.runtime)}).encode()
            return _plain(503 if reasons else 200, body + b"\n", "application/json")
        if path == "/metrics":
            return _plain(200, self._rendered(), "text/plain; version=0.0.4; charset=utf-8")
        if path in PAC_PATHS:
            return pac_page(self.runtime)
        return _plain(404, b"not found: /healthz, /readyz, /metrics, /proxy.pac\n")

    def _rendered(self) -> bytes:
        """/metrics, rendered again only when the last rendering is older than METRICS_FRESH."""
        at, text = self._metrics
        now = time.monotonic()
        if now - at >= METRICS_FRESH:
            text = self.metrics.render()
            self._metrics = (now, text)
        return text


def _request_line(head: bytes) -> tuple[str, str]:
    """Method and path (query dropped) of a request head; ValueError if it is not HTTP/1.x."""
    line = head.split(b"\r\n", 1)[0].decode("ascii")
    method, target, version = line.split(" ")
    if not version.startswith("HTTP/1.") or not target.startswith("/"):
        raise ValueError(f"not an HTTP/1.x request for a path: {line[:100]!r}")
    return method, target.split("?", 1)[0]


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _response(page: Page, *, with_body: bool) -> bytes:
    """An HTTP/1.1 response that closes the connection."""
    lines = [f"HTTP/1.1 {page.status} {_REASONS.get(page.status, 'Unknown')}",
             *(f"{name}: {value}" for name, value in page.headers.items()),
             f"Content-Length: {len(page.body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (page.body if with_body else b"")


def _bind(address: HostPort | Path) -> socket.socket:
    """A listening socket on address, a TCP one or a unix one (OSError if it cannot be had)."""
    if isinstance(address, Path):
        with contextlib.suppress(FileNotFoundError):
            address.unlink()  # left by this worker's predecessor, killed before it could remove it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(address))
            sock.listen(MAX_CLIENTS * 2)
        except OSError:
            sock.close()
            raise
        return sock
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    return socket.create_server((address.host, address.port), family=family, backlog=MAX_CLIENTS * 2)


def _ops_option(value: str) -> HostPort | Path:
    """The option's address: HOST:PORT, or unix:PATH (where a worker's supervisor asks, see `workers`)."""
    if value.startswith("unix:"):
        if not value[5:].startswith("/"):
            raise ValueError(f"unix:PATH needs an absolute path (got {value!r})")
        return Path(value[5:])
    return parse_host_port(value)


class Ops:
    """Owns the ops listener: option ``clickguard_ops``, else the policy's ``ops.listen``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.address: HostPort | Path | None = None
        self.server: OpsServer | None = None
        self._starting: asyncio.Task[None] | None = None

    def load(self, loader: object) -> None:
        """Register the option."""
        loader.add_option(  # type: ignore[attr-defined]
            "clickguard_ops", str, "",
            "HOST:PORT of the ops listener (/healthz, /readyz, /metrics, /proxy.pac); overrides the "
            "policy's ops.listen. Empty: the policy decides (off by default). unix:PATH: a unix "
            "socket (each worker's own under `clickguard run --workers N`).")

    def configure(self, updated: set[str]) -> None:
        """Bind the listener's address once it is known (after the policy is loaded)."""
        if not updated & {"clickguard_ops", "clickguard_policy"} or self.runtime.state is None:
            return
        try:
            wanted = _ops_option(ctx.options.clickguard_ops) if ctx.options.clickguard_ops \
                else self.runtime.judge.policy.ops.listen
        except ValueError as e:
            raise exceptions.OptionsError(f"clickguard_ops: {e}") from e
        if wanted == self.address:
            return
        if self.server is not None:
            logger.warning("ops listener: stays at %s until a restart (asked for %s)", self.address, wanted)
            return
        if wanted is not None:
            try:
                self.server = OpsServer(self.runtime, _bind(wanted))
            except OSError as e:
                raise exceptions.OptionsError(f"clickguard_ops: cannot listen on {wanted}: "
                                              f"{e.strerror or e}") from e
        self.address = wanted

    def running(self) -> None:
        """Start serving (the socket listens already: a client that comes early waits in its backlog)."""
        if self.server is not None:
            self._starting = asyncio.create_task(self.server.start(), name="clickguard-ops")
            shown = f"unix:{self.address}" if isinstance(self.address, Path) else f"http://{self.address}/"
            logger.info("ops listener at %s (healthz, readyz, metrics, proxy.pac)", shown)

    async def done(self) -> None:
        """Stop serving."""
        if self._starting is not None:
            await self._starting
        if self.server is not None:
            await self.server.close()
