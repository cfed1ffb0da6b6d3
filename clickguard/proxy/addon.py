"""clickguard as a mitmproxy script: `mitmdump -s clickguard/addon.py --set clickguard_policy=FILE`.

mitmproxy offers every event to every registered addon object, whether it
handles it or not, so each object costs something on every request. clickguard
keeps one class per concern (`Config`, `Endpoint`, `Guard`, `Webmail`, `Ops`) and registers a
single object that hands each event to the part that owns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path

from mitmproxy import http, tcp, tls
from mitmproxy.proxy import layer, server_hooks

from clickguard.proxy.authentication import Authentication
from clickguard.proxy.config import Config
from clickguard.proxy.endpoint import Endpoint
from clickguard.proxy.event_loop import running_event_loop
from clickguard.proxy.guard import Guard
from clickguard.proxy.ops import Ops
from clickguard.proxy.runtime import Runtime
from clickguard.proxy.upstream import Upstream
from clickguard.proxy.webmail import Webmail

type Pending = Coroutine[None, None, None] | None
logger = logging.getLogger(__name__)


class Clickguard:
    """The addon mitmproxy sees: policy and feeds (Config), the click host (Endpoint), judging (Guard)."""

    def __init__(self) -> None:
        # Built when the module is imported (`addons` below): nothing here reads or writes a file.
        # Config.configure sets the real directories and loads the policy, feeds and learned hosts.
        self.runtime = Runtime(state_dir=Path("var"), certs_dir=Path("~/.mitmproxy").expanduser())
        self.config = Config(self.runtime)
        self.guard = Guard(self.runtime)
        self.endpoint = Endpoint(self.runtime, self.guard)
        self.webmail = Webmail(self.runtime)
        self.authentication = Authentication(self.runtime)  # identity.proxy_auth: 407 until signed in
        self.ops = Ops(self.runtime)  # /healthz, /readyz, /metrics on a port of their own
        self.upstream = Upstream(self.runtime)  # upstream.proxy: judged requests go through the parent

    def load(self, loader: object) -> None:
        """Register clickguard's options."""
        self.config.load(loader)
        self.ops.load(loader)

    def configure(self, updated: set[str]) -> None:
        """Apply changed options (loads the policy)."""
        self.config.configure(updated)
        self.authentication.configure()
        self.ops.configure(updated)

    def running(self) -> None:
        """Start background work; connections by name go to the addresses judged for it."""
        loop = asyncio.get_running_loop()
        logger.info("event loop: %s", running_event_loop(loop))  # clickguard run --event-loop
        self.guard.pins.install(loop)
        self.config.running()
        self.authentication.running()
        self.ops.running()

    async def done(self) -> None:
        """Stop background work and flush the audit log."""
        await self.ops.done()
        await self.config.done()
        await self.authentication.done()
        self.guard.pins.uninstall()

    def request(self, flow: http.HTTPFlow) -> Pending:
        """The click host's pages, or judging every other request."""
        self.runtime.tally.requests += 1
        self.runtime.sharing.sync()  # what other nodes learned or granted, before this is judged
        pending = self.endpoint.request(flow) or self.guard.request(flow)
        if self.runtime.judge.policy.upstream.proxy is None:
            return pending  # no parent proxy: no second step (nor its coroutine) per request
        return self._then_upstream(pending, flow)

    async def _then_upstream(self, pending: Coroutine[None, None, None], flow: http.HTTPFlow) -> None:
        """Judge first; what is allowed out goes through the parent proxy, or direct (no_proxy)."""
        await pending
        self.upstream.request(flow)

    def next_layer(self, nextlayer: layer.NextLayer) -> Pending:
        """A tunnel to a destination through the parent proxy runs inside a tunnel through it."""
        return self.upstream.next_layer(nextlayer)

    def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        """The CONNECT sent to the parent proxy names the address judged, and carries its credentials."""
        self.upstream.http_connect_upstream(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> Pending:
        """Proxy authentication, before a body is read: 407 without credentials the policy accepts."""
        return self.authentication.requestheaders(flow)

    def http_connect(self, flow: http.HTTPFlow) -> Pending:
        """Authenticate a CONNECT, then judge tunnels that are not intercepted."""
        pending = self.authentication.http_connect(flow)
        if pending is None:
            return self.guard.http_connect(flow)
        return self._then_guard_connect(pending, flow)

    async def _then_guard_connect(self, pending: Coroutine[None, None, None], flow: http.HTTPFlow) -> None:
        """Authenticate the CONNECT first; a tunnel refused with 407 is not judged."""
        await pending
        await self.guard.http_connect(flow)

    def tls_clienthello(self, data: tls.ClientHelloData) -> Pending:
        """Pass through, intercept or refuse a tunnel by every name it gives."""
        return self.guard.tls_clienthello(data)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> Pending:
        """Judge the addresses about to be connected to; a refused tunnel's parent connection is refused."""
        self.upstream.server_connect(data.server)
        return self.guard.server_connect(data)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        """A connection that did not open."""
        self.guard.server_connect_error(data)
        self.upstream.server_connect_error(data.server)

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> Pending:
        """Judge the address actually connected to."""
        self.upstream.server_connected(data.server)
        return self.guard.server_connected(data)

    def responseheaders(self, flow: http.HTTPFlow) -> Pending:
        """Bodies too large to hold are judged by their headers and sniffed as they stream."""
        return self.guard.responseheaders(flow)

    def response(self, flow: http.HTTPFlow) -> Pending:
        """Inspection, the audit record and tainted connections first; then webmail pages get click links."""
        pending = self.guard.response(flow)
        if pending is None:
            self.webmail.response(flow)
            return None
        return self._then_webmail(pending, flow)

    async def _then_webmail(self, pending: Coroutine[None, None, None], flow: http.HTTPFlow) -> None:
        """Finish the guard's work on a response, then rewrite it if it is (still) a webmail page."""
        await pending
        self.webmail.response(flow)

    def tcp_start(self, flow: tcp.TCPFlow) -> Pending:
        """Judge tunnels that carry neither TLS nor HTTP by their host."""
        return self.guard.tcp_start(flow)


def make_addons() -> list[object]:
    """The addon list mitmproxy loads."""
    return [Clickguard()]


addons = make_addons()
