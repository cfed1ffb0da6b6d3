"""The words every stage shares: what an indicator names, the feed formats, the classes of appliance.

They sit at the bottom of the package so that the policy model, the feed
parsers, the fingerprints and the reports can all name them without importing
one another.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal, get_args

# The feed formats a policy's `feeds[].format` and `--feed FORMAT:PATH` accept.
type FeedFormat = Literal["ip", "ipsum", "urlhaus_csv", "spamhaus_drop", "maltrail", "domains", "urls"]
FEED_FORMATS: tuple[str, ...] = get_args(FeedFormat.__value__)


class Kind(StrEnum):
    """What an indicator names, and so how it is matched."""

    IP = "ip"  # one address, IPv4 or IPv6; value canonical (`ipaddress` str form)
    CIDR = "cidr"  # a network; value canonical "net/prefixlen", host bits cleared
    DOMAIN = "domain"  # a domain and all its subdomains; value lower-case punycode, no trailing dot
    HOST = "host"  # exactly this host name, not its subdomains
    URL = "url"  # exactly this URL, as `urls.normalize_url(...).url` renders it
    PATH = "path"  # a request path on any host (maltrail payload names such as /Mozi.m)


class DeviceClass(StrEnum):
    """What kind of appliance a fingerprint names."""

    ROUTER = "router"
    CAMERA = "camera"
    DVR = "dvr"
    NAS = "nas"
    TV = "tv"
    PRINTER = "printer"
    SMART_APPLIANCE = "smart_appliance"
    EMBEDDED = "embedded"

    @property
    def label(self) -> str:
        """A human name for the class, for pages and reports."""
        return _LABELS[self]


_LABELS: Mapping[DeviceClass, str] = types.MappingProxyType({
    DeviceClass.ROUTER: "router or gateway",
    DeviceClass.CAMERA: "IP camera",
    DeviceClass.DVR: "DVR/NVR",
    DeviceClass.NAS: "NAS",
    DeviceClass.TV: "TV or media device",
    DeviceClass.PRINTER: "printer",
    DeviceClass.SMART_APPLIANCE: "smart appliance",
    DeviceClass.EMBEDDED: "embedded web server",
})
