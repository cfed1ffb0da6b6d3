"""Signed click links, and the links other vendors wrap, undone.

A click link is ``https://<click host>/v1/<token>/<target>``. The token is
URL-safe base64 (no padding) of these bytes::

    version  1 byte   LINK_VERSION
    flags    1 byte   bits 0-1 origin (0 none, 1 IPv4, 2 IPv6), bit 2 Message-ID hash present,
                      bits 3-4 recipient (0 none, 1 hashed, 2 plain), bit 5 target escape mode,
                      bit 6 home-line evidence present (only with an origin)
    minutes  4 bytes  rewrite time, Unix minutes, big-endian
    origin   0, 4 or 16 bytes
    home     0 or 1 byte    the origin's home-line signs (`clickguard.mail.home_line.Sign`, never 0)
    msg id   0 or 8 bytes   truncated SHA-256 of the Message-ID
    rcpt     0, 8 or n bytes  truncated SHA-256 of the address, or its UTF-8 (runs up to the MAC)
    mac      16 bytes  HMAC-SHA256(key, label, body length, body, target)[:16]

56 characters for an IPv4 origin, a Message-ID and a hashed recipient (58 with home-line
evidence). Bit 6 came after the first links: a link without it reads exactly as before, so
every link already sent still verifies; a proxy older than bit 6 refuses a link that sets
it (unknown flags), failing closed.

The target stays readable: it is the original URL, with only what a browser or
the link itself would change percent-encoded, and everything after the token's
``/`` is the target, its query included (the click link's own query *is* the
target's). The escapes must survive a browser unchanged, so:

- ``#`` is always escaped (a browser would keep a fragment to itself);
- characters a browser escapes in a path or a query (controls, space, ``"'<>`^{}``,
  non-ASCII) and ``\\`` (read as ``/``) are escaped; so is the ``/`` before a
  ``.``/``..`` segment of the target's path, which a browser would otherwise resolve;
- a literal ``%`` is written ``%25`` only where it would otherwise read as one of
  these escapes, so that decoding gives back exactly the original.

Most targets need only the first rule (escape mode 0: only ``%23`` and ``%25``
are ours, so the target's own ``%20`` or ``%2F`` show as they are); any other
target uses mode 1, where every escape of the characters above is ours. A
verified link must be in exactly the form `make_click_link` writes: any other
spelling of the same target is refused, so any change to a link fails.
The ``//`` after the target's scheme is kept readable; clickguard itself
answers the click host, so no web server merges it, and a merged ``https:/``
is still accepted.

`unwrap` peels the wrappers of Microsoft Safe Links, Proofpoint URL Defense
v1 to v3, Mimecast (only the destination host can be recovered) and Google
redirects, in any chain, after repairing quoted-printable damage. `decode`
does both. Nothing here imports mitmproxy.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import re
import struct
from collections.abc import Callable
from typing import Literal, NamedTuple
from urllib.parse import unquote

from clickguard.errors import TokenError, URLError
from clickguard.mail.home_line import HomeLine, OriginAddress, Sign
from clickguard.tokens import b64url_decode, b64url_encode
from clickguard.urls import normalize_host

__all__ = [
    "LINK_VERSION",
    "ClickContext",
    "Decoded",
    "RecipientMode",
    "Unwrapped",
    "click_context",
    "decode",
    "hash_message_id",
    "hash_recipient",
    "is_click_link",
    "make_click_link",
    "unwrap",
    "verify_click_link",
]

LINK_VERSION = 1
RecipientMode = Literal["none", "hashed", "plain"]

_MAC_BYTES = 16
_HASH_BYTES = 8
_MAC_LABEL = b"clickguard click link\x00"
_RECIPIENT_LABEL = b"clickguard recipient\x00"
_HEADER = struct.Struct(">BBI")
_ORIGIN_BITS = {0: 0, 4: 1, 16: 2}
_ORIGIN_SIZES = {0: 0, 1: 4, 2: 16}
_MSGID_FLAG = 0x04
_RECIPIENT_MODES: tuple[RecipientMode, ...] = ("none", "hashed", "plain")
_RECIPIENT_SHIFT = 3
_ESCAPE_MODE_FLAG = 0x20
_HOME_LINE_FLAG = 0x40
_KNOWN_FLAGS = 0x7F
_MIN_TOKEN_BYTES = _HEADER.size + _MAC_BYTES
_MIN_TOKEN_CHARS = (_MIN_TOKEN_BYTES * 4 + 2) // 3

_TARGET_SCHEME = re.compile(r"https?://", re.IGNORECASE)
_MERGED_SCHEME_SLASHES = re.compile(r"\A(https?:)/(?!/)", re.IGNORECASE)  # only the target's own scheme
_CLICK_LINK = re.compile(r"(?i:https?)://([^/?#\\]+)/v([0-9]+)/([A-Za-z0-9_-]*)(/?)(.*)", re.DOTALL)
# Characters a browser would escape in a path or a special query, "\\" (read as "/"), and "#".
_MUST_ESCAPE = re.compile(r"[\x00-\x20\"#'<>\\^`{}\x7f-\U0010ffff]")
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_DOT_SEGMENTS = frozenset({".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"})
# Bytes whose escapes are ours in each escape mode (see the module docstring).
_OURS_MODE0 = frozenset(b"#%")
_OURS_MODE1 = frozenset(
    {*range(0x21), *b"\"#'<>\\^`{}%/", *range(0x7F, 0x100)}
)


class ClickContext(NamedTuple):
    """Where a click link came from, as carried (and signed) in its token."""

    origin_ip: str | None  # the IP that handed the message to the first trusted relay
    message_id_hash: str | None  # hash_message_id(), 16 hex digits
    recipient: str | None  # the address (plain), hash_recipient() (hashed) or None (none)
    recipient_mode: RecipientMode
    rewritten_at: int  # Unix seconds, a whole minute
    home_line: Sign = Sign(0)  # the origin's home-line evidence (none: 0), see clickguard.mail.home_line


class Unwrapped(NamedTuple):
    """A foreign-wrapped link undone: the target, or only its host when the vendor hides the rest."""

    target: str | None  # None when the wrapper is opaque (Mimecast)
    host_hint: str | None  # the destination host of an opaque wrapper; None otherwise
    layers: tuple[str, ...]  # wrappers peeled, outermost first


class Decoded(NamedTuple):
    """What `decode` found in a link: target, wrappers peeled and, for a click link, its context."""

    target: str | None
    host_hint: str | None
    layers: tuple[str, ...]  # "clickguard" stands for our own click link
    context: ClickContext | None


# Click links ----------------------------------------------------------------------------------


def hash_message_id(message_id: str) -> str:
    """16 hex digits identifying a Message-ID (angle brackets and surrounding space ignored)."""
    normalized = message_id.strip().removeprefix("<").removesuffix(">").strip()
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[: 2 * _HASH_BYTES]


def hash_recipient(address: str, key: bytes) -> str:
    """16 hex digits identifying a recipient address (case-insensitively) to the key's holder.

    Keyed (HMAC-SHA256 with the signing key): anyone can read a link, but only the
    proxy can tell whose it is by hashing a list of addresses.
    """
    normalized = address.strip().lower()
    mac = hmac.new(key, _RECIPIENT_LABEL + normalized.encode("utf-8"), hashlib.sha256)
    return mac.hexdigest()[: 2 * _HASH_BYTES]


def click_context(
    *,
    key: bytes,
    origin_ip: str | None,
    message_id: str | None,
    recipient: str | None,
    recipient_mode: RecipientMode,
    rewritten_at: float,
    home_line: HomeLine | None = None,
) -> ClickContext:
    """The context of a link in a message, hashed as recipient_mode says (keyed) and cut to the minute.

    The origin's home-line evidence is ``home_line``, or what an `OriginAddress` passed as
    ``origin_ip`` carries (so callers that only pass the address along need not change).
    """
    if home_line is None and isinstance(origin_ip, OriginAddress):
        home_line = origin_ip.home_line
    if origin_ip is not None:
        origin_ip = str(origin_ip)  # a plain str in the context: it is compared, hashed and printed
    if recipient is None or recipient_mode == "none":
        carried, recipient_mode = None, "none"
    elif recipient_mode == "hashed":
        carried = hash_recipient(recipient, key)
    else:
        carried = recipient
    return ClickContext(
        origin_ip=origin_ip,
        message_id_hash=hash_message_id(message_id) if message_id else None,
        recipient=carried,
        recipient_mode=recipient_mode,
        rewritten_at=int(rewritten_at) // 60 * 60,
        home_line=home_line.signs if home_line is not None and origin_ip else Sign(0),
    )


def make_click_link(target: str, context: ClickContext, key: bytes, *, click_host: str) -> str:
    """A signed click link to target (an absolute http(s) URL); rewritten_at is cut to the minute."""
    if not _TARGET_SCHEME.match(target):
        raise URLError(f"click link target is not an absolute http(s) URL: {target[:200]!r}")
    try:
        target.encode("utf-8")
    except UnicodeEncodeError as e:
        raise URLError(f"click link target is not valid text: {target[:200]!r}") from e
    escaped, mode = _escape_target(target)
    body = _pack_context(context, mode)
    token = b64url_encode(body + _mac(key, body, target))
    return f"https://{click_host}/v{LINK_VERSION}/{token}/{escaped}"


def verify_click_link(url: str, key: bytes, *, click_host: str | None = None) -> tuple[str, ClickContext]:
    """The target and context of a click link that verifies; TokenError saying why otherwise."""
    match = _CLICK_LINK.fullmatch(url)
    if match is None or (click_host is not None and not _same_host(match.group(1), click_host)):
        raise TokenError("not a click link")
    version, token, slash, escaped = match.group(2, 3, 4, 5)
    # Compared as written: int() of thousands of digits is refused (ValueError), and "v01"
    # would be a second spelling of the link.
    if version != str(LINK_VERSION):
        raise TokenError(f"click link has the wrong version (v{version[:8]}, expected v{LINK_VERSION})")
    if not slash or not escaped:
        raise TokenError("click link is truncated (no target)")
    try:
        raw = b64url_decode(token)
    except TokenError as e:
        raise TokenError("click link token is truncated or tampered (not base64)") from e
    if len(raw) < _MIN_TOKEN_BYTES:
        raise TokenError("click link token is truncated")
    # Any other spelling of the same bytes (unused low bits) is a change to the link.
    if b64url_encode(raw) != token:
        raise TokenError("click link is tampered (token is not in canonical form)")
    if raw[0] != LINK_VERSION:
        raise TokenError(f"click link token has the wrong version ({raw[0]}, expected {LINK_VERSION})")
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    context, mode = _unpack_context(body)
    escaped = _MERGED_SCHEME_SLASHES.sub(r"\1//", escaped, count=1)
    target = _unescape_target(escaped, mode)
    if not hmac.compare_digest(mac, _mac(key, body, target)):
        raise TokenError("click link is tampered (signature does not verify)")
    if _escape_target(target) != (escaped, mode):
        raise TokenError("click link is tampered (target is not in canonical form)")
    return target, context


def is_click_link(url: str, click_host: str) -> bool:
    """Whether url has the shape of a click link on click_host (not whether it verifies)."""
    match = _CLICK_LINK.fullmatch(url)
    return match is not None and _same_host(match.group(1), click_host) and bool(match.group(3))


def _same_host(authority: str, click_host: str) -> bool:
    """Whether a link's authority names click_host (a default port may be left out either way)."""
    def strip(text: str) -> str:
        text = text.lower()
        for port in (":443", ":80"):
            text = text.removesuffix(port)
        return text.rstrip(".")
    return strip(authority) == strip(click_host)


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC already keyed and fed the label; copies of it skip the key set-up per link."""
    return hmac.new(key, _MAC_LABEL, hashlib.sha256)


def _mac(key: bytes, body: bytes, target: str) -> bytes:
    """Truncated HMAC-SHA256 over the token body and the target (length-prefixed: no ambiguity)."""
    mac = _keyed(key).copy()
    mac.update(struct.pack(">H", len(body)) + body + target.encode("utf-8"))
    return mac.digest()[:_MAC_BYTES]


# Every link of one message has the same context: pack it once.
@functools.lru_cache(maxsize=4096)
def _pack_context(context: ClickContext, escape_mode: int) -> bytes:
    """The token body: version, flags, minutes and the context fields present."""
    origin = ipaddress.ip_address(context.origin_ip).packed if context.origin_ip else b""
    message_id = bytes.fromhex(context.message_id_hash) if context.message_id_hash else b""
    if message_id and len(message_id) != _HASH_BYTES:
        raise ValueError(f"message_id_hash is not {2 * _HASH_BYTES} hex digits")
    if context.recipient_mode == "none" or context.recipient is None:
        recipient, recipient_bits = b"", 0
    elif context.recipient_mode == "hashed":
        recipient, recipient_bits = bytes.fromhex(context.recipient), 1
        if len(recipient) != _HASH_BYTES:
            raise ValueError("a hashed recipient must be hash_recipient() of the address")
    else:
        recipient, recipient_bits = context.recipient.encode("utf-8"), 2
        if not recipient:
            raise ValueError("a plain recipient must not be empty")
    home = bytes((int(context.home_line),)) if context.home_line else b""
    if home and not origin:
        raise ValueError("home-line evidence needs an origin")
    flags = (
        _ORIGIN_BITS[len(origin)]
        | (_MSGID_FLAG if message_id else 0)
        | recipient_bits << _RECIPIENT_SHIFT
        | (_ESCAPE_MODE_FLAG if escape_mode else 0)
        | (_HOME_LINE_FLAG if home else 0)
    )
    header = _HEADER.pack(LINK_VERSION, flags, context.rewritten_at // 60)
    return header + origin + home + message_id + recipient


def _unpack_context(body: bytes) -> tuple[ClickContext, int]:
    """The context and target escape mode in a token body; TokenError if it cannot be one."""
    _, flags, minutes = _HEADER.unpack_from(body)
    origin_bits, recipient_bits = flags & 0x03, flags >> _RECIPIENT_SHIFT & 0x03
    if flags & ~_KNOWN_FLAGS or origin_bits == 3 or recipient_bits == 3:
        raise TokenError("click link is tampered (unknown flags)")
    if flags & _HOME_LINE_FLAG and not origin_bits:
        raise TokenError("click link is tampered (home-line evidence without an origin)")
    offset = _HEADER.size
    origin_size = _ORIGIN_SIZES[origin_bits]
    home_size = 1 if flags & _HOME_LINE_FLAG else 0
    message_id_size = _HASH_BYTES if flags & _MSGID_FLAG else 0
    fixed_end = offset + origin_size + home_size + message_id_size
    rest = body[fixed_end:]
    mode = _RECIPIENT_MODES[recipient_bits]
    if len(body) < fixed_end or (mode == "hashed" and len(rest) < _HASH_BYTES):
        raise TokenError("click link token is truncated")
    if (mode == "none" and rest) or (mode == "hashed" and len(rest) != _HASH_BYTES) or (
        mode == "plain" and not rest
    ):
        raise TokenError("click link is tampered (token length does not match its flags)")
    origin = body[offset:offset + origin_size]
    home = body[offset + origin_size:offset + origin_size + home_size]
    if home and home[0] == 0:  # every byte value is a set of signs; 0 would be a second spelling of none
        raise TokenError("click link is tampered (empty home-line evidence)")
    message_id = body[offset + origin_size + home_size:fixed_end]
    recipient: str | None
    if mode == "plain":
        try:
            recipient = rest.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TokenError("click link is tampered (recipient is not UTF-8)") from e
    else:
        recipient = rest.hex() if rest else None
    context = ClickContext(
        origin_ip=str(ipaddress.ip_address(origin)) if origin else None,
        message_id_hash=message_id.hex() if message_id else None,
        recipient=recipient,
        recipient_mode=mode,
        rewritten_at=minutes * 60,
        home_line=Sign(home[0]) if home else Sign(0),
    )
    return context, 1 if flags & _ESCAPE_MODE_FLAG else 0


def _escape_target(target: str) -> tuple[str, int]:
    """The target as written in a click link, and its escape mode (see the module docstring)."""
    path, question, query = target.partition("?")
    segments = path.split("/")
    # Every segment after the first follows a "/": no "/." or "/%2" means no dot segment.
    dot_segment = ("/." in path or "/%2" in path) and any(
        segment.lower() in _DOT_SEGMENTS for segment in segments[1:])
    if not dot_segment and _MUST_ESCAPE.search(target.replace("#", "")) is None:
        return _escape_percent(target, _OURS_MODE0).replace("#", "%23"), 0
    # First mark each literal "%" that would read as one of our escapes, then add ours. Marking
    # never makes or unmakes a dot segment ("%2e" is not ours), so segments can be reused.
    segments = _escape_percent(path, _OURS_MODE1).split("/")
    # The "/" before a dot segment is escaped so that no browser resolves the segment. A host
    # "." or ".." is one too: then both slashes of "//" are escaped, for "http:/%2F." would
    # read as a merged "http:/" (see verify_click_link).
    dots = [segment.lower() in _DOT_SEGMENTS for segment in segments]
    if len(dots) > 2 and dots[2]:
        dots[1] = True
    path = segments[0] + "".join(
        ("%2F" if dot else "/") + segment for segment, dot in zip(segments[1:], dots[1:], strict=True)
    )
    text = path + question + _escape_percent(query, _OURS_MODE1)
    return _MUST_ESCAPE.sub(_escape_code_point, text), 1


def _escape_percent(text: str, ours: frozenset[int]) -> str:
    """Write "%" as "%25" wherever it starts an escape that decoding would take as ours."""
    if "%" not in text:
        return text
    return re.sub(
        r"%(?=([0-9A-Fa-f]{2}))",
        lambda m: "%25" if int(m.group(1), 16) in ours else "%",
        text,
    )


def _escape_code_point(match: re.Match[str]) -> str:
    """%XX escapes of a character's UTF-8 bytes."""
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8"))


