"""An e-mail's origin: the address that handed the message to the organisation's first trusted relay.

Every relay prepends one ``Received:`` header, so the headers read newest first. The
walk starts at the first header written by a trusted relay (its ``by`` host is listed
in ``trusted_relays``; with no relay names listed, the topmost header with a ``from``
part is taken as the receiving host's own). A header is believed only while the
host that wrote it is trusted: when a believed header says the message came from an
address in ``internal_networks`` (or loopback, or an address listed among the
relays), the header below it was written by that internal host and is believed too.
The first believed header whose sender is outside is the boundary; its ``from``
address is the origin. Everything below the boundary was written by the sender and
is never read, so a forged header down there cannot choose the origin.

The sender's address is the one the receiving relay recorded from the connection,
not the name the sender announced: the bracketed or bare address in the comment
after ``from`` (Postfix, Sendmail, Exim, Exchange, Gmail, qmail), falling back to an
address literal written as the ``from`` host itself (Exim without reverse DNS). The
relay writes its record last: the last comment that opens with one ("rdns [ip]",
"[ip] helo=…", "ip") wins, so a HELO of several words holding a forged record (Postfix
accepts one and writes it first) cannot choose the origin.
A HELO/EHLO argument is never taken as the address. A sender named without any
address is trusted only when its name is one of the trusted relays (internal
submission, e.g. Exchange's ``with mapi``): a name is what the sender claims, an
address is what the relay saw.

At the boundary, `read_sender` reads what that relay recorded of the sender (its reverse
name, its HELO) and `clickguard.mail.home_line` judges whether it is a home line: the
`Origin` carries that evidence. Only the boundary header is read for it: it is the
first one the sender did not write.

Nothing here raises on a malformed header or message: unreadable parts are None and
the `Origin` says in plain words why it is unknown. Only a bad trusted-relay or
network entry raises `InputError`.
"""

from __future__ import annotations

import email.parser
import email.policy
import functools
import ipaddress
import itertools
import re
import socket
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from clickguard.errors import InputError, Problem
from clickguard.mail.home_line import HomeLine, Sender, judge_sender

__all__ = ["Hop", "Origin", "TrustedBoundary", "find_origin", "origin_of_message", "parse_received",
           "read_sender"]

type NetworkSpec = str | ipaddress.IPv4Network | ipaddress.IPv6Network


class Hop(NamedTuple):
    """One parsed ``Received:`` header; a part the header does not state (or states illegibly) is None."""

    from_host: str | None  # the name after "from" (lower case, no final dot); None for an address literal
    from_ip: str | None  # the address the receiving relay saw (canonical; IPv4-mapped IPv6 as IPv4)
    helo: str | None  # an explicit HELO/EHLO argument (helo=x, HELO x), as the sender announced it
    by_host: str | None  # the host that wrote the header
    line: int  # which Received header, counted from the top, 1-based (0 when parsed alone)


class Origin(NamedTuple):
    """Where a message came from, or why that is unknown."""

    ip: str | None
    hop: Hop | None  # the header that decided: the boundary, or where the walk stopped
    reason: str
    home_line: HomeLine | None = None  # the boundary header shows a home line (see mail.home_line)


# --- parsing one header ------------------------------------------------------------------------

_KEYWORDS = frozenset({"from", "by", "via", "with", "id", "for"})
# After spaces: a word (a backslash quotes the next character) or any other single character.
_TOKEN = re.compile(r"\s*(?:((?:\\.|[^\s();\\])+)|(.))", re.S)
_PAREN = re.compile(r"\\.|[()]", re.S)
_HELO = re.compile(r"(?<![\w.-])(?:helo|ehlo)(?:\s*=\s*|\s+)([^\s(),;]+)", re.I)
_BRACKETED = re.compile(r"\[([^\[\]\s]{2,80})\]")
# A comment that opens with the relay's record: "[ip]", "name [ip]", "ip", "user@ip" (port allowed).
_RECORD = re.compile(r"\s*(?:[^\s\[\]()]+\s+)?([^\s\[\]()]*\[[^\[\]\s]{2,80}\]|[^\s\[\]()]+)"
                     r"(?::\d{1,5})?(?:\s|$)")
