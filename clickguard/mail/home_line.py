"""Whether an e-mail's origin is a home line: judged from what the organisation's relay recorded.

A Thingbot sends a few mails and moves on; feeds list it late or never. But the
``Received:`` header the organisation's first relay wrote says how the sender
looked when it handed the message over, and a hijacked router or camera looks
like one thing: a line of a consumer ISP talking SMTP straight to somebody else's
MX, where every legitimate sender on such a line goes through its provider's
relay or an authenticated submission.

The evidence, each a `Sign` (the values are carried in click links: never renumber):

- strong, one is enough: the relay's reverse name for the address has the shape an
  ISP gives its home lines (the address itself spelled in it, in dotted, dashed,
  zero-padded, reversed, hex or integer form, or a dynamic-pool word such as
  ``dyn``, ``pool``, ``dsl``, ``cable``, ``cpe``, ``ppp``, ``hsd``, ``dhcp`` next to
  numbers); a HELO of that shape; a HELO naming a device or a home computer
  (``router``, ``ipcam``, ``DESKTOP-1A2B3C4``); a HELO that is a bare address;
- weak, two are needed: no reverse name at all; a HELO that is no domain name
  (``localhost``, one label); a reverse name of a home line's shape that says
  ``static`` (a small business may run its own mail server there); a HELO claiming a
  mail provider's bare domain or one of the organisation's own relays; an IPv6
  address whose interface identifier was made from a MAC (EUI-64, as CPEs and
  appliances configure themselves).

What keeps large senders out, the goal being no false positive at all: a reverse
name with a mail-server word (``mail``, ``smtp``, ``mx``, ``mta``, ``out``, …) or under
a hosting provider's zone (``amazonaws.com``, ``your-server.de``, …) is never a home
line's; a spelled address must be the sender's own address, all of it (``mail180-8``
of Mandrill names two octets, not a line); "no reverse name" alone can be a relay's
passing DNS failure, so it never decides alone; an authenticated submission (the
organisation's own user at home) is not judged. Pure functions, no I/O.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable
from typing import NamedTuple

from clickguard.urls import registered_domain

__all__ = ["HomeLine", "OriginAddress", "Sender", "Sign", "describe", "judge_sender"]


class Sign(enum.IntFlag):
    """One piece of home-line evidence; the bits are one byte of a click link's token."""

    DYNAMIC_NAME = 0x01  # the reverse name is a home line's
    NO_NAME = 0x02  # the relay found no reverse name (weak)
    DEVICE_HELO = 0x04  # the HELO names a device or a home computer
    ADDRESS_HELO = 0x08  # the HELO is a bare address or an address literal
    DYNAMIC_HELO = 0x10  # the HELO (or the name the relay wrote for it) is a home line's
    NOT_A_NAME_HELO = 0x20  # the HELO is no domain name: localhost, one label (weak)
    FORGED_HELO = 0x40  # the HELO claims a mail provider's domain or one of our relays (weak)
    MAC_ADDRESS = 0x80  # an IPv6 interface identifier made from a MAC, EUI-64 (weak)


STRONG = Sign.DYNAMIC_NAME | Sign.DEVICE_HELO | Sign.ADDRESS_HELO | Sign.DYNAMIC_HELO

_WORDS: dict[Sign, str] = {
    Sign.DYNAMIC_NAME: "its reverse name is a home line's",
    Sign.NO_NAME: "it has no reverse name",
    Sign.DEVICE_HELO: "it greeted with a device's or home computer's name",
    Sign.ADDRESS_HELO: "it greeted with a bare address",
    Sign.DYNAMIC_HELO: "it greeted with a home line's name",
    Sign.NOT_A_NAME_HELO: "its greeting is no domain name",
    Sign.FORGED_HELO: "its greeting claims a mail provider's or the organisation's own name",
    Sign.MAC_ADDRESS: "its IPv6 address is made from a device's MAC address",
}


class Sender(NamedTuple):
    """What the receiving relay recorded of the host that handed it the message."""

    address: str  # what the relay saw (canonical)
    reverse_name: str | None  # the relay's reverse lookup of the address (lower case, no final dot)
    reverse_stated: bool  # whether the header states a lookup at all (Exchange, and some forms, do not)
    helo: str | None  # the HELO/EHLO argument, lower case ("[192.0.2.1]" for a literal)
    authenticated: bool  # an authenticated submission (ESMTPSA, "Authenticated sender")


class HomeLine(NamedTuple):
    """The evidence that an origin is a home line."""

    signs: Sign
    reverse_name: str | None = None
    helo: str | None = None

    def detail(self) -> str:
        """The evidence in plain words, with the names when they are known."""
        words = describe(self.signs)
        named = [f"reverse name {self.reverse_name}"] if self.reverse_name else []
        if self.helo:
            named.append(f"HELO {self.helo}")
        return f"{words} ({', '.join(named)})" if named else words