def _unescape_target(escaped: str, mode: int) -> str:
    """Inverse of `_escape_target` for a given mode; TokenError if it cannot be a target."""
    ours = _OURS_MODE1 if mode else _OURS_MODE0
    try:
        data = escaped.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TokenError("click link is tampered (target is not text)") from e

    def unescape(match: re.Match[bytes]) -> bytes:
        byte = int(match.group(1), 16)
        return bytes((byte,)) if byte in ours else match.group()

    try:
        return _ESCAPE.sub(unescape, data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise TokenError("click link is tampered (target is not UTF-8)") from e


# Foreign wrappers ----------------------------------------------------------------------------

_MAX_LAYERS = 16
_AUTHORITY = re.compile(r"(?i:https?)://([^/?#\\]*)([^?#]*)(?:\?([^#]*))?", re.DOTALL)
# Every wrapper's host holds one of these words; quoted-printable leaves host names alone
# except that a soft line break may split one.
_WRAPPER_HINT = re.compile(r"safelinks|urldefense|mimecast|google|=\r?\n|=\r", re.IGNORECASE)
_SOFT_LINE_BREAK = re.compile(r"=\r?\n|=\r")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_QP_EQUALS = re.compile(r"=3D", re.IGNORECASE)
_LONE_EQUALS = re.compile(r"=(?![0-9A-Fa-f]{2})")
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")  # surrogates surrogateescape never makes
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_V3_BODY = re.compile(r"(?P<url>.*)__;(?P<chars>[A-Za-z0-9_=-]*)!!.*", re.DOTALL)
_V3_RUN_LENGTHS = {
    symbol: index + 2
    for index, symbol in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}


class _Parts(NamedTuple):
    """The pieces of a URL that wrapper detection needs."""

    host: str  # lower-case, no userinfo or port
    path: str
    query: str
    after_host: str  # everything after the authority, raw


def unwrap(url: str) -> Unwrapped:
    """Peel every foreign wrapper off url; Unwrapped(url, None, ()) if it is not wrapped."""
    layers: list[str] = []
    current = url
    for _ in range(_MAX_LAYERS):
        peeled = _peel_one(current)
        if peeled is None:
            if not layers:
                return Unwrapped(url, None, ())
            return Unwrapped(current, None, tuple(layers))
        name, target, host_hint = peeled
        layers.append(name)
        if target is None:
            return Unwrapped(None, host_hint, tuple(layers))
        current = target
    raise URLError(f"more than {_MAX_LAYERS} wrappers around one link: {url[:200]!r}")


def _peel_one(url: str) -> tuple[str, str | None, str | None] | None:
    """(vendor, target, host hint) of the outermost wrapper of url, or None if not wrapped."""
    if not _has_wrapper_hint(url):
        return None  # most links: no wrapper's host name anywhere in them
    parts = _split(_repair_quoted_printable(url))
    if parts is None:
        return None
    for name, matches, decoder in _WRAPPERS:
        if matches(parts):
            target, host_hint = decoder(parts)
            if target is not None and not _ABSOLUTE.match(target):
                raise URLError(f"{name} link does not hold an absolute URL: {target[:200]!r}")
            return name, target, host_hint
    return None


def _has_wrapper_hint(url: str) -> bool:
    """Whether _WRAPPER_HINT is found in url; an ASCII url by plain substrings (its folding is ASCII)."""
    if not url.isascii():
        return _WRAPPER_HINT.search(url) is not None
    low = url.lower()
    return ("safelinks" in low or "urldefense" in low or "mimecast" in low or "google" in low
            or "=\n" in url or "=\r" in url)


def _split(url: str) -> _Parts | None:
    """Host, path and query of an http(s) URL; None for anything else."""
    match = _AUTHORITY.match(url.strip())
    if match is None:
        return None
    authority, path, query = match.group(1), match.group(2), match.group(3) or ""
    host = authority.rpartition("@")[2]
    if not host.startswith("["):
        host = host.partition(":")[0]
    return _Parts(host.lower().rstrip("."), path, query, url.strip()[match.end(1):])


def _repair_quoted_printable(url: str) -> str:
    """url with quoted-printable damage undone, when it clearly has some; else url unchanged."""
    text = _SOFT_LINE_BREAK.sub("", url)
    # Every "=" of a quoted-printable text is an escape; "=3D" shows the text was one.
    if (text != url or _QP_EQUALS.search(text)) and not _LONE_EQUALS.search(text):
        data = _QP_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), _utf8_bytes(text))
        return data.decode("utf-8", "replace")
    return text


