"""URL and host normalisation, done the way a browser does it (WHATWG URL Standard).

A reputation lookup is only as good as its key: ``http://3232235777/``,
``http://bank.example@0300.0250.0.1/`` and ``HTTP:\\\\EVIL.example.\\x`` must all
reach the same entries as the address or host a browser would really connect to.
`normalize_url` therefore follows the WHATWG basic URL parser for the special
schemes (http, https, ws, wss, ftp) and `normalize_host` its host parser, with
two deliberate differences: trailing dots are removed from hosts (see
`_finish_ascii_host`), and the empty query ``?`` is dropped from ``url``, so that
equivalent spellings share one key and a normalised URL normalises to itself.

Every plain URL (lower-case scheme, ASCII host, nothing to encode) takes a
regular-expression fast path; anything else goes through the full parser.
Nothing here imports mitmproxy.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import unicodedata
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

import idna
import tldextract

from clickguard.errors import URLError

__all__ = [
    "DEFAULT_PORTS",
    "IPV4_MAPPED",
    "EmbeddedIPv4",
    "NormalizedURL",
    "canonical_ip",
    "embedded_ipv4",
    "is_ip_host",
    "normalize_host",
    "normalize_url",
    "parent_domains",
    "registered_domain",
    "url_of",
]

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


class NormalizedURL(NamedTuple):
    """A URL as a browser would request it, split into the parts lookups need."""

    url: str  # scheme://host[:port]path[?query]; no userinfo, no fragment, no default port
    scheme: str  # lower-case, one of DEFAULT_PORTS
    host: str  # punycode domain, dotted-quad IPv4 or compressed IPv6 (no brackets)
    port: int  # explicit port or the scheme's default
    path: str  # starts with "/", dot segments removed, percent-encoded
    query: str  # without the "?"; "" when there is none
    is_ip: bool  # host is an IP literal


_IPV4_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PATH_PLAIN = r"[!$&-;=@-\[\]_a-z|~]*"  # printable ASCII but "%", "\\" and the path-encode set
# The common case, which needs no parsing beyond this match: lower-case http(s); a
# canonical dotted quad, or a lower-case ASCII domain whose last label starts with a
# letter (so it cannot end in a number); a path with nothing to encode, no "\\" (read as
# "/") and only upper-case escapes; a query with nothing to encode. Anything else is
# left to the full parser.
_FAST_URL = re.compile(
    rf"(https?)://(?:((?:{_IPV4_OCTET}\.){{3}}{_IPV4_OCTET})|((?:[a-z0-9_-]*\.)*[a-z_-][a-z0-9_-]*))"
    r"(?::([0-9]{1,5}))?"
    rf"(/{_PATH_PLAIN}(?:%[0-9A-F]{{2}}{_PATH_PLAIN})*)?"
    r"(?:\?([!$-&(-;=?-~]*))?"
    r"(?:#.*)?",
    re.DOTALL,
)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# After "name:", digits up to the end of the authority mean "host:port", not a scheme.
_LOOKS_LIKE_PORT = re.compile(r"[0-9]*(?:[/\\?#]|\Z)")
_AUTHORITY_END = re.compile(r"[/\\?#]")
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
# WHATWG forbidden domain code points: forbidden host code points, C0 controls, "%" and DEL.
_FORBIDDEN_DOMAIN = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
# WHATWG path percent-encode set (including "^", added to the standard in 2024).
_PATH_UNSAFE = re.compile(r'[\x00-\x20"#<>?^`{}\x7f-\U0010ffff]')
# WHATWG special-query percent-encode set: every scheme accepted here is special.
_QUERY_UNSAFE = re.compile(r"[\x00-\x20\"#<>'\x7f-\U0010ffff]")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_DIGITS = frozenset("0123456789")
_OCTAL_DIGITS = frozenset("01234567")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})
_JOINERS = ("\u200c", "\u200d")
_new_tuple = tuple.__new__


def normalize_url(raw: str, *, default_scheme: str | None = None) -> NormalizedURL:
    """Canonicalise an absolute URL as a browser would; URLError where a browser would refuse it."""
    fast = _FAST_URL.fullmatch(raw)
    if fast is None:
        return _parse_url(raw, default_scheme)
    # Inlined rather than a helper: this runs on every request and calls cost here.
    scheme, address, domain, port_text, path, query = fast.groups()
    if address is not None:
        host, is_ip = address, True
    else:
        host, is_ip = domain, False
        if "xn--" in host:
            _check_punycode_labels(host.split("."))
    default_port = DEFAULT_PORTS[scheme]
    port = int(port_text) if port_text else default_port
    if port > 65535:
        raise URLError(f"port out of range: {raw!r}")
    if path is None:
        path = "/"
    elif "/." in path or "%2E" in path:
        path = _normalize_path(path)
    authority = host if port == default_port else f"{host}:{port}"
    if query:
        url = f"{scheme}://{authority}{path}?{query}"
    else:
        url, query = f"{scheme}://{authority}{path}", ""
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (about 0.25 µs a call here).
    return _new_tuple(NormalizedURL, (url, scheme, host, port, path, query, is_ip))


def normalize_host(host: str) -> str:
    """Canonical bare host (WHATWG host parser, trailing dots dropped); URLError if invalid."""
    if ":" in host and not host.startswith("["):
        # Feeds list IPv6 addresses without brackets; a domain can never contain ":".
        return _parse_ipv6(host)
    return _parse_host(host)[0]


@functools.cache
def _extractor() -> tldextract.TLDExtract:
    """The offline public-suffix extractor, built on first use (loading the snapshot is slow)."""
    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
    )


@functools.lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """eTLD+1 of a normalised host (private suffixes count); "" for IPs and public suffixes."""
    if not host or is_ip_host(host):
        return ""
    parts = _extractor()(host)
    if parts.suffix:
        return f"{parts.domain}.{parts.suffix}" if parts.domain else ""
    # Not under any listed suffix: the PSL's implicit "*" rule makes the last label the suffix.
    labels = host.rstrip(".").split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else ""


def parent_domains(host: str) -> list[str]:
    """The host and each parent domain up to the TLD, longest first; [] for IPs."""
    if not host or is_ip_host(host):
        return []
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def is_ip_host(host: str) -> bool:
    """Whether a normalised host is an IP literal (a domain never ends in a number)."""
    return ":" in host or host[host.rfind(".") + 1:].isdigit()


class EmbeddedIPv4(NamedTuple):
    """An IPv4 address carried inside an IPv6 address, and the form that carries it."""

    ipv4: str  # dotted quad
    form: str  # "NAT64", "local-use NAT64", "6to4", "IPv4-mapped", "IPv4-compatible", "Teredo client"…

    def __str__(self) -> str:
        if self.form.startswith("Teredo"):
            return f"the {self.form} {self.ipv4}"
        return f"the {self.form} form of {self.ipv4}"


IPV4_MAPPED = "IPv4-mapped"  # the one form that is the same socket address as its IPv4
_LOW32 = 0xFFFFFFFF
# (form, prefix length, prefix value): forms whose IPv4 address is the last 32 bits.
_LAST_32_BITS = (
    ("NAT64", 96, 0x0064FF9B << 64),  # RFC 6052 well-known prefix 64:ff9b::/96
    ("local-use NAT64", 48, 0x0064FF9B0001),  # RFC 8215 64:ff9b:1::/48, its /96 layout
    (IPV4_MAPPED, 96, 0xFFFF),  # ::ffff:0:0/96
    ("IPv4-compatible", 96, 0),  # ::/96 (RFC 4291, deprecated), without :: and ::1
)


def embedded_ipv4(address: str) -> tuple[EmbeddedIPv4, ...]:
    """The IPv4 addresses an IPv6 address carries, each with its form; () for anything else.

    An address of one of these forms reaches (or is routed by) the IPv4 host inside it,
    so a listed IPv4 address written as one of them must be judged as itself:

    - NAT64, the well-known prefix ``64:ff9b::/96`` (RFC 6052): the last 32 bits;
    - local-use NAT64, ``64:ff9b:1::/48`` (RFC 8215): the last 32 bits (the /96 layout
      DNS64 deployments use; the shorter RFC 6052 layouts are not read);
    - 6to4, ``2002::/16`` (RFC 3056): bits 16 to 47;
    - IPv4-mapped, ``::ffff:0:0/96``: the last 32 bits (a dual-stack socket's IPv4 peer);
    - IPv4-compatible, ``::/96`` except ``::`` and ``::1``: the last 32 bits;
    - Teredo, ``2001::/32`` (RFC 4380): the client, the last 32 bits with every bit
      flipped, then the server, bits 32 to 63.

    ``address`` is IPv6 text as anything writes it (a ``%zone`` suffix is ignored).
    """
    if ":" not in address:
        return ()
    try:
        number = int.from_bytes(socket.inet_pton(socket.AF_INET6, address.partition("%")[0]), "big")
    except (OSError, ValueError):  # not IPv6 text; ValueError for an embedded NUL
        return ()
    for form, prefixlen, prefix in _LAST_32_BITS:
        if number >> (128 - prefixlen) == prefix:
            if form == "IPv4-compatible" and number <= 1:
                return ()
            return (EmbeddedIPv4(_dotted(number & _LOW32), form),)
    if number >> 112 == 0x2002:
        return (EmbeddedIPv4(_dotted((number >> 80) & _LOW32), "6to4"),)
    if number >> 96 == 0x20010000:
        return (EmbeddedIPv4(_dotted((number & _LOW32) ^ _LOW32), "Teredo client"),
                EmbeddedIPv4(_dotted((number >> 64) & _LOW32), "Teredo server"))
    return ()


def _dotted(number: int) -> str:
    """Dotted-quad text of a 32-bit number."""
    return socket.inet_ntop(socket.AF_INET, number.to_bytes(4, "big"))


def url_of(scheme: str, host: str, port: int, path: str = "/") -> str:
    """The absolute URL of a request's parts, an IPv6 host in brackets.

    mitmproxy's ``Request.url`` writes an IPv6 host bare (``http://64:ff9b::1:8080/``),
    which no URL parser reads as that host: build the URL to judge from the parts.
    """
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{path if path != '*' else ''}"


def canonical_ip(text: str) -> str | None:
    """An address in one spelling: an IPv4-mapped IPv6 as its IPv4, IPv6 compressed, no zone.

    A mapped address is the same socket address as its IPv4 (it is how a dual-stack socket
    shows an IPv4 peer); every other embedding names another host and is kept as written
    (see `embedded_ipv4`). None when text is no IP address.
    """
    try:
        address = ipaddress.ip_address(text.strip().partition("%")[0])
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def _parse_url(raw: str, default_scheme: str | None) -> NormalizedURL:
    """The full WHATWG basic URL parser for special schemes, without a base URL."""
    text = _TAB_OR_NEWLINE.sub("", raw.strip(_C0_OR_SPACE))
    scheme_match = _SCHEME.match(text)
    if scheme_match is not None and not (
        default_scheme is not None
        and scheme_match.group(1).lower() not in DEFAULT_PORTS
        and _LOOKS_LIKE_PORT.match(text, scheme_match.end())
    ):
        scheme = scheme_match.group(1).lower()
        rest = text[scheme_match.end():]
    elif default_scheme is not None:
        scheme, rest = default_scheme.lower(), text
    else:
        raise URLError(f"not an absolute URL (no scheme): {raw!r}")
    default_port = DEFAULT_PORTS.get(scheme)
    if default_port is None:
        raise URLError(f"unsupported scheme {scheme!r}: {raw!r}")

    # Special schemes ignore any run of slashes and backslashes before the authority.
    rest = rest.lstrip("/\\")
    end_match = _AUTHORITY_END.search(rest)
    end = end_match.start() if end_match else len(rest)
    authority, rest = rest[:end], rest[end:]
    host_port = authority[authority.rfind("@") + 1:]  # userinfo runs to the last "@"
    host_text, port_text = _split_port(host_port)
    if not host_text:
        raise URLError(f"URL has no host: {raw!r}")
    host, is_ip = _parse_host(host_text)
    port = default_port
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()):
            raise URLError(f"invalid port {port_text!r}: {raw!r}")
        port = int(port_text)
        if port > 65535:
            raise URLError(f"port out of range {port_text!r}: {raw!r}")

    rest = rest.partition("#")[0]
    path_text, question, query = rest.partition("?")
    path = _normalize_path(path_text.replace("\\", "/"))
    query = _percent_encode(query, _QUERY_UNSAFE) if question else ""

    authority = f"[{host}]" if ":" in host else host
    if port != default_port:
        authority = f"{authority}:{port}"
    url = f"{scheme}://{authority}{path}?{query}" if query else f"{scheme}://{authority}{path}"
    return NormalizedURL(url, scheme, host, port, path, query, is_ip)


def _split_port(host_port: str) -> tuple[str, str]:
    """Split "host:port" at the first ":" outside IPv6 brackets, as the WHATWG host state does."""
    if "[" not in host_port:
        host, _, port = host_port.partition(":")
        return host, port
    inside_brackets = False
    for index, char in enumerate(host_port):
        if char == "[":
            inside_brackets = True
        elif char == "]":
            inside_brackets = False
        elif char == ":" and not inside_brackets:
            return host_port[:index], host_port[index + 1:]
    return host_port, ""


def _normalize_path(path: str) -> str:
    """Remove dot segments ("." and "..", also as %2e) and percent-encode each segment."""
    segments = path[1:].split("/") if path.startswith("/") else [path]
    last = len(segments) - 1
    output: list[str] = []
    for index, segment in enumerate(segments):
        folded = segment.lower() if "%" in segment else segment
        if folded in _DOUBLE_DOT:
            if output:
                output.pop()
            if index == last:
                output.append("")
        elif folded in _SINGLE_DOT:
            if index == last:
                output.append("")
        else:
            encoded = _percent_encode(segment, _PATH_UNSAFE)
            if "%" in encoded:
                encoded = _ESCAPE.sub(_upper_escape, encoded)
            output.append(encoded)
    return "/" + "/".join(output)


def _upper_escape(match: re.Match[str]) -> str:
    """Upper-case one %xx escape, so "%2f" and "%2F" share a lookup key."""
    return match.group().upper()


def _percent_encode(text: str, unsafe: re.Pattern[str]) -> str:
    """UTF-8 percent-encode the code points of text that match unsafe; "%" itself is kept."""
    if unsafe.search(text) is None:
        return text
    return unsafe.sub(_encode_code_point, text)


def _encode_code_point(match: re.Match[str]) -> str:
    """%XX escapes of one code point's UTF-8 bytes (lone surrogate: U+FFFD, like browsers)."""
    try:
        data = match.group().encode("utf-8")
    except UnicodeEncodeError:
        data = "\ufffd".encode()
    return "".join(f"%{byte:02X}" for byte in data)


def _parse_host(text: str) -> tuple[str, bool]:
    """(host, is_ip) by the WHATWG host parser for special schemes; URLError if it fails."""
    if text.startswith("["):
        if not text.endswith("]"):
            raise URLError(f"unterminated IPv6 address: {text!r}")
        return _parse_ipv6(text[1:-1]), True
    if "%" in text:
        # Invalid UTF-8 becomes U+FFFD, which IDNA then rejects, as browsers do.
        data = unquote_to_bytes(text.encode("utf-8", "surrogatepass"))
        text = data.decode("utf-8", "replace")
    ascii_host = _domain_to_ascii(text)
    if _FORBIDDEN_DOMAIN.search(ascii_host):
        raise URLError(f"forbidden code point in host: {text!r}")
    return _finish_ascii_host(ascii_host)


def _finish_ascii_host(host: str) -> tuple[str, bool]:
    """(host, is_ip) for a lower-case ASCII host: IPv4 if it ends in a number, else the domain.

    Every trailing dot is dropped first, where browsers keep them all: the lookup key of
    "evil.example", "evil.example." and "evil.example.." is one. One trailing dot names
    the same host; more make an empty label, which today's resolvers refuse (Python's
    idna codec, so mitmproxy's connect; Chromium since crbug.com/456391) and older ones
    skipped, reaching the name without it. So "1.2.3.4.." is 1.2.3.4 here, where the
    URL Standard's "ends in a number" (which removes one empty last label) makes it a
    domain, and a host of dots alone is refused, which leaves every answer its own
    normalisation.
    """
    domain = host.rstrip(".")
    if not domain:
        raise URLError(f"empty host: {host!r}")
    labels = domain.split(".")
    last = labels[-1]
    if last[0] in _DIGITS and (
        last.isdigit() or (last[:2] == "0x" and _HEX_DIGITS.issuperset(last[2:]))
    ):
        return _parse_ipv4(labels, host), True
    if "xn--" in domain:
        _check_punycode_labels(labels)
    return domain, False


def _parse_ipv4(parts: list[str], host: str) -> str:
    """Dotted-quad form of a WHATWG IPv4 host (decimal, 0x hex, 0 octal, 1 to 4 parts)."""
    if len(parts) > 4:
        raise URLError(f"host ends in a number but is not an IPv4 address: {host!r}")
    numbers = [_ipv4_number(part, host) for part in parts]
    if any(number > 255 for number in numbers[:-1]):
        raise URLError(f"IPv4 address part out of range: {host!r}")
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        raise URLError(f"IPv4 address out of range: {host!r}")
    address = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        address += number << (8 * (3 - index))
    return ".".join(str((address >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def _ipv4_number(part: str, host: str) -> int:
    """One IPv4 part as a browser reads it: 0x/0X hex, leading-0 octal, else decimal."""
    if not part:
        raise URLError(f"empty part in IPv4 address: {host!r}")
    digits, radix, allowed = part, 10, _DIGITS
    if part[:2] in ("0x", "0X"):
        digits, radix, allowed = part[2:], 16, _HEX_DIGITS
    elif len(part) > 1 and part[0] == "0":
        digits, radix, allowed = part[1:], 8, _OCTAL_DIGITS
    if not digits:
        return 0  # "0x" alone is zero
    # int() alone would also accept "_", "+" and spaces, which browsers do not.
    if not allowed.issuperset(digits):
        raise URLError(f"invalid number {part!r} in IPv4 address: {host!r}")
    return int(digits, radix)


def _parse_ipv6(text: str) -> str:
    """Compressed IPv6 text (WHATWG serialisation: hex only, longest zero run as "::")."""
    # ipaddress also takes "%zone" suffixes, which browsers refuse.
    if not text or not _IPV6_CHARS.issuperset(text):
        raise URLError(f"invalid IPv6 address: {text!r}")
    try:
        value = int(ipaddress.IPv6Address(text))
    except ValueError as e:
        raise URLError(f"invalid IPv6 address: {text!r}") from e
    pieces = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    # Serialised by hand: ipaddress writes "::ffff:1.2.3.4" from Python 3.13 on, browsers do not.
    best_start, best_length, start = -1, 1, -1
    for index, piece in enumerate([*pieces, 1]):
        if piece == 0 and start < 0:
            start = index
        elif piece != 0 and start >= 0:
            if index - start > best_length:
                best_start, best_length = start, index - start
            start = -1
    if best_start < 0:
        return ":".join(f"{piece:x}" for piece in pieces)
    head = ":".join(f"{piece:x}" for piece in pieces[:best_start])
    tail = ":".join(f"{piece:x}" for piece in pieces[best_start + best_length:])
    return f"{head}::{tail}"


# The idna package refuses longer input (its defence against costly names), also on re-reading.
_IDNA_MAX_INPUT = 1024


def _domain_to_ascii(domain: str) -> str:
    """UTS #46 ToASCII with the WHATWG settings (non-transitional, no STD3 or hyphen rules)."""
    if domain.isascii() and "xn--" not in domain.lower():
        # The standard's own shortcut: for such input, domain to ASCII is ASCII lower-casing.
        return domain.lower()
    try:
        mapped = idna.uts46_remap(domain, std3_rules=False)
    except idna.IDNAError as e:
        raise URLError(f"invalid international domain name {domain!r}: {e}") from e
    # Labels are validated after encoding, by _check_punycode_labels, together with any
    # "xn--" labels the input already had: one check for both routes to the same host.
    result = ".".join(
        label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
        for label in mapped.split(".")
    )
    if not result:
        raise URLError(f"empty host after IDNA mapping: {domain!r}")
    if len(result) > _IDNA_MAX_INPUT:
        # Encoding lengthens a name ("ѧoph" is "xn--oph-gjd"); a longer result would be refused
        # when read again, so a normalised URL would not normalise to itself. No such name resolves.
        raise URLError(f"international domain name too long once encoded ({len(result):,} characters, "
                       f"at most {_IDNA_MAX_INPUT:,}): {domain[:64]!r}…")
    return result


def _check_punycode_labels(labels: list[str]) -> None:
    """Check every "xn--" label decodes to a valid UTS #46 label, as browsers require."""
    decoded: list[str] = []
    for label in labels:
        if not label.startswith("xn--"):
            decoded.append(label)
            continue
        try:
            unicode_label = label[4:].encode("ascii").decode("punycode")
        except UnicodeError as e:
            raise URLError(f"invalid punycode label {label!r}") from e
        if not unicode_label or unicode_label.isascii():
            raise URLError(f"punycode label decodes to nothing or to ASCII: {label!r}")
        try:
            remapped = idna.uts46_remap(unicode_label, std3_rules=False)
        except idna.IDNAError as e:
            raise URLError(f"invalid punycode label {label!r}: {e}") from e
        if remapped != unicode_label:
            raise URLError(f"punycode label is not in canonical form: {label!r}")
        decoded.append(unicode_label)
    bidi = any(_has_rtl(label) for label in decoded)
    # UTS #46 checks every label of a bidi name; checking only the non-ASCII ones keeps
    # plain ASCII labels ("1and1", "3com") valid beside an Arabic or Hebrew label.
    for label in decoded:
        if not label.isascii():
            _check_unicode_label(label, bidi)


def _check_unicode_label(label: str, bidi: bool) -> None:
    """UTS #46 validity criteria that a mapped label must still meet (marks, joiners, bidi)."""
    if label.startswith("xn--"):
        raise URLError(f"label starts with xn-- but is not punycode: {label!r}")
    if unicodedata.category(label[0]).startswith("M"):
        raise URLError(f"label starts with a combining mark: {label!r}")
    for index, char in enumerate(label):
        if char in _JOINERS and not idna.valid_contextj(label, index):
            raise URLError(f"zero-width joiner out of context in label {label!r}")
    if bidi:
        try:
            idna.check_bidi(label, check_ltr=True)
        except idna.IDNABidiError as e:
            raise URLError(f"label breaks the bidi rules: {label!r}") from e


def _has_rtl(label: str) -> bool:
    """Whether a label holds a right-to-left code point (makes the name a "Bidi domain name")."""
    return not label.isascii() and any(
        unicodedata.bidirectional(char) in ("R", "AL", "AN") for char in label
    )
