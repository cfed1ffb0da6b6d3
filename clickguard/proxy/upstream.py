"""Requests through the policy's parent proxy (`upstream.proxy`), to the addresses clickguard judged.

mitmproxy stays in regular mode (it also serves the click host); a request that is to go
through the parent gets ``flow.server_conn.via`` set after it was judged, and mitmproxy then
opens its connection to the server through a CONNECT to the parent: intercepted HTTPS as TLS
inside that tunnel, and plain HTTP too (in regular mode mitmproxy tunnels every request it
sends through a parent, mitmproxy issue #7920). The parent therefore sees
``CONNECT address:port`` for everything, and must allow CONNECT from clickguard to any port
(Squid's stock ``http_access deny CONNECT !SSL_ports`` refuses port 80 otherwise).

Judging by address: clickguard resolves each name itself (`Resolver`) and judges those
addresses before the request leaves, as without a parent. The parent would resolve the name
again, and a different answer (rebinding, a short TTL, another resolver) would send the request
to an address nobody judged; so the CONNECT names the address clickguard checked, not the name
(`http_connect_upstream`), while the Host header and the TLS SNI keep the name (the policy may
choose `connect_by: name` instead, for a parent whose rules or logs need names, accepting that
risk). A name clickguard could not resolve goes to the parent by name: the parent resolves it,
and only the name was judged.

Tunnels (a CONNECT's content) that are not intercepted, because the policy excludes their host
(``intercept.exclude``) or they carry neither TLS nor HTTP, have no request to route: their
content is put under a tunnel through the parent when the tunnel starts (`next_layer`), as
mitmproxy's upstream mode does for every CONNECT; Guard still judges them, and a tunnel it
refuses never opens its connection to the parent (`server_connect`).

`no_proxy` destinations go direct, where the proxy's own connection pinning applies
(`pins.Pins`).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Coroutine

from mitmproxy import connection, http
from mitmproxy.net.server_spec import ServerSpec
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers.http import HttpStream

# The layer mitmproxy's own upstream mode tunnels through a parent with (a private module: checked
# against mitmproxy 12.3; tests/test_upstream.py fails loudly if it moves).
from mitmproxy.proxy.layers.http._upstream_proxy import HttpUpstreamProxy

from clickguard.errors import URLError
from clickguard.intel.resolver import ResolveError
from clickguard.policy.upstream import ParentProxy, UpstreamConfig
from clickguard.proxy.runtime import Runtime
from clickguard.urls import canonical_ip, normalize_host

logger = logging.getLogger(__name__)

type Target = tuple[str, int]  # (host as the request gives it, port)


def _authority(address: str, port: int) -> str:
    """host:port for a request line, IPv6 in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _connect_stream(layers: list[layer.Layer]) -> int | None:
    """Where the CONNECT whose content a next layer is chosen for sits in the stack; None if it is no such.

    None too when that content already runs under a tunnel through the parent.
    """
    for at in range(len(layers) - 1, -1, -1):
        found = layers[at]
        if isinstance(found, HttpUpstreamProxy):
            return None
        if isinstance(found, HttpStream):
            request = found.flow.request if found.flow else None
            return at if request is not None and request.method == "CONNECT" else None
    return None


def pinned_address(addresses: tuple[str, ...]) -> str | None:
    """The checked address the parent is asked to connect to: the first IPv4 one, else the first."""
    for address in addresses:
        if ":" not in address:
            return address
    return addresses[0] if addresses else None