def _utf8_bytes(text: str) -> bytes:
    """text in UTF-8, a lone surrogate (argv, the proxy: a byte that was not UTF-8) as the byte it escapes.

    A surrogate that escapes no byte stands for nothing: it becomes U+FFFD.
    """
    return _NOT_A_BYTE.sub("\ufffd", text).encode("utf-8", "surrogateescape")


def _query_param(parts: _Parts, *names: str) -> str | None:
    """The percent-decoded value of the first of names present and non-empty in the query."""
    values: dict[str, str] = {}
    for pair in parts.query.split("&"):
        name, equals, value = pair.partition("=")
        if equals:
            values.setdefault(name, value)
    for name in names:
        if values.get(name):
            return values[name]
    return None


def _required(parts: _Parts, vendor: str, *names: str) -> str:
    """A query parameter a wrapper cannot do without; URLError naming it otherwise."""
    value = _query_param(parts, *names)
    if value is None:
        raise URLError(f"{vendor} link has no {' or '.join(names)} parameter")
    return value


def _safelinks(parts: _Parts) -> tuple[str | None, str | None]:
    """Safe Links: the target is the percent-encoded url parameter."""
    return unquote(_required(parts, "safelinks", "url")), None


def _proofpoint_v1(parts: _Parts) -> tuple[str | None, str | None]:
    """Proofpoint v1: the target is the percent-encoded u parameter."""
    return unquote(_required(parts, "proofpoint-v1", "u")), None