_IPV4_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}")
_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
_BARE_TRIM = "[]<>,;\"'"


def _ip(text: str) -> str | None:
    """The canonical address written in text (IPv6: prefix, zone and IPv4-mapping undone), or None."""
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    text = text.partition("%")[0]
    if not 2 <= len(text) <= 45:
        return None
    # inet_pton, not ipaddress.ip_address: a tenth of the cost, and as strict (no octal, no
    # leading zeros in IPv4); ipaddress only spells the IPv6 result the canonical way.
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):  # ValueError: a NUL in the text
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    if packed[:12] == _MAPPED_PREFIX:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return str(ipaddress.IPv6Address(packed))


def _bare_ip(word: str) -> str | None:
    """An address written without brackets, as qmail and Exchange do, also as user@ip or ip:port."""
    word = word.rpartition("@")[2].strip(_BARE_TRIM)
    if (with_port := _IPV4_PORT.fullmatch(word)) is not None:
        word = with_port.group(1)
    return _ip(word)


def _host(word: str | None) -> str | None:
    """A host name as a comparable key: lower case, without the final dot."""
    if not word:
        return None
    host = word.lower().rstrip(".")
    return host or None


class _Clause:
    """One keyword's part of a header: its first word, the words after it, and its comments."""

    __slots__ = ("comments", "value", "words")

    def __init__(self) -> None:
        self.value: str | None = None
        self.words: list[str] = []
        self.comments: list[str] = []


def _comment_end(text: str, start: int) -> tuple[int, int]:
    """(end of the inner text, position after it) of the comment opened at text[start]."""
    close = text.find(")", start + 1)
    if close != -1 and "(" not in text[start + 1:close] and "\\" not in text[start + 1:close]:
        return close, close + 1  # the usual comment: flat
    depth = 0  # comments nest and a backslash quotes the next character (RFC 5322)
    for mark in _PAREN.finditer(text, start):
        if mark.group() == "(":
            depth += 1
        elif mark.group() == ")":
            depth -= 1
            if depth == 0:
                return mark.start(), mark.end()
    return len(text), len(text)  # an unclosed comment runs to the end


def _clauses(text: str) -> dict[str, _Clause]:
    """The "from" and "by" clauses of a header (the first of each), up to the ';' before the date."""
    clauses: dict[str, _Clause] = {}
    current = _Clause()  # words before any keyword: read, then dropped
    pos = 0
    while (token := _TOKEN.match(text, pos)) is not None:
        pos = token.end()
        word = token.group(1)
        if word is None:
            char = token.group(2)
            if char == "(":
                inner_end, pos = _comment_end(text, token.start(2))
                current.comments.append(text[token.end(2):inner_end])
            elif char == ";":
                break
            continue  # a stray ")" or backslash in junk
        if (keyword := word.lower()) in _KEYWORDS:
            # A repeated keyword (a second "from" in junk) must not overwrite the first.
            current = _Clause() if keyword in clauses else clauses.setdefault(keyword, _Clause())
        elif current.value is None and not current.comments:
            current.value = word
            if current is clauses.get("by") and "from" in clauses:
                break  # what follows "by HOST" (with, id, for) says nothing about the sender
        else:
            current.words.append(word)
    return clauses