class OriginAddress(str):
    """An origin address that carries its home-line evidence to `click_context` (a str everywhere else)."""

    home_line: HomeLine | None

    def __new__(cls, address: str, home_line: HomeLine | None) -> OriginAddress:
        """The address, with the evidence attached."""
        self = super().__new__(cls, address)
        self.home_line = home_line
        return self


def describe(signs: Sign) -> str:
    """The signs in plain words, strongest first; "" for none."""
    return "; ".join(words for sign, words in _WORDS.items() if sign in signs)


# --- names -------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+|[0-9]+")
_DIGIT = re.compile(r"[0-9]")
# Runs of digits separated by single dots, dashes or underscores: where an address is spelled out.
_NUMBER_RUNS = re.compile(r"[0-9]+(?:[-._][0-9]+)+")
_NUMBERS = re.compile(r"[0-9]+")
_ALNUM = re.compile(r"[0-9a-z]+")

# Words ISPs put in their home lines' reverse names (Comcast hsd, Charter cpe/res, Telekom dip,
# Vodafone pools/dslb, Orange abo, Virgin cable/cust, …). "static" is not one: a static
# business line may well run its own mail server.
_POOL_WORDS = frozenset({
    "dyn", "dynamic", "dynamicip", "dynip", "pool", "pools", "dsl", "adsl", "vdsl", "xdsl", "sdsl", "dslb",
    "dialup", "dial", "dialin", "cable", "cablemodem", "cpe", "cpc", "ppp", "pppoe", "broadband", "bband",
    "hsd", "dhcp", "client", "clients", "dclient", "cust", "customer", "customers", "subscriber", "subs",
    "res", "resi", "residential", "home", "user", "users", "ftth", "fttp", "fttx", "fttb", "lte", "mobile",
    "gprs", "umts", "wimax", "wireless", "abo", "dip", "nat", "cgnat", "lightspeed",
})
# A reverse name with one of these words names a server; ISPs never give them to home lines.
_SERVER_WORDS = frozenset({
    "mail", "mails", "smtp", "smtps", "mx", "mta", "mtas", "relay", "relays", "out", "outbound", "outgoing",
    "mailout", "mout", "smtpout", "mailer", "mailhost", "mailgw", "mailrelay", "esa", "iport", "ironport",
    "exchange", "postfix", "exim", "sendmail", "bounce", "bounces", "newsletter", "lists", "list", "mailman",
    "forward", "fwd", "sender", "delivery", "inbound", "mxout", "gateway", "mailgate",
})
# Providers whose default reverse names spell the address of a rented server, not a home line.
_HOSTING_DOMAINS = frozenset({
    "amazonaws.com", "googleusercontent.com", "your-server.de", "linode.com", "linodeusercontent.com",
    "vultrusercontent.com", "vultr.com", "cloudapp.net", "azure.com", "secureserver.net", "ovh.net",
    "contaboserver.net", "hostwindsdns.com", "scw.cloud", "oraclecloud.com", "hetzner.com",
    "upcloud.host", "leaseweb.net", "colocrossing.com", "choopa.net", "digitalocean.com",
    "kimsufi.com", "hosteurope.de", "ionos.com", "kundenserver.de", "akamaitechnologies.com",
})

# Words in a HELO that name a device or a home computer rather than a mail server.
_DEVICE_WORDS = frozenset({
    "router", "modem", "camera", "ipcam", "ipcamera", "webcam", "netcam", "dvr", "nvr", "xvr", "nas",
    "diskstation", "synology", "qnap", "readynas", "wdmycloud", "mybook", "hikvision", "dahua", "xmeye",
    "fritz", "fritzbox", "speedport", "easybox", "livebox", "freebox", "bbox", "zyxel", "tplink", "dlink",
    "netgear", "linksys", "mikrotik", "routerboard", "ubnt", "openwrt", "ddwrt", "raspberrypi", "raspberry",
    "printer", "smarttv", "settop", "stb", "android", "iphone", "ipad", "laptop", "notebook", "homeserver",
    "homeassistant", "ont", "huaweihg", "dreambox", "vuplus", "kodi", "libreelec", "osmc",
})
# Windows' and other systems' default computer names.
_DEVICE_NAME = re.compile(r"(?:desktop|laptop|win|pc|user|admin)-[0-9a-z]{4,15}|[0-9a-z]+-pc|"
                          r"android-[0-9a-f]{8,16}|[0-9a-z]+s-(?:iphone|ipad|macbook(?:-pro|-air)?)",
                          re.IGNORECASE)
# The bare domains of large mail providers: their relays never greet with them; bots copying
# the sender's address do.
_PROVIDER_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "google.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "hotmail.com",
    "outlook.com", "live.com", "msn.com", "microsoft.com", "aol.com", "icloud.com", "me.com", "mail.ru",
    "yandex.ru", "qq.com", "163.com", "126.com", "gmx.de", "gmx.net", "web.de", "t-online.de", "orange.fr",
    "free.fr", "comcast.net", "verizon.net", "att.net", "protonmail.com", "proton.me", "zoho.com",
})
_NOT_A_NAME = frozenset({"localhost", "localhost.localdomain", "localdomain", "local", "unknown"})


