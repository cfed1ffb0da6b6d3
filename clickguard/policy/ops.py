"""The ops listener (`ops:`) and the PAC file (`pac:`): what monitoring and browsers are told.

Both are off by default. `ops.listen` (or `clickguard run --ops HOST:PORT`) opens a listener for
/healthz, /readyz, /metrics and /proxy.pac; `pac:` says what the PAC file served at
``http://<click_host>/proxy.pac`` and ``/wpad.dat`` sends through which proxies and what goes
DIRECT. Every name and network here ends up inside the PAC file's JavaScript, so each is
validated to a DNS name, an IP address or a port: nothing IT writes can leave its string.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, NamedTuple

from pydantic import AfterValidator, PlainValidator, StrictBool

from clickguard.policy.sections import HostName, Network, NetworkEntry, _dns_name, _Model
from clickguard.policy.yamlfile import describe


class HostPort(NamedTuple):
    """A host (DNS name or IP address) and a TCP port."""

    host: str  # an IPv6 address without brackets
    port: int

    def __str__(self) -> str:
        """HOST:PORT, an IPv6 address in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(value: object) -> HostPort:
    """HOST:PORT (a DNS name, an IPv4 address or [an IPv6 address]) as written in a policy or option."""
    if isinstance(value, str):
        host, sep, port = value.strip().rpartition(":")
        if sep and port.isascii() and port.isdigit() and 0 < int(port) < 65536 and host:
            return HostPort(_host(host), int(port))
    raise ValueError(f"must be HOST:PORT such as proxy.corp.example:8080 or [::1]:9090 "
                     f"(got {describe(value)})")


def _host(text: str) -> str:
    """An IP address (IPv6 in brackets) or a DNS name, normalised."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if bare != text:
            raise ValueError(f"{text!r} in brackets is not an IPv6 address") from None
        return _dns_name(text)
    if address.version == 6 and bare == text:
        raise ValueError(f"write an IPv6 address in brackets: [{text}]")
    return str(address)


def _ipv4_only(networks: tuple[Network, ...]) -> tuple[Network, ...]:
    """PAC files match IPv4 networks only (isInNet); an IPv6 network here would silently do nothing."""
    for network in networks:
        if network.version != 4:
            raise ValueError(f"{network} is IPv6: a PAC file matches IPv4 networks only "
                             "(IPv6 addresses always go through the proxy)")
    return networks


type ProxyAddress = Annotated[HostPort, PlainValidator(parse_host_port)]


class PacDirect(_Model):
    """What the PAC file sends DIRECT, not through the proxy (the click host never goes direct)."""

    plain_hosts: StrictBool = True  # names without a dot (intranet, printer)
    private_networks: StrictBool = True  # addresses in 10/8, 172.16/12, 192.168/16, 127/8
    domains: tuple[HostName, ...] = ()  # IT's own domains, with their subdomains
    networks: Annotated[tuple[NetworkEntry, ...], AfterValidator(_ipv4_only)] = ()  # IT's other networks


class PacConfig(_Model):
    """The PAC file: the proxies to use, in order, and what goes DIRECT."""

    # In failover order. None listed: the proxy's own listen address when it is a specific one
    # (127.0.0.1:8080 for `make run`), else no PAC file is served.
    proxies: tuple[ProxyAddress, ...] = ()
    direct: PacDirect = PacDirect()
    # When every proxy is down: false (fail closed) leaves the browser without a connection;
    # true goes DIRECT, unprotected.
    fallback_direct: StrictBool = False


class OpsConfig(_Model):
    """The ops listener: health, readiness, metrics and the PAC file on a port of their own."""

    listen: ProxyAddress | None = None  # HOST:PORT; off by default; --ops overrides it