def _sender(clause: _Clause) -> tuple[str | None, str | None, str | None]:
    """(host, address, helo) of a "from" clause."""
    helo: str | None = None
    texts: list[str] = []
    for comment in clause.comments:
        if (found := _HELO.search(comment)) is not None:
            helo = helo or found.group(1)
            # The HELO argument is the sender's claim; only the rest may name the address.
            comment = f"{comment[:found.start()]} {comment[found.end():]}"
        texts.append(comment)
    address: str | None = None
    # The relay writes its record of the connection last, right before "by": a comment opening
    # with it after a HELO that holds spaces and brackets (Postfix accepts one) is the relay's.
    for text in reversed(texts):
        if (record := _RECORD.match(text)) is not None and (address := _bare_ip(record.group(1))):
            break
    for text in texts if address is None else ():
        for literal in _BRACKETED.finditer(text):
            if (address := _ip(literal.group(1))) is not None:
                break
        if address is not None:
            break
    if address is None:
        address = next((a for t in texts for w in t.split() if (a := _bare_ip(w)) is not None), None)
    host = clause.value
    if host is not None and (literal_ip := _bare_ip(host)) is not None:
        # "from [198.51.100.7] (helo=x)": the address stands where the name would.
        address = address or literal_ip
        host = None
    if address is None:
        address = next((a for w in clause.words if (a := _bare_ip(w)) is not None), None)
    if helo is not None and not helo.startswith("["):
        helo = _host(helo)
    return _host(host), address, helo


def parse_received(value: str, *, line: int = 0) -> Hop:
    """Parse one Received header value (folded or not); parts that cannot be read are None."""
    if value[:9].lower() == "received:":
        value = value[9:]
    clauses = _clauses(value)
    by = clauses.get("by")
    by_host = _host(by.value) if by is not None else None
    sender = clauses.get("from")
    if sender is None:
        return Hop(None, None, None, by_host, line)
    from_host, from_ip, helo = _sender(sender)
    return Hop(from_host, from_ip, helo, by_host, line)


# A comment opening with "rdns [ip]": the reverse name the relay looked up (Postfix, Sendmail, Gmail,
# Courier). Anchored: only the comment's opening counts, so the match is linear whatever follows.
_NAMED_LITERAL = re.compile(r"\s*(?!(?:helo|ehlo)\b)([^\s\[\]()=]+)\s*\[([^\[\]\s]{2,80})\]", re.I)
# RFC 3848's "with ESMTPSA" and friends, Postfix's and Sendmail's own notes of an authenticated client.
_AUTHENTICATED = re.compile(r"\bwith\s+(?:e?smtp|utf8smtp|lmtp)s?a\b|authenticated sender|\(authenticated\b",
                            re.I)


def read_sender(value: str) -> Sender | None:
    """What the relay that wrote a Received header recorded of the sender; None without an address.

    The three shapes: "from HELO (RDNS [IP])" (Postfix, Sendmail, Gmail, Courier; RDNS
    "unknown" when there is none); "from RDNS ([IP] helo=HELO)" and "from RDNS (HELO x)
    (IP)" (Exim, qmail: an explicit HELO, the name after "from" is the reverse name, an
    address literal or "unknown" there meaning none); "from NAME ([IP])" or "from NAME
    (IP)" (Exchange, or Exim when HELO and reverse name agree): NAME is the HELO and the
    header does not say whether a reverse name was found.
    """
    if value[:9].lower() == "received:":
        value = value[9:]
    clause = _clauses(value).get("from")
    if clause is None:
        return None
    _name, address, helo = _sender(clause)
    if address is None:
        return None
    authenticated = _AUTHENTICATED.search(value) is not None
    raw = clause.value
    literal = _bare_ip(raw) if raw is not None else None
    name = _host(raw) if raw is not None and literal is None else None
    as_written = name if name is not None else (f"[{literal}]" if literal else None)
    # The relay's own record is the last comment (a HELO of several words may hold a forged one).
    for comment in reversed(clause.comments):
        found = _NAMED_LITERAL.match(comment)
        if found is not None and _ip(found.group(2)) == address:
            named = _host(found.group(1))
            return Sender(address, None if named == "unknown" else named, True, as_written, authenticated)
    if helo is not None:
        reverse = None if name in (None, "unknown") else name
        return Sender(address, reverse, True, helo.lower(), authenticated)
    return Sender(address, None, False, as_written, authenticated)