def _proofpoint_v2(parts: _Parts) -> tuple[str | None, str | None]:
    """Proofpoint v2: u with "-" for "%" and "_" for "/", then percent-decoded."""
    value = _required(parts, "proofpoint-v2", "u")
    return unquote(value.replace("-", "%").replace("_", "/")), None


def _proofpoint_v3(parts: _Parts) -> tuple[str | None, str | None]:
    """Proofpoint v3: the URL between "__", its "*" and "**X" filled from the base64 characters."""
    body = parts.after_host.removeprefix("/v3/__")
    match = _V3_BODY.fullmatch(body)
    if match is None:
        raise URLError("proofpoint-v3 link has no __;…!! trailer")
    encoded = match.group("chars").rstrip("=")
    try:
        data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        characters = data.decode("utf-8")
    except (binascii.Error, ValueError) as e:
        raise URLError("proofpoint-v3 link has undecodable substitution characters") from e
    template = match.group("url")
    pieces: list[str] = []
    used = index = 0
    while index < len(template):
        char = template[index]
        if char != "*":
            pieces.append(char)
            index += 1
            continue
        if template.startswith("**", index):
            run = _V3_RUN_LENGTHS.get(template[index + 2:index + 3])
            if run is None:
                raise URLError("proofpoint-v3 link has a ** run without a valid length")
            index += 3
        else:
            run = 1
            index += 1
        if used + run > len(characters):
            raise URLError("proofpoint-v3 link has more * than substitution characters")
        pieces.append(characters[used:used + run])
        used += run
    if used != len(characters):
        raise URLError("proofpoint-v3 link has unused substitution characters")
    return "".join(pieces), None