class Upstream:
    """Routes judged requests through the parent proxy, or direct for no_proxy destinations."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Per client connection: the checked address for each (host, port) it sent through the
        # parent, read when mitmproxy sends the CONNECT for it. Goes with the client connection.
        self._checked: weakref.WeakKeyDictionary[connection.Client, dict[Target, str]] = \
            weakref.WeakKeyDictionary()
        self._parent_down = False  # said once in the log until the parent answers again
        # The connection to the parent of each tunnel put under one (`next_layer`): its server.
        self._tunnels: weakref.WeakKeyDictionary[connection.Connection, connection.Server] = \
            weakref.WeakKeyDictionary()

    @property
    def config(self) -> UpstreamConfig:
        """The policy's upstream section in force."""
        return self.runtime.judge.policy.upstream

    def request(self, flow: http.HTTPFlow) -> None:
        """Send a request that is going out through the parent, or direct; run after it was judged."""
        if flow.response or flow.error or not flow.live:
            return
        config = self.config
        parent = config.proxy
        host, port = flow.request.host, flow.request.port
        via: ServerSpec | None = None
        if parent is not None and host != self.runtime.judge.policy.click_host:
            name, addresses = self._checked_addresses(host)
            if not config.goes_direct(name, addresses):
                via = ("http", parent.address)
                address = pinned_address(addresses)
                if address is not None:
                    self._checked.setdefault(flow.client_conn, {})[(host, port)] = address
        self._use(flow, via)

    def next_layer(self, nextlayer: layer.NextLayer) -> Coroutine[None, None, None] | None:
        """A CONNECT's content bound for the parent runs under a tunnel through it."""
        parent = self.config.proxy
        if parent is None or nextlayer.context.server.address is None:
            return None
        stream_at = _connect_stream(nextlayer.context.layers)
        return None if stream_at is None else self._tunnel(nextlayer, parent, stream_at)

    async def _tunnel(self, nextlayer: layer.NextLayer, parent: ParentProxy, stream_at: int) -> None:
        """Put a CONNECT's content under a tunnel through the parent, unless it goes direct."""
        server = nextlayer.context.server
        assert server.address is not None
        host = str(server.address[0])
        name, addresses = self._checked_addresses(host)
        if not addresses and canonical_ip(name) is None:
            with contextlib.suppress(ResolveError):  # unresolved: judged by name, the parent resolves
                addresses = await self.runtime.resolver.resolve(name)
        if self.config.goes_direct(name, addresses):
            return
        # Layers another addon may have chosen for this spot are chosen again under the tunnel.
        del nextlayer.context.layers[stream_at + 1:]
        server.via = ("http", parent.address)
        tunnel = HttpUpstreamProxy.make(nextlayer.context, True)[0]
        # The tunnel knows its parent now; without a `via` the server stays judged as a direct one
        # (Guard.tcp_start and server_connect skip servers with one).
        server.via = None
        assert isinstance(tunnel, HttpUpstreamProxy)
        self._tunnels[tunnel.tunnel_connection] = server
        address = pinned_address(addresses)
        if address is not None:
            self._checked.setdefault(nextlayer.context.client, {})[(host, int(server.address[1]))] = address
        nextlayer.layer = tunnel

    def server_connect(self, server: connection.Server) -> None:
        """A refused tunnel (its server given an error by Guard) never opens its connection to the parent."""
        target = self._tunnels.get(server)
        if target is not None and target.error and not server.error:
            server.error = target.error

    def _checked_addresses(self, host: str) -> tuple[str, tuple[str, ...]]:
        """A request host normalised, and the addresses clickguard resolved it to (the judge's)."""
        try:
            name = normalize_host(host)
        except URLError:
            return host, ()
        address = canonical_ip(name.strip("[]"))
        if address is not None:
            return address, (address,)
        # The request hook's check has just resolved it through this resolver, within its TTL.
        return name, self.runtime.resolver.cached(name) or ()

    @staticmethod
    def _use(flow: http.HTTPFlow, via: ServerSpec | None) -> None:
        """Make the flow's server connection go through `via` (None: direct)."""
        server = flow.server_conn
        if server.via == via:
            return
        if server.timestamp_start is None:
            server.via = via
        else:
            # An opened connection's route cannot change: this request gets a new one.
            flow.server_conn = connection.Server(address=server.address, via=via)

    def http_connect_upstream(self, flow: http.HTTPFlow) -> None:
        """The CONNECT mitmproxy sends the parent: to the checked address, with the parent's credentials."""
        config = self.config
        parent = config.proxy
        if parent is None:
            return  # a parent given by hand (--mode upstream:…): mitmproxy's own options apply
        target = (flow.request.host, flow.request.port)
        address = self._checked.get(flow.client_conn, {}).get(target)
        if config.connect_by == "name":
            pass  # the policy lets the parent resolve the name again
        elif address is not None:
            authority = _authority(address, target[1])
            flow.request.authority = authority
            if "Host" in flow.request.headers:
                flow.request.headers["Host"] = authority
        else:
            logger.debug("upstream: %s:%d goes to the parent by name (clickguard did not resolve it)",
                         *target)
        authorization = parent.authorization()
        if authorization is not None:
            flow.request.headers["Proxy-Authorization"] = authorization

    def _is_parent(self, server: connection.Server) -> bool:
        """Whether a server connection is the one to the policy's parent proxy."""
        parent = self.config.proxy
        return parent is not None and server.address == parent.address

    def server_connect_error(self, server: connection.Server) -> None:
        """The parent cannot be reached: said once (the browser gets mitmproxy's 502 naming it)."""
        parent = self.config.proxy
        if parent is None or server.address != parent.address or self._parent_down:
            return
        self._parent_down = True
        logger.warning("upstream: the parent proxy %s cannot be reached (%s); requests through it get "
                       "502 until it answers again", parent.url, server.error)

    def server_connected(self, server: connection.Server) -> None:
        """The parent answers (again)."""
        if self._parent_down and self._is_parent(server):
            self._parent_down = False
            logger.info("upstream: the parent proxy answers again")
