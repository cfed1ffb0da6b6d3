"""The parent proxy: `upstream: {proxy: http://HOST:PORT, no_proxy: [...]}`.

With `proxy` set, everything the proxy fetches (requests, and feed fetches) goes through that
parent, except destinations listed in `no_proxy`, which go direct. Judging does not change:
clickguard still judges each request by its host and by the addresses it resolves the name to
itself (see clickguard/proxy/upstream.py for how the parent is made to connect to exactly those).

`no_proxy` entries are host names (a name covers its subdomains, as domains elsewhere in the
policy) and IP addresses or networks. A network matches a destination given as an address, and
a name whose addresses, as clickguard resolved them, all lie in the listed networks.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable
from typing import Annotated, Literal, NamedTuple
from urllib.parse import unquote, urlsplit

from pydantic import PlainValidator

from clickguard.policy.sections import Network, _dns_name, _Model, _network
from clickguard.policy.yamlfile import describe
from clickguard.urls import canonical_ip, parent_domains


class ParentProxy(NamedTuple):
    """Where the parent proxy listens, and the Basic credentials it wants, if any."""

    host: str  # a host name (normalised) or an IP address (IPv6 without brackets)
    port: int
    user: str | None = None
    password: str | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port), as sockets and mitmproxy take it."""
        return self.host, self.port

    @property
    def url(self) -> str:
        """http://host:port, without the credentials (fit for logs and for aiohttp's proxy=)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def authorization(self) -> str | None:
        """The Proxy-Authorization header's value for the credentials, None without any."""
        if self.user is None:
            return None
        token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode("ascii")
        return f"Basic {token}"

    def __repr__(self) -> str:
        # Never the password: policies are echoed in errors and logs.
        user = f"{self.user}:***@" if self.user is not None else ""
        return f"ParentProxy(http://{user}{self.url.removeprefix('http://')})"


def _parent_proxy(value: object) -> ParentProxy:
    """http://[user:password@]HOST:PORT; only plain http (the usual parent: Squid's http_port)."""
    if isinstance(value, ParentProxy):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a URL such as http://proxy.example:3128 (got {describe(value)})")
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
        hostname = parts.hostname
    except ValueError as e:
        raise ValueError(f"not a valid URL: {e}") from None
    if parts.scheme != "http":
        raise ValueError(f"only http:// parent proxies are supported (got {parts.scheme or 'no'} scheme)")
    if not hostname:
        raise ValueError("the URL names no host; write it as http://HOST:PORT")
    if not port:
        raise ValueError("give the parent's port, e.g. http://proxy.example:3128")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a proxy URL is http://HOST:PORT only, without a path, query or fragment")
    address = canonical_ip(hostname)
    host = address if address is not None else _dns_name(hostname)
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ParentProxy(host, port, user, password)


class NoProxy(NamedTuple):
    """The destinations that go direct: names (with their subdomains) and networks."""

    domains: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()


def _no_proxy(value: object) -> NoProxy:
    """A list of host names and IP addresses or networks."""
    if isinstance(value, NoProxy):
        return value
    if not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of host names and networks (got {describe(value)})")
    domains: set[str] = set()
    networks: list[Network] = []
    for i, entry in enumerate(value):
        try:
            networks.append(_network(entry))
            continue
        except ValueError:
            pass
        try:
            domains.add(_dns_name(entry))
        except ValueError as e:
            raise ValueError(f"entry {i + 1}: must be a host name, an IP address or a network "
                             f"like 10.0.0.0/8 ({e})") from None
    return NoProxy(frozenset(domains), tuple(networks))


def _in_networks(address: str, networks: Iterable[Network]) -> bool:
    """Whether an address lies in one of the networks."""
    try:
        ip = ipaddress.ip_address(canonical_ip(address) or address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


class UpstreamConfig(_Model):
    """The parent proxy requests and feed fetches go through, and what goes direct."""

    proxy: Annotated[ParentProxy | None, PlainValidator(_parent_proxy)] = None  # None: all direct
    no_proxy: Annotated[NoProxy, PlainValidator(_no_proxy)] = NoProxy()
    # What the CONNECT to the parent names: the address clickguard resolved and judged (the parent
    # can reach no other), or the name (the parent resolves it again: its domain rules and logs
    # see names, but a DNS answer that differs from clickguard's reaches an address nobody judged).
    connect_by: Literal["address", "name"] = "address"

    def goes_direct(self, host: str, addresses: tuple[str, ...] = ()) -> bool:
        """Whether a destination skips the parent: a listed name or parent domain, or only listed addresses.

        `host` is a normalised request host (a name, or an address without brackets);
        `addresses` are those clickguard resolved a name to (empty when it did not resolve).
        """
        if self.proxy is None:
            return True
        if host == self.proxy.host:
            return True  # the parent itself, asked directly, is not reached through itself
        no_proxy = self.no_proxy
        if any(domain in no_proxy.domains for domain in parent_domains(host)):
            return True
        if not no_proxy.networks:
            return False
        literal = canonical_ip(host)
        candidates = (literal,) if literal is not None else addresses
        return bool(candidates) and all(_in_networks(a, no_proxy.networks) for a in candidates)