def _mimecast(parts: _Parts) -> tuple[str | None, str | None]:
    """Mimecast: the token is opaque; only the domain hint names the destination."""
    return None, normalize_host(unquote(_required(parts, "mimecast", "domain")))


def _google(parts: _Parts) -> tuple[str | None, str | None]:
    """Google redirect: the target is the percent-encoded q (or url) parameter."""
    return unquote(_required(parts, "google", "q", "url")), None


_SAFELINKS_HOST = re.compile(r"[a-z0-9-]+\.safelinks\.protection\.(?:outlook\.com|office365\.us)")
_MIMECAST_HOST = re.compile(r"protect-[a-z0-9-]+\.mimecast\.com|url\.[a-z0-9-]+\.m\.mimecastprotect\.com")
_GOOGLE_HOST = re.compile(r"(?:www\.)?google\.(?:com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})")

# (layer name, does it wrap this URL, decoder): tried in order, first match wins.
_Decoder = Callable[[_Parts], tuple[str | None, str | None]]
_WRAPPERS: tuple[tuple[str, Callable[[_Parts], bool], _Decoder], ...] = (
    ("safelinks", lambda p: _SAFELINKS_HOST.fullmatch(p.host) is not None and p.path in ("", "/"),
     _safelinks),
    ("proofpoint-v1", lambda p: p.host == "urldefense.proofpoint.com" and p.path == "/v1/url",
     _proofpoint_v1),
    ("proofpoint-v2", lambda p: p.host == "urldefense.proofpoint.com" and p.path == "/v2/url",
     _proofpoint_v2),
    ("proofpoint-v3", lambda p: p.host == "urldefense.com" and p.after_host.startswith("/v3/__"),
     _proofpoint_v3),
    ("mimecast", lambda p: _MIMECAST_HOST.fullmatch(p.host) is not None and p.path.startswith("/s/"),
     _mimecast),
    ("google", lambda p: _GOOGLE_HOST.fullmatch(p.host) is not None and p.path == "/url", _google),
)