# --- who is trusted ----------------------------------------------------------------------------

class _Networks:
    """A set of IPv4 and IPv6 networks; a lookup costs one probe per distinct prefix length."""

    __slots__ = ("_tables",)

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        by_prefix: dict[tuple[int, int], set[int]] = {}
        for net in networks:
            bits = net.max_prefixlen
            by_prefix.setdefault((net.version, net.prefixlen), set()).add(
                int(net.network_address) >> (bits - net.prefixlen))
        # per version: (shift, frozenset of network keys), longest prefix first
        self._tables: dict[int, tuple[tuple[int, frozenset[int]], ...]] = {
            version: tuple(sorted(
                ((32 if version == 4 else 128) - prefix, frozenset(keys))
                for (v, prefix), keys in by_prefix.items() if v == version))
            for version in (4, 6)}

    def __contains__(self, address: str) -> bool:
        version, family = (6, socket.AF_INET6) if ":" in address else (4, socket.AF_INET)
        try:
            number = int.from_bytes(socket.inet_pton(family, address))
        except (OSError, ValueError):
            return False
        return any(number >> shift in keys for shift, keys in self._tables[version])


def _networks(specs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks from CIDR strings, without a check (the module's own constant tables)."""
    return [ipaddress.ip_network(spec) for spec in specs]


# Loopback is always trusted: a trusted relay that received from 127.0.0.1 received
# from itself (a content filter re-injecting, as amavis does).
_LOOPBACK = _networks(["127.0.0.0/8", "::1/128"])
# Addresses that cannot be anyone's origin on the Internet. Not ipaddress.is_private,
# which also covers the documentation ranges and so would hide real-looking origins.
_NOT_PUBLIC = _Networks(_networks([
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/3", "::/127", "fc00::/7", "fe80::/10", "ff00::/8"]))


def _problem(field: str, entry: object, message: str) -> InputError:
    """An InputError naming the policy field and the entry at fault."""
    return InputError([Problem("policy", None, f"email.{field}", f"{entry!s}: {message}")])


class TrustedBoundary:
    """The organisation's relays and networks, parsed once; `find_origin` walks headers against it.

    A relay name covers its subdomains (``corp.example`` trusts ``mx1.corp.example``),
    as domains do everywhere in the policy; ``*.corp.example`` trusts only the
    subdomains. Addresses and networks may stand among the relays too.
    """

    __slots__ = ("_domains", "_networks", "_subdomains_only")

    def __init__(self, trusted_relays: Iterable[NetworkSpec] = (),
                 internal_networks: Iterable[NetworkSpec] = ()) -> None:
        domains: set[str] = set()
        subdomains_only: set[str] = set()
        networks = list(_LOOPBACK)
        for entry in trusted_relays:
            if not isinstance(entry, str):
                networks.append(entry)
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
                continue
            except ValueError:
                pass
            name = _host(entry.strip())
            wildcard = name is not None and name.startswith("*.")
            if wildcard and name is not None:
                name = name[2:]
            if not name or any(c.isspace() or c in "*[]()@/;" for c in name):
                raise _problem("trusted_relays", entry, "not a host name, *.domain, address or network")
            (subdomains_only if wildcard else domains).add(name)
        for spec in internal_networks:
            try:
                networks.append(ipaddress.ip_network(spec.strip() if isinstance(spec, str) else spec,
                                                     strict=False))
            except ValueError:
                raise _problem("internal_networks", spec, "not an address or network") from None
        self._domains = frozenset(domains)
        self._subdomains_only = frozenset(subdomains_only)
        self._networks = _Networks(networks)

    def has_relay_names(self) -> bool:
        """Whether any relay is known by name (otherwise the top header is taken as ours)."""
        return bool(self._domains or self._subdomains_only)

    def is_relay_name(self, host: str | None) -> bool:
        """Whether a host name is one of the trusted relays; cost follows the host's labels."""
        if not host:
            return False
        if host in self._domains:
            return True
        dot = host.find(".")
        while dot != -1:
            parent = host[dot + 1:]
            if parent in self._domains or parent in self._subdomains_only:
                return True
            dot = host.find(".", dot + 1)
        return False

    def is_trusted_ip(self, address: str) -> bool:
        """Whether an address is internal, a listed relay, or loopback."""
        return address in self._networks

    def find_origin(self, headers: Sequence[str]) -> Origin:
        """The origin of a message from its Received header values, top (newest) first."""
        if not headers:
            return Origin(None, None, "no Received header")
        # Parsed lazily: the headers below the boundary are the sender's, and may be many.
        hops = (parse_received(value, line=number) for number, value in enumerate(headers, 1))
        if self.has_relay_names():
            first = next((hop for hop in hops if self.is_relay_name(hop.by_host)), None)
            if first is None:
                return Origin(None, None, "no Received header was added by a trusted relay")
        else:
            first = next((hop for hop in hops if hop.from_host or hop.from_ip), None)
            if first is None:
                return Origin(None, None, "no Received header names a sender")
        last: Hop | None = None
        for hop in itertools.chain((first,), hops):
            if hop.from_host is None and hop.from_ip is None:
                # "(qmail 4711 invoked from network)" or a local pickup: names no sender,
                # and is written by the trusted host above, so the walk goes on.
                continue
            last = hop
            if hop.from_ip is None:
                if self.is_relay_name(hop.from_host):
                    continue  # internal submission between our own servers, named only
                return Origin(None, hop, f"first untrusted hop names no IP "
                                         f"(Received header {hop.line}, from {hop.from_host})")
            if self.is_trusted_ip(hop.from_ip):
                continue
            receiver = hop.by_host or f"the relay of Received header {hop.line}"
            if hop.from_ip in _NOT_PUBLIC:
                return Origin(None, hop, f"handed to {receiver} by {hop.from_ip}, a private address "
                                         f"outside the internal networks")
            return Origin(hop.from_ip, hop, f"handed to {receiver} by {hop.from_ip}",
                          self._home_line(headers[hop.line - 1], hop.from_ip))
        return Origin(None, last, "every relay is internal")

    def _home_line(self, header: str, address: str) -> HomeLine | None:
        """The home-line evidence in the boundary header (its sender's address must be the origin's)."""
        sender = read_sender(header)
        if sender is None or sender.address != address:
            return None
        return judge_sender(sender, own_relay=self.is_relay_name)


@functools.lru_cache(maxsize=16)
def _boundary(trusted_relays: frozenset[NetworkSpec],
              internal_networks: frozenset[NetworkSpec]) -> TrustedBoundary:
    """One TrustedBoundary per configuration, so callers passing lists do not rebuild it per message."""
    return TrustedBoundary(trusted_relays, internal_networks)


def find_origin(headers: Sequence[str], *, trusted_relays: Iterable[NetworkSpec],
                internal_networks: Iterable[NetworkSpec]) -> Origin:
    """The origin of a message from its Received header values, top (newest) first."""
    return _boundary(frozenset(trusted_relays), frozenset(internal_networks)).find_origin(headers)


_HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def _text(value: str) -> str:
    """A raw header value with undecodable bytes (surrogate escapes) made harmless."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def origin_of_message(raw: bytes, *, trusted_relays: Iterable[NetworkSpec] = (),
                      internal_networks: Iterable[NetworkSpec] = ()) -> Origin:
    """The origin of a whole message (bytes); broken mail gives an unknown origin, never an error."""
    message = _HEADER_PARSER.parsebytes(raw)
    headers = [_text(value) for name, value in message.raw_items() if name.lower() == "received"]
    return find_origin(headers, trusted_relays=trusted_relays, internal_networks=internal_networks)