def _spells_address(name: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether name spells the whole address: dotted or dashed (either order), zero-padded, hex, integer."""
    if address.version == 6:
        prefix = address.packed[:8].hex()  # the /64 in hex, as Telekom's p2003….dip0 names carry it
        return any(prefix in run for run in _ALNUM.findall(name))
    octets = list(address.packed)
    for run in _NUMBER_RUNS.findall(name):
        numbers = [int(n) for n in re.split(r"[-._]", run)]
        for i in range(len(numbers) - 3):
            if numbers[i:i + 4] in (octets, octets[::-1]):
                return True
    padded = "".join(f"{o:03d}" for o in octets)
    as_hex = address.packed.hex()
    as_int = str(int(address))
    return any(padded in run or run == as_int for run in _NUMBERS.findall(name)) or as_hex in name


def _is_hosting(name: str) -> bool:
    """Whether a name is under a hosting provider's zone (some are public suffixes: walk the labels)."""
    dot = name.find(".")
    while dot != -1:
        if name[dot + 1:] in _HOSTING_DOMAINS:
            return True
        dot = name.find(".", dot + 1)
    return False


class _Shape(enum.Enum):
    """What a name's shape says about the line."""

    OTHER = 0
    HOME = 1  # a consumer line's name
    STATIC = 2  # a line's name, but "static": perhaps a small business with its own mail server


def name_shape(name: str, address: str) -> _Shape:
    """Whether a name (a reverse name or a HELO) has a home line's shape for this address.

    A name with a server word is a server's: an ISP gives one only on request, and
    bots greet with their line's own name (or nothing like a name), not with one of those.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return _Shape.OTHER
    if "." not in name or _is_hosting(name):
        return _Shape.OTHER
    domain = registered_domain(name)
    below = name[:-len(domain)].rstrip(".") if domain else name
    words = _WORD.findall(below)
    if any(word in _SERVER_WORDS for word in words):
        return _Shape.OTHER
    if not _spells_address(name, ip) and not (
            _DIGIT.search(below) and any(word in _POOL_WORDS for word in words)):
        return _Shape.OTHER
    return _Shape.STATIC if "static" in words else _Shape.HOME


def _helo_signs(helo: str, address: str, own_relay: Callable[[str], bool]) -> Sign:
    """The signs in the HELO argument alone."""
    if helo.startswith("[") or _is_address(helo):
        return Sign.ADDRESS_HELO
    if helo in _NOT_A_NAME or "." not in helo:
        signs = Sign.NOT_A_NAME_HELO
        if _DEVICE_NAME.fullmatch(helo) or any(w in _DEVICE_WORDS for w in _WORD.findall(helo)):
            signs |= Sign.DEVICE_HELO
        return signs
    first = helo.split(".")[0]
    if _DEVICE_NAME.fullmatch(first) or any(w in _DEVICE_WORDS for w in _WORD.findall(first)) \
            or helo.endswith((".fritz.box", ".speedport.ip", ".home", ".lan")):
        return Sign.DEVICE_HELO
    if name_shape(helo, address) is _Shape.HOME:
        return Sign.DYNAMIC_HELO
    if helo in _PROVIDER_DOMAINS or own_relay(helo):
        return Sign.FORGED_HELO
    return Sign(0)


def _is_address(text: str) -> bool:
    """Whether text is a bare IP address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _from_mac(address: str) -> bool:
    """Whether an IPv6 address has a modified EUI-64 interface identifier (ff:fe in its middle)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 6 and ip.packed[11:13] == b"\xff\xfe"


def judge_sender(sender: Sender, *, own_relay: Callable[[str], bool] = lambda host: False) -> HomeLine | None:
    """The home-line evidence about a sender, or None when there is not enough of it.

    ``own_relay`` says whether a name is one of the organisation's relays (a HELO
    claiming one from outside is forged).
    """
    if sender.authenticated:
        return None  # the organisation's own user, submitting from home: not a sender's line
    signs = Sign(0)
    weak_name = False  # a static line's name: the HELO must show something too
    if sender.reverse_name is not None:
        shape = name_shape(sender.reverse_name, sender.address)
        if shape is not _Shape.OTHER:
            signs |= Sign.DYNAMIC_NAME
            weak_name = shape is _Shape.STATIC
    elif sender.reverse_stated:
        signs |= Sign.NO_NAME
    if sender.helo and sender.helo != sender.reverse_name:  # a HELO equal to the reverse name adds nothing
        signs |= _helo_signs(sender.helo, sender.address, own_relay)
    if _from_mac(sender.address):
        signs |= Sign.MAC_ADDRESS
    strong = signs & STRONG & ~(Sign.DYNAMIC_NAME if weak_name else Sign(0))
    weak = signs & ~strong
    if strong or weak.bit_count() >= 2:
        return HomeLine(signs, sender.reverse_name, sender.helo)
    return None