# Both ---------------------------------------------------------------------------------------


def decode(url: str, key: bytes | None, click_host: str | None) -> Decoded:
    """Where url leads: our click link verified (with its context) and foreign wrappers peeled.

    Raises TokenError for a click link that does not verify, URLError for a malformed wrapper
    or a link that is not text (a lone surrogate: an undecodable byte of argv or of the wire).
    Without a key, click links are not recognised (they cannot be verified).
    """
    try:
        url.encode("utf-8")
    except UnicodeEncodeError as e:
        raise URLError(f"link is not valid text: {url[:200]!r}") from e
    layers: list[str] = []
    context: ClickContext | None = None
    current = url
    for _ in range(_MAX_LAYERS):
        ours = _our_link(current, key, click_host) if context is None else None
        if ours is not None:
            current, context = ours
            layers.append("clickguard")
            continue
        peeled = _peel_one(current)
        if peeled is None:
            return Decoded(current, None, tuple(layers), context)
        name, target, host_hint = peeled
        layers.append(name)
        if target is None:
            return Decoded(None, host_hint, tuple(layers), context)
        current = target
    raise URLError(f"more than {_MAX_LAYERS} wrappers around one link: {url[:200]!r}")


def _our_link(url: str, key: bytes | None, click_host: str | None) -> tuple[str, ClickContext] | None:
    """Target and context of url if it is our click link (also when quoted-printable damaged)."""
    if key is None:
        return None
    candidates = [url]
    repaired = _repair_quoted_printable(url)
    if repaired != url:
        candidates.append(repaired)
    error: TokenError | None = None
    for candidate in candidates:
        if not _looks_like_ours(candidate, click_host):
            continue
        try:
            return verify_click_link(candidate, key, click_host=click_host)
        except TokenError as e:
            error = error or e
    if error is not None:
        raise error
    return None


def _looks_like_ours(url: str, click_host: str | None) -> bool:
    """A click link on click_host; without one, the shape of a click link to an http(s) target."""
    if click_host is not None:
        return is_click_link(url, click_host)
    match = _CLICK_LINK.fullmatch(url)
    return (
        match is not None
        and len(match.group(3)) >= _MIN_TOKEN_CHARS
        and _TARGET_SCHEME.match(match.group(5)) is not None
    )
