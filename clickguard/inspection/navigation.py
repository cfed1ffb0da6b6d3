"""Where a response sends the browser: redirects, refreshes, script navigations and automatic loads.

`find_navigations` reads a response the way a browser would act on it and lists
every place it sends the browser, each with the technique, the absolute target
(so the caller can compare hosts), the source text as evidence, and whether it
happens without a user action. It looks at the ``Location`` header of a 30x, the
``Refresh`` header, and, for HTML, XHTML and SVG bodies, at the markup: meta
refreshes, ``<base href>``, hidden and data:/javascript: frames, forms, the
event attributes that fire by themselves (``onload``, ``onerror``, ...) and
inline scripts.

Scripts are read by a small JavaScript tokenizer (strings, comments, template
literals, regular expressions, bracket pairs), never run. Navigation sinks
(``location = ``, ``location.href = ``, ``location.assign/replace()``,
``window.open()``, ``document.write()``, ``form.submit()``) are classified by
the function they sit in: top level, immediately invoked functions, load
handlers, timers and promise callbacks are automatic; click handlers and
functions that are only defined are not, unless a named function is seen being
called from automatic code. Targets built from literals are recovered: string
concatenation, ``atob``, ``unescape``, ``decodeURIComponent``,
``String.fromCharCode``, ``\\x``/``\\u`` escapes, ``split/reverse/join``, simple
variables, the page's own ``location`` parts and code passed to ``eval``,
``Function`` or a string timer. A target that only starts with a literal keeps
that part when it already fixes the host (``"https://evil.example/?u=" + x``).

The cost follows the input: one regular-expression scan of the markup that
stops only at the few tags that matter, then one tokenizer pass over the scripts
that contain a navigation sink at all (a plain-text pre-check skips the rest).
Everything after that is answered on demand from the tokens, and only for the
sinks: which function a sink sits in (by walking back over balanced brackets), a
variable's value (the assignments that may reach the use; branches that disagree
make it unknown), and whether a named function is called from automatic code
(by looking up its name where it is visible). Nothing here raises on bad input,
and nothing imports mitmproxy.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple
from urllib.parse import quote, unquote, urljoin, urlsplit

__all__ = ["Navigation", "Technique", "decode_html", "find_navigations", "parse_refresh"]


class Technique(StrEnum):
    """How a response sends the browser somewhere."""

    LOCATION = "location-header"
    REFRESH_HEADER = "refresh-header"
    META_REFRESH = "meta-refresh"
    SCRIPT = "script"
    WINDOW_OPEN = "window-open"
    SCRIPT_TIMER = "script-timer"
    OBFUSCATED_SCRIPT = "obfuscated-script"
    DOCUMENT_WRITE = "document-write"
    FORM_AUTOSUBMIT = "form-autosubmit"
    HIDDEN_IFRAME = "hidden-iframe"
    DATA_URL = "data-url"
    JAVASCRIPT_URL = "javascript-url"


@dataclass(frozen=True, slots=True)
class Navigation:
    """One place a response sends the browser."""

    technique: Technique
    target: str | None  # absolute URL; None when it could not be recovered
    raw: str  # the source text that showed it, at most 200 characters
    automatic: bool  # happens without a user action
    delay: float | None = None  # seconds, for refreshes and timers when known


_RAW_MAX = 200
_MAX_FOUND = 64
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ASCII_WS = "\t\n\f\r "
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")


# ---------------------------------------------------------------------------
# Refresh
# ---------------------------------------------------------------------------


def parse_refresh(value: str) -> tuple[float, str | None] | None:
    """Seconds and URL of a Refresh value by the HTML standard's shared declarative refresh steps."""
    end = len(value)
    pos = _skip_ascii_ws(value, 0)
    start = pos
    while pos < end and "0" <= value[pos] <= "9":
        pos += 1
    if pos == start:
        if pos >= end or value[pos] != ".":
            return None
        seconds = 0.0
    else:
        seconds = float(value[start:pos])  # the fraction is read and ignored, as the standard says
    while pos < end and (value[pos] == "." or "0" <= value[pos] <= "9"):
        pos += 1
    if pos < end:
        if value[pos] not in ";," and value[pos] not in _ASCII_WS:
            return None
        pos = _skip_ascii_ws(value, pos)
        if pos < end and value[pos] in ";,":
            pos += 1
        pos = _skip_ascii_ws(value, pos)
    if pos >= end:
        return seconds, None
    url_start = pos
    if value[pos] in "Uu":
        if value[pos + 1:pos + 2] in ("R", "r") and value[pos + 2:pos + 3] in ("L", "l"):
            pos = _skip_ascii_ws(value, pos + 3)
            url = _refresh_quoted(value, _skip_ascii_ws(value, pos + 1)) if value[pos:pos + 1] == "=" \
                else value[url_start:]
        else:
            url = value[url_start:]
    else:
        url = _refresh_quoted(value, pos)
    url = url.strip(_C0_AND_SPACE)  # what the URL parser strips before anything else
    return seconds, url or None


def _skip_ascii_ws(text: str, pos: int) -> int:
    """The first position at or after pos that is not ASCII whitespace."""
    end = len(text)
    while pos < end and text[pos] in _ASCII_WS:
        pos += 1
    return pos


def _refresh_quoted(value: str, pos: int) -> str:
    """The refresh URL from pos: up to the matching quote when it starts with one."""
    if value[pos:pos + 1] in ("'", '"'):
        quote_char = value[pos]
        rest = value[pos + 1:]
        cut = rest.find(quote_char)
        return rest if cut < 0 else rest[:cut]
    return value[pos:]


# ---------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------


def _resolve(url: str, base: str) -> str | None:
    """url resolved against base as a browser would, or None when it does not parse."""
    url = url.strip(_C0_AND_SPACE)
    if "\t" in url or "\n" in url or "\r" in url:
        url = _TAB_NEWLINE.sub("", url)
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    base_scheme = base[:base.find(":")].lower() if ":" in base else ""
    if (scheme or base_scheme) in _SPECIAL_SCHEMES:
        cut = len(url)
        for stop in "?#":
            at = url.find(stop)
            if 0 <= at < cut:
                cut = at
        if "\\" in url[:cut]:  # before the query a backslash is a slash in special URLs
            url = url[:cut].replace("\\", "/") + url[cut:]
        if scheme:
            rest = url[len(scheme) + 1:]
            # "https:evil.example" and "http:///evil.example" name a host however many slashes follow
            if scheme != base_scheme or rest.startswith("//"):
                url = f"{scheme}://{rest.lstrip('/')}"
        elif url.startswith("//"):
            url = "//" + url.lstrip("/")
    try:
        return urljoin(base, url)
    except ValueError:
        return None


def _prefix_target(prefix: str, base: str) -> str | None:
    """The target of a URL known only up to prefix, when the prefix already fixes its host."""
    prefix = prefix.lstrip(_C0_AND_SPACE)
    if "\t" in prefix or "\n" in prefix or "\r" in prefix:
        prefix = _TAB_NEWLINE.sub("", prefix)
    if not prefix:
        return None
    match = _SCHEME.match(prefix)
    if match:
        if match.group(1).lower() not in _SPECIAL_SCHEMES:
            return _resolve(prefix, base)  # data:, javascript:: the scheme is what matters
        authority = prefix[match.end():].lstrip("/\\")
        return _resolve(prefix, base) if _HOST_END.search(authority) else None
    if prefix[0] in "/\\":
        if len(prefix) == 1:
            return None  # "/" + x may still become "//other.host"
        if prefix[1] in "/\\":
            authority = prefix.lstrip("/\\")
            return _resolve(prefix, base) if _HOST_END.search(authority) else None
        return _resolve(prefix, base)
    if prefix[0] in "?#":
        return _resolve(prefix, base)
    if _SCHEME_CHARS.fullmatch(prefix):
        return None  # may still be spelling a scheme ("htt" + "p://...")
    return _resolve(prefix, base)


_HOST_END = re.compile(r"[/\\?#]")
_SCHEME_CHARS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _scheme_of(url: str | None) -> str:
    """The lower-case scheme of an absolute URL, "" when there is none."""
    if not url:
        return ""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


# ---------------------------------------------------------------------------
# Encodings
# ---------------------------------------------------------------------------

# The WHATWG Encoding Standard's labels, by the Python codec that decodes them.
_ENCODING_LABELS = {
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "cp866": "866 cp866 csibm866 ibm866",
    "iso8859_2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2",
    "iso8859_3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3",
    "iso8859_4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4",
    "iso8859_5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5 "
                 "iso_8859-5:1988",
    "iso8859_6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 iso-8859-6-e "
                 "iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso8859_7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 iso8859-7 iso88597 "
                 "iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    "iso8859_8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 iso8859-8 iso88598 "
                 "iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso8859_10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859_13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859_14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859_15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859_16": "iso-8859-16",
    "koi8_r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8_u": "koi8-ru koi8-u",
    "mac_roman": "csmacintosh mac macintosh x-mac-roman",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 iso8859-1 iso88591 "
              "iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 iso_8859-9:1989 l5 "
              "latin5 windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "mac_cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    # The standard's GBK decoder is its gb18030 decoder.
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso2022_jp": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601 ksc_5601 "
             "windows-949",
    "replacement": "csiso2022kr hz-gb-2312 iso-2022-cn iso-2022-cn-ext iso-2022-kr replacement",
    "utf-16-be": "unicodefffe utf-16be",
    "utf-16-le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
    "x-user-defined": "x-user-defined",
}
_CODEC_BY_LABEL = {label: codec for codec, labels in _ENCODING_LABELS.items() for label in labels.split()}
_X_USER_DEFINED = {byte: 0xF700 + byte for byte in range(0x80, 0x100)}
_CHARSET_PARAM = re.compile(
    r";[\t\n\f\r ]*charset[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"?|([^;\t\n\f\r ]*))", re.I
)
_PRESCAN = re.compile(
    rb"<!--.*?-->"
    rb"|<meta(?=[\t\n\f\r /])(?P<meta>(?:[^>\"']|\"[^\"]*\"|'[^']*')*)>"
    rb"|<[!/?][^>]*>"
    rb"|<[A-Za-z](?:[^>\"']|\"[^\"]*\"|'[^']*')*>",
    re.I | re.S,
)
_META_CHARSET = re.compile(
    r"charset[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"|'([^']*)'|([^\t\n\f\r ;\"']+))", re.I
)
_XML_DECLARATION = re.compile(rb"<\?xml[^>]*?encoding[\t\n\r ]*=[\t\n\r ]*[\"']([A-Za-z0-9._:-]+)[\"']")
_XML_TYPES = frozenset({"application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml"})


def decode_html(body: bytes, content_type: str | None) -> str:
    """Body bytes as text, in the encoding a browser would pick (BOM, charset, <meta>, windows-1252)."""
    if body[:3] == b"\xef\xbb\xbf":
        return body[3:].decode("utf-8", "replace")
    if body[:2] == b"\xfe\xff":
        return body[2:].decode("utf-16-be", "replace")
    if body[:2] == b"\xff\xfe":
        return body[2:].decode("utf-16-le", "replace")
    mime = _mime(content_type)
    codec = _charset_codec(content_type) if content_type else None
    if codec is None:
        if mime in _XML_TYPES:
            declared = _XML_DECLARATION.match(body, 0, 1024)
            codec = (_CODEC_BY_LABEL.get(declared.group(1).decode("ascii").lower()) if declared else None) \
                or "utf-8"
        else:
            codec = _prescan_codec(body[:1024]) or "cp1252"
    return _decode(body, codec)


def _mime(content_type: str | None) -> str:
    """The lower-case essence of a Content-Type ("text/html"), "" when there is none."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip(_ASCII_WS).lower()


def _charset_codec(content_type: str) -> str | None:
    """The codec for the charset parameter of a Content-Type, when it names a known encoding."""
    match = _CHARSET_PARAM.search(content_type)
    if match is None:
        return None
    label = match.group(1) if match.group(1) is not None else match.group(2)
    return _CODEC_BY_LABEL.get(label.strip(_ASCII_WS).lower())


def _prescan_codec(head: bytes) -> str | None:
    """The codec a <meta charset> or <meta http-equiv=content-type> in the first bytes names."""
    if b"<" not in head:
        return None
    for match in _PRESCAN.finditer(head):
        meta = match.group("meta")
        if meta is None:
            continue
        attrs = _attributes(meta.decode("latin-1"), True)
        label = attrs.get("charset")
        if label is None:
            if attrs.get("http-equiv", "").strip(_ASCII_WS).lower() != "content-type":
                continue
            found = _META_CHARSET.search(attrs.get("content", ""))
            if found is None:
                continue
            label = next(group for group in found.groups() if group is not None)
        codec = _CODEC_BY_LABEL.get(label.strip(_ASCII_WS).lower())
        if codec is None:
            continue
        if codec.startswith("utf-16"):
            return "utf-8"  # a document that can declare itself in ASCII is not UTF-16
        return "cp1252" if codec == "x-user-defined" else codec
    return None


def _decode(body: bytes, codec: str) -> str:
    """body decoded with codec; bytes that do not decode become U+FFFD."""
    if codec == "replacement":
        return "\ufffd" if body else ""
    if codec == "x-user-defined":
        return body.decode("latin-1").translate(_X_USER_DEFINED)
    return body.decode(codec, "replace")


# ---------------------------------------------------------------------------
# Markup
# ---------------------------------------------------------------------------

_WS = r"[\t\n\f\r ]"
_VALUE = r"""(?>"[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z)|[^\t\n\f\r >]*+)"""
_ATTRIBUTE = rf"(?>[^\t\n\f\r />][^\t\n\f\r />=]*+(?>{_WS}*+={_WS}*+{_VALUE})?+)"
_ATTRIBUTES = rf"(?:{_WS}++|/|{_ATTRIBUTE})*+"
# Event attributes that fire without a user: the tags that carry them must be looked at.
_AUTO_EVENTS = frozenset({
    "load", "error", "pageshow", "readystatechange", "focus", "focusin", "toggle", "begin", "end",
    "animationstart", "animationend", "animationiteration", "transitionstart", "transitionrun",
    "transitionend",
})
_NOT_AUTO_EVENT = rf"(?!on(?:{'|'.join(sorted(_AUTO_EVENTS))})(?:[\t\n\f\r />=]|\Z))"
_QUIET_ATTRIBUTES = rf"(?:[\t\n\f\r /]*+{_NOT_AUTO_EVENT}{_ATTRIBUTE})*+[\t\n\f\r /]*+"
_TAG_END = r"(?:>|\Z)"
_RAW_TEXT = frozenset({"style", "textarea", "title", "xmp", "noembed", "noframes", "iframe"})
_WANTED_TAGS = "meta|base|script|body|frameset|form|iframe|frame|noscript|style|textarea|title|xmp|noembed" \
               "|noframes|plaintext"
# A tag name that is none of the wanted ones; most names fail the first test already.
_NOT_WANTED = rf"(?:(?![bfimnpstx])|(?!(?:{_WANTED_TAGS})(?:[\t\n\f\r />]|\Z)))"
# One match: everything up to the next tag that matters (or one with an automatic event
# attribute), consumed token by token inside the regex engine, then that tag. The
# alternatives are ordered by how often they occur: Python's re tries them in turn.
_MARKUP_SCAN = re.compile(
    rf"""
    (?:
        [^<]++
      | </(?!noscript(?:[\t\n\f\r />]|\Z))[a-z][^\t\n\f\r />]*+{_ATTRIBUTES}{_TAG_END}
      | <{_NOT_WANTED}[a-z][^\t\n\f\r />]*+{_QUIET_ATTRIBUTES}{_TAG_END}
      | <!--(?:-?>|.*?(?:--!?>|\Z))                                   # comment
      | <[!?][^>]*+>?                                                 # doctype, bogus comment
      | <(?![a-z!?/])                                                 # a "<" that is text
      | </(?![a-z])
    )*+
    (?:<(?P<end>/)?(?P<name>[a-z][^\t\n\f\r />]*+)(?P<attrs>{_ATTRIBUTES})(?P<close>>)?)?
    """,
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
_ATTRIBUTE_PARTS = re.compile(
    rf"""{_WS}++|/|(?P<name>[^\t\n\f\r />][^\t\n\f\r />=]*+)
    (?:{_WS}*+={_WS}*+(?:"(?P<dq>[^"]*+)"?|'(?P<sq>[^']*+)'?|(?P<uq>[^\t\n\f\r >]*+)))?""",
    re.VERBOSE,
)
_END_TAGS = {name: re.compile(rf"</{name}(?=[\t\n\f\r />]|\Z)", re.I) for name in (*_RAW_TEXT, "script")}
_JS_TYPES = frozenset({
    "", "module", "text/javascript", "application/javascript", "application/ecmascript",
    "application/x-ecmascript", "application/x-javascript", "text/ecmascript", "text/javascript1.0",
    "text/javascript1.1", "text/javascript1.2", "text/javascript1.3", "text/javascript1.4",
    "text/javascript1.5", "text/jscript", "text/livescript", "text/x-ecmascript", "text/x-javascript",
})
_DIMENSION = re.compile(r"[\t\n\f\r ]*(\d+(?:\.\d*)?|\.\d+)(%?)")
_HIDING_STYLE = re.compile(
    r"(?:^|[;\s])(?:display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0*(?:\.0*)?\s*(?:!|;|$)"
    r"|(?:width|height)\s*:\s*(?:0*[01](?:\.0*)?)(?:px)?\s*(?:!|;|$))",
    re.I,
)
_HTML_SNIFF = re.compile(
    rb"[\t\n\f\r ]*(?:<!doctype html|<html|<head|<script|<iframe|<h1|<div|<font|<table|<a|<style|<title"
    rb"|<b|<body|<br|<p|<!--)[\t\n\f\r >]",
    re.I,
)
_XML_NAMESPACES = re.compile(rb"http://www\.w3\.org/(?:1999/xhtml|2000/svg)")
_TRIVIAL_JS = re.compile(r"[\s;]*(?:void[\s(]*0[\s)]*|false|true|null|undefined|0|''|\"\"|)[\s;]*\Z")
_NOT_LOADED_SCHEMES = frozenset({"", "about"})

# How written markup is read: a document, document.write output, or innerHTML.
_DOCUMENT, _WRITTEN, _INNER = 0, 1, 2


def _attributes(text: str, complete: bool) -> dict[str, str]:
    """The attributes of a start tag by lower-case name; the first of duplicates wins, as in HTML."""
    attrs: dict[str, str] = {}
    last: str | None = None
    for part in _ATTRIBUTE_PARTS.finditer(text):
        name = part.group("name")
        if name is None:
            continue
        name = name.lower()
        value = next((v for v in part.group("dq", "sq", "uq") if v is not None), "")
        if "&" in value:
            value = html.unescape(value)
        last = None
        if name not in attrs:
            attrs[name] = value
            last = name
    if not complete and last is not None:
        del attrs[last]  # cut by the end of the sample: its value may be incomplete
    return attrs


def _is_hidden(attrs: dict[str, str]) -> bool:
    """Whether a frame with these attributes shows nothing: 0 or 1 pixel, display:none, and the like."""
    if "hidden" in attrs:
        return True
    for key in ("width", "height"):
        value = attrs.get(key)
        if value is None:
            continue
        match = _DIMENSION.match(value)
        if match and (float(match.group(1)) == 0 or (float(match.group(1)) <= 1 and not match.group(2))):
            return True
    style = attrs.get("style")
    return style is not None and _HIDING_STYLE.search(style) is not None


def _is_markup(content_type: str | None, body: bytes) -> bool:
    """Whether a browser would render body as HTML, XHTML or SVG."""
    mime = _mime(content_type)
    if mime in ("text/html", "application/xhtml+xml", "image/svg+xml"):
        return True
    if mime in ("text/xml", "application/xml"):
        return _XML_NAMESPACES.search(body, 0, 4096) is not None
    if mime in ("", "unknown/unknown", "application/unknown", "*/*"):
        if body[:5].lower() == b"<?xml":
            return _XML_NAMESPACES.search(body, 0, 4096) is not None
        return _HTML_SNIFF.match(body) is not None
    return False


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def find_navigations(
    *, status: int, headers: Sequence[tuple[str, str]], body: bytes, base_url: str, content_type: str | None
) -> list[Navigation]:
    """Every place this response sends the browser, in the order a browser meets them."""
    location = refresh = None
    for name, value in headers:
        lower = name.lower()
        if lower == "location" and location is None:
            location = value
        elif lower == "refresh" and refresh is None:
            refresh = value
    if status in _REDIRECT_STATUSES and location is not None and location.strip(_C0_AND_SPACE):
        target = _resolve(location, base_url)
        return [Navigation(_with_scheme(Technique.LOCATION, target), target,
                           f"Location: {location}"[:_RAW_MAX], True)]
    found: list[Navigation] = []
    if refresh is not None:
        parsed = parse_refresh(refresh)
        if parsed is not None:
            target = base_url if parsed[1] is None else _resolve(parsed[1], base_url)
            if target is not None:
                found.append(Navigation(_with_scheme(Technique.REFRESH_HEADER, target), target,
                                        f"Refresh: {refresh}"[:_RAW_MAX], True, parsed[0]))
    if body and _is_markup(content_type, body):
        page = _Page(base_url, budget=4 * len(body) + (1 << 20))
        page.scan_markup(decode_html(body, content_type), page.root, 0, _DOCUMENT, False, None)
        found.extend(page.navigations())
    return found


def _with_scheme(technique: Technique, target: str | None) -> Technique:
    """The technique, or DATA_URL / JAVASCRIPT_URL when the target has that scheme."""
    scheme = _scheme_of(target)
    if scheme == "data":
        return Technique.DATA_URL
    if scheme == "javascript":
        return Technique.JAVASCRIPT_URL
    return technique


# ---------------------------------------------------------------------------
# What a page does: markup and scripts, collected, then judged once at the end
# ---------------------------------------------------------------------------

# How a function's body runs: by itself (the top level), as its caller does (an
# immediately invoked function, a load handler, a timer), never by itself (a click
# handler, an unknown callback), or when its name is seen called from automatic code.
_ALWAYS, _INHERIT, _NEVER, _NAMED = range(4)


class _Ctx:
    """The function a piece of script runs in: how it gets run, its parameters, where its body is."""

    __slots__ = ("delay", "member", "mode", "name", "params", "parent", "script", "span", "timer")

    def __init__(self, mode: int, parent: _Ctx | None, name: str = "", *, timer: bool = False,
                 delay: float | None = None, script: _Script | None = None,
                 span: tuple[int, int] | None = None, member: bool = False) -> None:
        self.mode = mode
        self.parent = parent
        self.name = name  # of a _NAMED function
        self.member = member  # a _NAMED function defined as an object member, called as `x.name()`
        self.timer = timer
        self.delay = delay
        self.script = script  # the script and token span of the body, when known
        self.span = span
        self.params: set[str] = set()

    def anchor(self) -> _Ctx:
        """The nearest enclosing context that decides by itself whether code runs."""
        ctx = self
        while ctx.mode == _INHERIT and ctx.parent is not None:
            ctx = ctx.parent
        return ctx

    def timer_ctx(self) -> _Ctx | None:
        """The timer callback this code runs in, if any."""
        ctx: _Ctx | None = self
        while ctx is not None:
            if ctx.timer:
                return ctx
            if ctx.mode != _INHERIT:
                return None
            ctx = ctx.parent
        return None


@dataclass(slots=True)
class _Found:
    """A navigation seen, before the page as a whole decides whether it is automatic."""

    technique: Technique
    target: str | None
    raw: str
    ctx: _Ctx
    obfuscated: bool
    delay: float | None = None
    form_ref: tuple[str, str] | None = None  # FORM_AUTOSUBMIT whose form is looked up at the end


class _Form(NamedTuple):
    """A <form> of the document, for script that submits it."""

    id: str
    name: str
    action: str | None
    base: str


class _Page:
    """Everything one response's markup and scripts showed."""

    def __init__(self, doc_url: str, budget: int) -> None:
        self.doc_url = doc_url
        self.base = doc_url
        self.base_set = False
        self.budget = budget
        self.root = _Ctx(_ALWAYS, None)
        self.never = _Ctx(_NEVER, None)
        self.found: list[_Found] = []
        self.forms: list[_Form] = []
        # Every script in document order; one without sinks is tokenized only if a
        # later question (a variable, a call of a function) needs it.
        self.sources: list[tuple[str, _Ctx]] = []
        self.scripts: list[_Script | None] = []
        self.called: dict[_Ctx, bool] = {}  # named function -> whether automatic code calls it
        self.lookups = 0
        self.lookup_depth = 0
        try:
            parts = urlsplit(doc_url)
            host = parts.netloc.rpartition("@")[2]
            self.self_parts = {
                "href": doc_url, "origin": f"{parts.scheme}://{host}", "protocol": f"{parts.scheme}:",
                "host": host, "hostname": parts.hostname or "", "port": str(parts.port or ""),
                "pathname": parts.path or "/", "search": f"?{parts.query}" if parts.query else "",
            }
        except ValueError:
            self.self_parts = {"href": doc_url}

    def add(self, technique: Technique, target: str | None, raw: str, ctx: _Ctx, obfuscated: bool,
            depth: int, delay: float | None = None, form_ref: tuple[str, str] | None = None) -> None:
        """Record a navigation; a javascript: target is also read as the script it is."""
        if len(self.found) >= _MAX_FOUND:
            return
        raw = raw.strip()[:_RAW_MAX]
        if _scheme_of(target) == "javascript" and target is not None:
            code = unquote(target[len("javascript:"):])
            if _TRIVIAL_JS.match(code):
                return
            self.found.append(_Found(technique, target, raw, ctx, obfuscated, delay, form_ref))
            self.analyze_script(code, ctx, depth + 1, obfuscated, raw, prefilter=False)
            return
        self.found.append(_Found(technique, target, raw, ctx, obfuscated, delay, form_ref))

    def target_of(self, value: _Val) -> str | None:
        """The absolute URL a script value names, or the part of it a known prefix fixes."""
        return self._url(value.text)

    def _url(self, url: str) -> str | None:
        """A URL resolved against the base; one built by script may hold unknown parts."""
        if _FRAGMENT in url:
            url = url.split(_FRAGMENT, 1)[0]  # location.hash: "#..." or nothing, the rest is fragment too
        if _PH in url:
            return _prefix_target(url.split(_PH, 1)[0], self.base)
        return _resolve(url, self.base)

    def analyze_script(self, code: str, ctx: _Ctx, depth: int, obfuscated: bool, raw: str | None,
                       prefilter: bool) -> None:
        """Read one script for navigations; one with no navigation sink in it is only kept for later."""
        if depth > 4 or self.budget <= 0 or not code:
            return
        self.sources.append((code, ctx))
        self.scripts.append(None)
        if prefilter and not _may_navigate(code):
            return
        self.budget -= len(code)
        script = _Script(self, code, ctx, depth, obfuscated, raw)
        self.scripts[-1] = script
        script.run()

    def script(self, index: int) -> _Script:
        """The script at index, tokenized now if it was passed over."""
        script = self.scripts[index]
        if script is None:
            code, ctx = self.sources[index]
            script = self.scripts[index] = _Script(self, code, ctx, 0, False, None)
        return script

    def global_sites(self, name: str, before: _Script) -> list[tuple[_Script, int]]:
        """The top-level assignments that may set a global, in the nearest earlier script that sets it."""
        try:
            index = self.scripts.index(before)
        except ValueError:
            index = len(self.scripts)
        assigned = re.compile(rf"(?<![\w$.]){re.escape(name)}\s*=(?![=>])")
        for k in range(index - 1, -1, -1):
            code, ctx = self.sources[k]
            if ctx is not self.root or not assigned.search(code):
                continue
            script = self.script(k)
            sites = script.reaching_assignments(name, 0, script.n, self.root, script.n)
            if sites:
                return [(script, site) for site in sites]
        return []

    def called_automatically(self, function: _Ctx, seen: set[_Ctx]) -> bool:
        """Whether code that runs by itself calls this named function, directly or through others."""
        known = self.called.get(function)
        if known is not None:
            return known
        if function in seen or len(seen) > 64:
            return False
        outermost = not seen
        seen.add(function)
        result = False
        for script, site in self._references(function):
            ctx = script.call_site(site, function)
            if ctx is None:
                continue
            anchor = ctx.anchor()
            if anchor.mode == _ALWAYS or (anchor.mode == _NAMED and self.called_automatically(anchor, seen)):
                result = True
                break
        seen.discard(function)
        if result or outermost:  # a "no" found while a call cycle was cut short may be wrong later
            self.called[function] = result
        return result

    def _references(self, function: _Ctx) -> Iterator[tuple[_Script, int]]:
        """Every token that names the function where it can be seen: its scope, or the whole page."""
        scope = function.parent
        if not function.member and scope is not None and scope.script is not None and scope.span is not None:
            script = scope.script
            low, high = scope.span
            yield from ((script, k) for k in script.name_sites(function.name) if low <= k <= high)
            return
        named = re.compile(rf"(?<![\w$]){re.escape(function.name)}(?![\w$])")
        for k, (code, _) in enumerate(self.sources):
            if named.search(code):
                script = self.script(k)
                yield from ((script, site) for site in script.name_sites(function.name))

    def scan_markup(self, text: str, ctx: _Ctx, depth: int, mode: int, obfuscated: bool,
                    raw: str | None) -> None:
        """Read HTML (a document, or markup a script writes) for the tags that navigate or load."""
        if depth > 4 or "<" not in text:
            return
        in_noscript = False
        written = mode != _DOCUMENT
        pos = 0
        end = len(text)
        scan = _MARKUP_SCAN.match
        while pos < end:
            match = scan(text, pos)
            if match is None or match.start("name") < 0:
                break
            pos = match.end()
            name = match.group("name").lower()
            if match.group("end"):
                in_noscript = False  # only </noscript> stops the scan as an end tag
                continue
            complete = match.start("close") >= 0
            attrs = _attributes(match.group("attrs"), complete)
            tag_raw = raw if raw is not None else text[match.start("name") - 1:pos]
            tag_ctx = self.never if in_noscript else ctx
            if name == "meta":
                self._meta(attrs, tag_raw, ctx, depth, mode, obfuscated)
            elif name == "base":
                href = attrs.get("href")
                if href is not None and not self.base_set:
                    self.base_set = True
                    resolved = _resolve(href, self.doc_url)
                    if resolved is not None and _scheme_of(resolved) not in ("data", "javascript"):
                        self.base = resolved
            elif name == "script":
                if not complete:
                    break
                close = _END_TAGS["script"].search(text, pos)
                content = text[pos:close.start() if close else end]
                pos = close.end() if close else end
                if not in_noscript and mode != _INNER:
                    self._script(attrs, content, ctx, depth, written, obfuscated, raw)
            elif name in ("iframe", "frame"):
                self._frame(attrs, tag_raw, tag_ctx, depth, mode, obfuscated)
            elif name == "form":
                if not in_noscript:
                    self.forms.append(_Form(attrs.get("id", ""), attrs.get("name", ""), attrs.get("action"),
                                            self.base))
            elif name == "noscript":
                in_noscript = True
            elif name == "plaintext":
                break
            if not in_noscript and mode != _INNER:
                self._event_attributes(attrs, tag_raw, ctx, depth, obfuscated)
            if name in _RAW_TEXT and complete:
                close = _END_TAGS[name].search(text, pos)
                pos = close.end() if close else end

    def _meta(self, attrs: dict[str, str], raw: str, ctx: _Ctx, depth: int, mode: int,
              obfuscated: bool) -> None:
        """A <meta http-equiv=refresh> (in <noscript> too: a browser without script obeys it)."""
        if attrs.get("http-equiv", "").strip(_ASCII_WS).lower() != "refresh" or "content" not in attrs:
            return
        parsed = parse_refresh(attrs["content"])
        if parsed is None:
            return
        seconds, url = parsed
        if url is None:
            target: str | None = self.doc_url
        elif _PH in url or _FRAGMENT in url:
            target = self._url(url)
        else:
            target = _resolve(url, self.base)
            if target is None:
                return  # a URL that does not parse: the browser ignores the refresh
        technique = Technique.META_REFRESH if mode == _DOCUMENT else Technique.DOCUMENT_WRITE
        self.add(technique, target, raw, ctx, obfuscated, depth, seconds)

    def _script(self, attrs: dict[str, str], content: str, ctx: _Ctx, depth: int, written: bool,
                obfuscated: bool, raw: str | None) -> None:
        """An inline script, read for navigations; a written <script src> is a load by itself."""
        kind = attrs.get("type")
        if kind is not None:
            if kind.strip(_ASCII_WS).lower() not in _JS_TYPES:
                return
        elif not attrs.get("language", "javascript").lower().startswith(
                ("javascript", "jscript", "ecmascript", "livescript")):
            return
        src = attrs.get("src")
        if src is not None:
            if written and src.strip(_C0_AND_SPACE):
                target = self._url(src)
                if target is not None:
                    self.add(Technique.DOCUMENT_WRITE, target, raw or f"<script src={src}>", ctx, obfuscated,
                             depth)
            return
        if content.startswith("<![CDATA[") or "<![CDATA[" in content[:64]:
            content = content.replace("<![CDATA[", "", 1).replace("]]>", "")
        self.analyze_script(content, ctx, depth, obfuscated, raw, prefilter=not written)

    def _frame(self, attrs: dict[str, str], raw: str, ctx: _Ctx, depth: int, mode: int,
               obfuscated: bool) -> None:
        """An <iframe>/<frame>: reported when hidden, when its source is data: or javascript:, or written."""
        src = attrs.get("src", "")
        if not src.strip(_C0_AND_SPACE):
            return
        target = self._url(src)
        if _scheme_of(target) in _NOT_LOADED_SCHEMES and target is not None:
            return
        hidden = _is_hidden(attrs)
        if mode == _WRITTEN or (mode == _INNER and hidden):
            self.add(Technique.DOCUMENT_WRITE, target, raw, ctx, obfuscated, depth)
        elif mode == _DOCUMENT and (hidden or _scheme_of(target) in ("data", "javascript")):
            self.add(Technique.HIDDEN_IFRAME, target, raw, ctx, obfuscated, depth)

    def _event_attributes(self, attrs: dict[str, str], raw: str, ctx: _Ctx, depth: int,
                          obfuscated: bool) -> None:
        """Event attributes that fire by themselves, read as scripts run at load."""
        for name, code in attrs.items():
            if not name.startswith("on") or name[2:] not in _AUTO_EVENTS:
                continue
            if name in ("onfocus", "onfocusin") and "autofocus" not in attrs:
                continue
            if name == "ontoggle" and "open" not in attrs:
                continue
            self.analyze_script(code, _Ctx(_INHERIT, ctx), depth, obfuscated, None, prefilter=False)

    # -- the end: decide what was automatic ---------------------------------

    def navigations(self) -> list[Navigation]:
        """The navigations found, judged as a whole: named functions and forms resolved."""
        result = []
        for found in self.found:
            target = found.target
            if found.form_ref is not None:
                target = self._form_target(found.form_ref)
            anchor = found.ctx.anchor()
            automatic = anchor.mode == _ALWAYS or (
                anchor.mode == _NAMED and self.called_automatically(anchor, set()))
            timer = found.ctx.timer_ctx()
            technique = found.technique
            scheme = _scheme_of(target)
            if scheme in ("data", "javascript"):
                technique = _with_scheme(technique, target)
            elif found.obfuscated:
                technique = Technique.OBFUSCATED_SCRIPT
            elif timer is not None and technique is Technique.SCRIPT:
                technique = Technique.SCRIPT_TIMER
            delay = found.delay if found.delay is not None else (timer.delay if timer is not None else None)
            result.append(Navigation(technique, target, found.raw, automatic, delay))
        return result

    def _form_target(self, ref: tuple[str, str]) -> str | None:
        """Where the form a script submits goes: its action, resolved, or the document itself."""
        kind, key = ref
        form: _Form | None = None
        if kind == "index" and key.isdigit() and int(key) < len(self.forms):
            form = self.forms[int(key)]
        elif kind in ("id", "name"):
            form = next((f for f in self.forms if key in (f.id, f.name)), None)
        elif kind == "" and len(self.forms) == 1:
            form = self.forms[0]
        if form is None:
            return None
        if not form.action or not form.action.strip(_C0_AND_SPACE):
            return self.doc_url
        return _resolve(form.action, form.base)


# ---------------------------------------------------------------------------
# JavaScript: tokens
# ---------------------------------------------------------------------------

_NAME, _STR, _NUM, _PUNCT, _TPL, _TPL_HEAD, _TPL_MID, _TPL_TAIL, _REGEX, _OTHER = range(10)
_ESCAPED_CHAR = r"\\u(?:[0-9a-fA-F]{4}|\{[0-9a-fA-F]+\})"
# Whitespace and comments, then one token; the groups are numbered in order of frequency:
# 1 name, 2 punctuator, 3 string, 4 number, 5 name with escapes, 6 template start, 7 end, 8 other.
_JS_TOKEN = re.compile(
    rf"""(?:\s++|//[^\n\r\u2028\u2029]*+|/\*[\s\S]*?(?:\*/|\Z)|<!--[^\n\r]*+)*+
    (?:
        ([A-Za-z_$\u00aa-\uffff][\w$\u00aa-\uffff]*+(?!\\))
      | (=>|\.\.\.|\?\.(?!\d)|[=!]==?|\*\*=?|&&=?|\|\|=?|\?\?=?|\+\+|--|<<=?|>>>?=?|[-+*/%&|^<>]=
         |[{{}}()\[\];,<>+\-*/%&|^!~?:=@\#]|\.(?!\d))
      | ("(?:[^"\\\n\r]++|\\(?:\r\n|[\s\S]))*+"?|'(?:[^'\\\n\r]++|\\(?:\r\n|[\s\S]))*+'?)
      | (0[xXoObB][0-9a-fA-F_]*+n?|(?:\d[\d_]*+(?:\.[\d_]*+)?|\.\d[\d_]*+)(?:[eE][+-]?\d++)?n?)
      | ((?:[\w$\u00aa-\uffff]|{_ESCAPED_CHAR})++)
      | (`)
      | (\Z)
      | ([\s\S])
    )""",
    re.VERBOSE,
)
_JS_REGEX = re.compile(
    r"/(?![*/])(?:[^/\\\[\n\r]++|\\[^\n\r]|\[(?:[^\]\\\n\r]++|\\[^\n\r])*+\])++/[A-Za-z]*+"
)
_TPL_REST = re.compile(r"(?:[^`\\$]++|\\[\s\S]?|\$(?!\{))*+(`|\$\{|\Z)")  # matches anywhere
_REGEX_AFTER = frozenset({
    "return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else",
    "yield", "await",
})
_OPENER = {")": "(", "]": "[", "}": "{"}
_TEMPLATE_OPEN = (_TPL_HEAD, _TPL_MID)


class _Tokens(NamedTuple):
    """A script as tokens: parallel lists, plus where each bracket pair opens and closes."""

    kinds: list[int]
    texts: list[str]  # strings, templates and regexes keep their delimiters
    starts: list[int]
    close_of: dict[int, int]  # opener index -> closer index (a template part counts as both)
    open_of: dict[int, int]
    escaped: set[int]  # names written with \u escapes


def _lex(code: str) -> _Tokens:
    """Tokens of a script, tolerant of anything (cut-off input, stray characters, unbalanced brackets)."""
    kinds: list[int] = []
    texts: list[str] = []
    starts: list[int] = []
    close_of: dict[int, int] = {}
    open_of: dict[int, int] = {}
    escaped: set[int] = set()
    openers: list[int] = []
    add_kind, add_text, add_start = kinds.append, texts.append, starts.append
    pos = 0
    while True:
        # A regular expression or template literal needs the tokens before it to be
        # read; the scan stops there and starts again after it.
        restart = -1
        for m in _JS_TOKEN.finditer(code, pos):
            group = m.lastindex
            if group == 1:
                add_kind(_NAME)
                add_text(m.group(1))
                add_start(m.start(1))
            elif group == 2:
                text = m.group(2)
                start = m.start(2)
                if text == "(" or text == "[" or text == "{":
                    openers.append(len(kinds))
                elif text == ")" or text == "]" or text == "}":
                    if text == "}" and openers and kinds[openers[-1]] in _TEMPLATE_OPEN:
                        restart = _template_part(code, m.end(), start, openers.pop(), kinds, texts, starts,
                                                 close_of, open_of, openers)
                        break
                    want = _OPENER[text]
                    for depth in range(len(openers) - 1, max(-1, len(openers) - 17), -1):
                        if texts[openers[depth]] == want:
                            close_of[openers[depth]] = len(kinds)
                            open_of[len(kinds)] = openers[depth]
                            del openers[depth:]
                            break
                elif text[0] == "/" and _regex_allowed(kinds, texts):
                    regex = _JS_REGEX.match(code, start)
                    if regex is not None:
                        add_kind(_REGEX)
                        add_text(regex.group())
                        add_start(start)
                        restart = regex.end()
                        break
                add_kind(_PUNCT)
                add_text(text)
                add_start(start)
            elif group == 3:
                add_kind(_STR)
                add_text(m.group(3))
                add_start(m.start(3))
            elif group == 4:
                add_kind(_NUM)
                add_text(m.group(4))
                add_start(m.start(4))
            elif group == 5:
                escaped.add(len(kinds))
                add_kind(_NAME)
                add_text(_unescape_js(m.group(5))[0])
                add_start(m.start(5))
            elif group == 6:
                restart = _template_part(code, m.end(), m.start(6), -1, kinds, texts, starts, close_of,
                                         open_of, openers)
                break
            elif group == 7:
                break
            else:
                add_kind(_OTHER)
                add_text(m.group(8))
                add_start(m.start(8))
        if restart < 0:
            return _Tokens(kinds, texts, starts, close_of, open_of, escaped)
        pos = restart


def _template_part(code: str, pos: int, start: int, opener: int, kinds: list[int], texts: list[str],
                   starts: list[int], close_of: dict[int, int], open_of: dict[int, int],
                   openers: list[int]) -> int:
    """Add the template literal part from start (a backtick, or the "}" after a substitution); its end."""
    rest = _TPL_REST.match(code, pos)
    assert rest is not None  # every part of the pattern is optional
    head = rest.group(1) == "${"
    index = len(kinds)
    if opener < 0:
        kinds.append(_TPL_HEAD if head else _TPL)
    else:
        kinds.append(_TPL_MID if head else _TPL_TAIL)
        close_of[opener] = index
        open_of[index] = opener
    if head:
        openers.append(index)
    texts.append(code[start:rest.end()])
    starts.append(start)
    return rest.end()


def _regex_allowed(kinds: list[int], texts: list[str]) -> bool:
    """Whether a "/" here starts a regular expression rather than dividing."""
    if not kinds:
        return True
    kind = kinds[-1]
    if kind == _PUNCT:
        return texts[-1] not in (")", "]")
    if kind == _NAME:
        return texts[-1] in _REGEX_AFTER
    return kind in (_TPL_HEAD, _TPL_MID, _OTHER)


_JS_ESCAPE = re.compile(
    r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|u\{([0-9a-fA-F]{1,6})\}|([0-7]{1,3})|(\r\n|[\s\S]))"
)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v",
                   "\n": "", "\r": "", "\r\n": "", "\u2028": "", "\u2029": ""}


def _unescape_js(body: str) -> tuple[str, bool]:
    """A string literal's body decoded, and whether an escape hid a letter or digit."""
    if "\\" not in body:
        return body, False
    hiding = False

    def decode(match: re.Match[str]) -> str:
        nonlocal hiding
        hexa, unicode, braced, octal, other = match.groups()
        digits = hexa or unicode or braced
        if digits is not None:
            char = chr(min(int(digits, 16), 0x10FFFF))
        elif octal is not None:
            char = chr(int(octal, 8))
        else:
            return _SIMPLE_ESCAPES.get(other, other)
        if char.isascii() and char.isalnum():
            hiding = True
        return char

    return _JS_ESCAPE.sub(decode, body), hiding


def _string_literal(raw: str) -> tuple[str, bool]:
    """The value of a quoted string token; one cut off by the end of the sample ends in an unknown part."""
    if len(raw) > 1 and raw[-1] == raw[0]:
        return _unescape_js(raw[1:-1])
    text, hiding = _unescape_js(raw[1:])
    return text + _PH, hiding


def _template_chunk(raw: str) -> tuple[str, bool]:
    """The cooked text of one template token part, without its delimiters."""
    body = raw[1:]
    if body.endswith("${"):
        return _unescape_js(body[:-2])
    if body.endswith("`") and len(raw) > 1:
        return _unescape_js(body[:-1])
    text, hiding = _unescape_js(body)
    return text + _PH, hiding  # cut off by the end of the sample


def _js_number(text: str) -> str:
    """A numeric literal as JavaScript prints it."""
    text = text.replace("_", "").rstrip("n")
    try:
        prefix = text[:2].lower()
        if prefix in ("0x", "0o", "0b"):
            return str(int(text[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix]))
        number = float(text)
    except ValueError:
        return _PH
    if number.is_integer() and abs(number) < 1e21:
        return str(int(number))
    return repr(number)


# ---------------------------------------------------------------------------
# JavaScript: values
# ---------------------------------------------------------------------------

_PH = "\uffff"  # stands for a part of a string that is not known
# Stands for location.hash: unknown, but "#..." or nothing, so it cannot change where a URL goes.
# String methods see it as unknown: location.hash.slice(1) may be any URL.
_FRAGMENT = "\ufffe"


class _Val(NamedTuple):
    """What a script expression evaluates to, as far as literals tell."""

    text: str  # the string, with _PH where a part is unknown
    obfuscated: bool = False  # built with a decoder, hiding escapes, eval or reversal
    items: tuple[str, ...] | None = None  # an array of known strings
    location: bool = False  # the location object itself (whose text is the page's URL)
    url: bool = False  # a URL object (new URL(...)), whose text is its href


_UNKNOWN = _Val(_PH)


def _unknown(*values: _Val) -> _Val:
    """An unknown value that keeps the obfuscation of what built it."""
    return _Val(_PH, any(v.obfuscated for v in values))


def _concat(left: _Val, right: _Val) -> _Val:
    """left + right, with runs of unknown parts merged."""
    text = left.text + right.text
    if _PH + _PH in text:
        text = re.sub(f"{_PH}+", _PH, text)
    return _Val(text, left.obfuscated or right.obfuscated)


_PERCENT_UNESCAPE = re.compile(r"%(?:u([0-9a-fA-F]{4})|([0-9a-fA-F]{2}))")


def _hides_alnum(encoded: str, decoded: str) -> bool:
    """Whether percent-decoding revealed letters or digits (an encoding of what needs none)."""
    def alnum(text: str) -> int:
        return sum(c.isascii() and c.isalnum() for c in text)

    # every "%XX" contributes two hex digits to the encoded count, decoded or not
    return alnum(decoded) > alnum(encoded) - 2 * encoded.count("%")


def _decode_call(name: str, args: list[_Val]) -> _Val:
    """A decoding (or encoding) global applied to known arguments."""
    first = args[0] if args else _Val("undefined")
    text = first.text
    if name == "atob":
        if _PH in text:
            return _Val(_PH, True)
        compact = "".join(text.split())
        try:
            data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError):
            return _Val(_PH, True)
        return _Val(data.decode("latin-1"), True)
    if name == "fromCharCode":
        if not args or any(_PH in a.text for a in args):
            return _Val(_PH, True)
        try:
            return _Val("".join(chr(int(float(a.text)) & 0xFFFF) for a in args), True)
        except ValueError:
            return _Val(_PH, True)
    if name == "unescape":
        decoded = _PERCENT_UNESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text)
        return _Val(decoded, first.obfuscated or _hides_alnum(text, decoded))
    if name in ("decodeURIComponent", "decodeURI"):
        try:
            decoded = unquote(text, errors="strict")
        except UnicodeDecodeError:
            return _unknown(first)
        return _Val(decoded, first.obfuscated or _hides_alnum(text, decoded))
    if _PH in text:
        return _unknown(first)
    safe = "-_.!~*'()" if name == "encodeURIComponent" else "-_.!~*'();/?:@&=+$,#" \
        if name == "encodeURI" else "@*_+-./"
    return _Val(quote(text, safe=safe, errors="surrogatepass"), first.obfuscated)


def _method(value: _Val, name: str, args: list[_Val]) -> _Val:
    """value.name(*args) for the string and array methods obfuscators use."""
    obfuscated = value.obfuscated or any(a.obfuscated for a in args)
    if any(_PH in a.text or _FRAGMENT in a.text for a in args):
        return _Val(_PH, obfuscated)
    if value.items is not None:
        if name == "join":
            return _Val((args[0].text if args else ",").join(value.items), obfuscated)
        if name == "reverse":
            return _Val(_PH, True, tuple(reversed(value.items)))
        if name == "concat":
            return _Val(_PH, obfuscated, value.items + tuple(a.text for a in args))
        return _Val(_PH, obfuscated)
    text = value.text
    if _PH in text or _FRAGMENT in text:
        return _Val(_PH, obfuscated)
    numbers = [int(float(a.text)) if _NUMBER.fullmatch(a.text) else None for a in args]
    if name == "split" and args:
        separator = args[0].text
        return _Val(_PH, obfuscated, tuple(text) if separator == "" else tuple(text.split(separator)))
    if name == "concat":
        return _Val(text + "".join(a.text for a in args), obfuscated)
    if name in ("replace", "replaceAll") and len(args) == 2:
        return _Val(text.replace(args[0].text, args[1].text, 1 if name == "replace" else -1), obfuscated)
    if name in ("toString", "valueOf", "trim", "toLowerCase", "toUpperCase"):
        return _Val(text.strip() if name == "trim" else text.lower() if name == "toLowerCase"
                    else text.upper() if name == "toUpperCase" else text, obfuscated)
    if name in ("slice", "substring", "substr") and args and None not in numbers:
        begin = numbers[0] or 0
        if name == "substr":
            stop = begin + numbers[1] if len(numbers) > 1 and numbers[1] is not None else None
            if begin < 0:
                begin = max(len(text) + begin, 0)
                stop = begin + numbers[1] if len(numbers) > 1 and numbers[1] is not None else None
            return _Val(text[begin:stop], obfuscated)
        stop = numbers[1] if len(numbers) > 1 else None
        if name == "substring":
            begin = max(begin, 0)
            stop = None if stop is None else max(stop, 0)
            if stop is not None and stop < begin:
                begin, stop = stop, begin
        return _Val(text[begin:stop], obfuscated)
    if name == "charAt" and numbers and numbers[0] is not None:
        return _Val(text[numbers[0]:numbers[0] + 1], obfuscated)
    return _Val(_PH, obfuscated)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


# ---------------------------------------------------------------------------
# JavaScript: what a script does
# ---------------------------------------------------------------------------

# Scripts without any of these cannot navigate, so they are not tokenized at all. Each
# pattern starts with a literal, which Python's re finds with a fast string search; one
# alternation of them all would be tried at every position, a hundred times slower.
_SINK_HINTS = tuple(re.compile(pattern) for pattern in (
    r"location\s*(?:=(?!=)|\[|\.\s*(?:href\s*=(?!=)|assign|replace\s*\(|host(?:name)?\s*=(?!=))|[;,)\n]|\Z)",
    r"open\s*\(", r"write(?:ln)?\s*\(", r"submit\s*\(\s*\)", r"requestSubmit\s*\(", r"click\s*\(\s*\)",
    r"innerHTML\s*=", r"outerHTML\s*=", r"navigate\s*\(", r"eval\s*\(", r"Function\s*\(", r"execScript\s*\(",
    r"setTimeout\s*\(\s*(?:[\"'`]|atob|unescape|decodeURI|String)",
    r"setInterval\s*\(\s*(?:[\"'`]|atob|unescape|decodeURI|String)",
    r"createElement\s*\(\s*[\"'`]i?frame",
    r"\\(?:x|u00|u\{)[4-7][0-9a-fA-F]",
    *(rf"{name}\s*\[" for name in ("window", "self", "top", "parent", "opener", "globalThis", "frames",
                                    "document")),
))


# Every hint contains one of these; plain substring tests cost less than the searches.
_HINT_WORDS = ("location", "open", "write", "ubmit", "click", "HTML", "navigate", "eval", "Function",
               "execScript", "setTimeout", "setInterval", "createElement", "\\", "[")


def _may_navigate(code: str) -> bool:
    """Whether a script contains anything that could navigate (cheap: no tokenizing)."""
    for word in _HINT_WORDS:
        if word in code:
            return any(hint.search(code) for hint in _SINK_HINTS)
    return False


_WINDOWS = frozenset({"window", "self", "globalThis", "top", "parent", "opener", "content"})
_ROOTS = _WINDOWS | {"document", "location", "frames"}
_MEMBER_TRIGGERS = frozenset({
    "submit", "requestSubmit", "click", "innerHTML", "outerHTML", "href", "assign", "replace",
})
# The location object held in a variable: `var l = window.location;`
_LOCATION_ALIAS = re.compile(r"=\s*(?:(?:window|self|top|parent|document)\s*\.\s*)*location\s*(?:[;,)\n]|\Z)")
_TRIGGERS = _ROOTS | _MEMBER_TRIGGERS | {"eval", "execScript", "Function", "setTimeout", "setInterval"}
_KEYWORDS = frozenset({
    "break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do", "else",
    "export", "extends", "finally", "for", "function", "if", "import", "in", "instanceof", "let", "new",
    "return", "super", "switch", "this", "throw", "try", "typeof", "var", "void", "while", "with", "yield",
    "await", "async", "of", "static", "get", "set", "true", "false", "null", "undefined",
})
_EXPRESSION_KEYWORDS = frozenset({
    "return", "typeof", "void", "new", "yield", "await", "delete", "in", "of", "instanceof", "case", "throw",
})
# Callbacks that run when their caller runs, without a user.
_RUN_CALLBACKS = frozenset({
    "requestAnimationFrame", "setImmediate", "queueMicrotask", "requestIdleCallback", "then", "catch",
    "finally", "done", "always", "ready", "forEach", "map", "filter", "some", "every", "find", "findIndex",
    "reduce", "reduceRight", "each", "flatMap", "sort", "Promise",
})
_LISTENERS = frozenset({"addEventListener", "attachEvent", "on", "one", "bind"})
_LOAD_EVENTS = frozenset({"load", "domcontentloaded", "pageshow", "readystatechange"})
_LOAD_HANDLERS = frozenset({"onload", "onpageshow", "onreadystatechange", "onerror"})
_DECODERS = frozenset({"atob", "unescape", "decodeURIComponent", "decodeURI", "encodeURIComponent",
                       "encodeURI", "escape"})
_CONTINUES = frozenset({
    "?", "||", "&&", "??", "-", "*", "/", "%", "**", "==", "!=", "===", "!==", "<", ">", "<=", ">=", "&", "|",
    "^", "<<", ">>", ">>>", ".", "?.", "[", "(",
})
_SELF_PROPS = frozenset({"href", "origin", "protocol", "host", "hostname", "port", "pathname", "search"})
_MAX_EVAL_DEPTH = 24


class _Script:
    """One script: its tokens, and the questions asked of them, answered lazily and remembered.

    Only tokens that can begin a sink are visited. The function a token runs in is found by
    walking back over balanced brackets to the ones around it, each classified once; the value
    of a variable comes from the assignments that may reach the use in the nearest scope that
    sets it.
    """

    def __init__(self, page: _Page, code: str, ctx: _Ctx, depth: int, obfuscated: bool,
                 raw: str | None) -> None:
        self.page = page
        self.code = code
        self.tokens = _lex(code)
        self.kinds = self.tokens.kinds
        self.texts = self.tokens.texts
        self.n = len(self.kinds)
        self.root = ctx
        self.ctx = ctx  # the context of the sink being handled
        self.depth = depth
        self.obfuscated = obfuscated
        self.raw_override = raw
        if ctx.script is None and ctx is not page.root:
            ctx.script, ctx.span = self, (0, self.n)  # an event attribute's or timer string's own scope
        self.inside: dict[int, _Ctx] = {}  # opener (or -2 - arrow) -> context of the code within
        self.level: dict[int, int] = {}  # token -> the bracket around it (-1: none), arrows aside
        self.sites: dict[str, list[int]] = {}
        self.evaluating: set[int] = set()
        self.element_attrs: dict[str, dict[str, tuple[_Val, _Ctx]]] = {}
        self.location_alias: bool | None = None

    def run(self) -> None:
        """Handle every sink of the script."""
        kinds = self.kinds
        for i in [i for i, text in enumerate(self.texts) if text in _TRIGGERS]:
            if kinds[i] == _NAME:
                self._trigger(i)

    # -- where a token runs ---------------------------------------------------------

    def ctx_at(self, i: int) -> _Ctx:
        """The context token i runs in."""
        pending: list[int] = []
        j = i
        while True:
            key = self._enclosing(j, True)
            if key == -1:
                ctx = self.root
                break
            known = self.inside.get(key)
            if known is not None:
                ctx = known
                break
            pending.append(key)
            j = self._arrow_start(-2 - key) if key < -1 else key
        for key in reversed(pending):
            ctx = self._inside(key, ctx)
            self.inside[key] = ctx
        return ctx

    def _enclosing(self, i: int, arrows: bool) -> int:
        """The innermost open bracket around token i; -2 - arrow for an arrow function's bare body; or -1."""
        texts, kinds, open_of, close_of = self.texts, self.kinds, self.tokens.open_of, self.tokens.close_of
        level = self.level
        separated = not arrows
        visited: list[int] = []
        result = -1
        j = i - 1
        while j >= 0:
            if separated:
                # Tokens at one level share the bracket around them: remember it for later walks.
                known = level.get(j)
                if known is not None:
                    result = known
                    break
                visited.append(j)
            kind = kinds[j]
            if not separated and kinds[j + 1] == _NAME and self._line_break_after(j):
                separated = True  # a new statement by automatic semicolon insertion
            if kind == _PUNCT:
                text = texts[j]
                if text == ")" or text == "]" or text == "}":
                    opener = open_of.get(j)
                    if opener is not None:
                        j = opener - 1
                        continue
                elif text == "(" or text == "[" or text == "{":
                    result = j
                    break
                elif text == "=>":
                    if not separated and j + 1 < self.n and texts[j + 1] != "{":
                        return -2 - j
                elif text == "," or text == ";":
                    separated = True
            elif kind in (_TPL_HEAD, _TPL_MID):
                closer = close_of.get(j)
                if closer is None or closer >= i:
                    result = j
                    break
                j = open_of.get(j, j) - 1 if kind == _TPL_MID else j - 1
                continue
            elif kind == _TPL_TAIL:
                j = open_of.get(j, j - 1)
                continue
            j -= 1
        for k in visited:
            level[k] = result
        return result

    def _line_break_after(self, j: int) -> bool:
        """Whether token j ends an expression and a line break follows it (so a new statement may start)."""
        kind, text = self.kinds[j], self.texts[j]
        if kind == _PUNCT:
            if text not in (")", "]", "}", "++", "--"):
                return False
        elif kind == _NAME and text in _EXPRESSION_KEYWORDS:
            return False
        start = self.tokens.starts[j] + len(text)
        return "\n" in self.code[start:self.tokens.starts[j + 1]]

    def _inside(self, key: int, outer: _Ctx) -> _Ctx:
        """The context of the code within a bracket (or arrow body) that runs in outer."""
        if key < -1:
            arrow = -2 - key
            opener = self._enclosing(arrow, False)
            end = self.tokens.close_of.get(opener, self.n - 1) if opener >= 0 else self.n - 1
            ctx = self._function(self._arrow_start(arrow), outer, (arrow + 1, end))
            self._arrow_params(arrow, ctx)
            return ctx
        if self.texts[key] == "{" and self.kinds[key] == _PUNCT:
            return self._block(key, outer)
        return outer

    def _block(self, i: int, ctx: _Ctx) -> _Ctx:
        """The context of the block a "{" opens: a new one for a function body, else the current."""
        texts, kinds = self.texts, self.kinds
        if i == 0:
            return ctx
        span = (i, self.tokens.close_of.get(i, self.n - 1))
        before = texts[i - 1]
        if before == "=>":
            new = self._function(self._arrow_start(i - 1), ctx, span)
            self._arrow_params(i - 1, new)
            return new
        if before != ")" or kinds[i - 1] != _PUNCT:
            return ctx
        opener = self.tokens.open_of.get(i - 1)
        if opener is None or opener == 0:
            return ctx
        head = opener - 1
        head_text = texts[head]
        if kinds[head] != _NAME:
            return ctx
        if head_text == "function":
            new = self._function(head, ctx, span)
        elif head and (texts[head - 1] == "function" or (texts[head - 1] == "*" and head > 1
                                                          and texts[head - 2] == "function")):
            keyword = head - 1 if texts[head - 1] == "function" else head - 2
            if self._in_expression(keyword):
                new = self._function(keyword, ctx, span)
            else:
                new = self._named(head_text, ctx, span, member=False)
        elif head_text in _KEYWORDS or (head and texts[head - 1] in (".", "?.")):
            return ctx
        else:
            new = self._named(head_text, ctx, span, member=True)  # a method: `go(u) { ... }`
        self._declare_params(opener, i - 1, new)
        return new

    def _in_expression(self, keyword: int) -> bool:
        """Whether the `function` at keyword starts an expression (not a declaration)."""
        before = keyword - 1
        if before >= 0 and self.texts[before] == "async":
            before -= 1
        if before < 0:
            return False
        kind, text = self.kinds[before], self.texts[before]
        if kind == _PUNCT:
            return text not in (";", "{", "}", ")", "]")
        return (kind == _NAME and text in _EXPRESSION_KEYWORDS) or kind in (_TPL_HEAD, _TPL_MID)

    def _named(self, name: str, ctx: _Ctx, span: tuple[int, int], member: bool) -> _Ctx:
        """A function that runs when something calls it by name (as `name()`, or `x.name()` for a member)."""
        return _Ctx(_NAMED, ctx, name, script=self, span=span, member=member)

    def _arrow_start(self, arrow: int) -> int:
        """The first token of the arrow function whose "=>" is at arrow."""
        start = arrow - 1
        if start >= 0 and self.texts[start] == ")":
            start = self.tokens.open_of.get(start, start)
        if start > 0 and self.texts[start - 1] == "async":
            start -= 1
        return start

    def _arrow_params(self, arrow: int, ctx: _Ctx) -> None:
        """An arrow function's parameters shadow outer variables of the same name."""
        before = arrow - 1
        if before < 0:
            return
        if self.texts[before] == ")":
            opener = self.tokens.open_of.get(before)
            if opener is not None:
                self._declare_params(opener, before, ctx)
        elif self.kinds[before] == _NAME:
            ctx.params.add(self.texts[before])

    def _declare_params(self, opener: int, closer: int, ctx: _Ctx) -> None:
        """Parameters shadow outer variables of the same name."""
        texts, kinds = self.texts, self.kinds
        for k in range(opener + 1, closer):
            if kinds[k] == _NAME and texts[k - 1] in ("(", ",", "...") and texts[k] not in _KEYWORDS:
                ctx.params.add(texts[k])

    def _function(self, start: int, ctx: _Ctx, span: tuple[int, int]) -> _Ctx:
        """The context of a function expression starting at start, judged by what it is handed to."""
        texts, kinds = self.texts, self.kinds
        if start > 0 and texts[start - 1] == "async" and texts[start] != "async":
            start -= 1
        before = start - 1
        if before < 0:
            return _Ctx(_NEVER, ctx, script=self, span=span)
        prev = texts[before]
        if prev in ("!", "~", "+", "-", "void", "new"):
            return _Ctx(_INHERIT, ctx, script=self, span=span)  # !function(){...}(): invoked where it stands
        if prev in ("(", ","):
            opener = self._enclosing(start, False)
            if opener < 0 or texts[opener] != "(":
                return _Ctx(_NEVER, ctx, script=self, span=span)
            callee = opener - 1
            if callee < 0 or kinds[callee] != _NAME or texts[callee] in _KEYWORDS:
                # a grouping paren: (function(){...})() runs where it stands
                return _Ctx(_INHERIT if prev == "(" else _NEVER, ctx, script=self, span=span)
            callback = self._callback(callee, opener, start == opener + 1, ctx)
            callback.script, callback.span = self, span
            return callback
        if prev == "=" and before > 0 and kinds[before - 1] == _NAME:
            target = texts[before - 1]
            if target in _LOAD_HANDLERS:
                return _Ctx(_INHERIT, ctx, script=self, span=span)
            member = before > 1 and texts[before - 2] in (".", "?.")
            if target.startswith("on") and member:
                return _Ctx(_NEVER, ctx, script=self, span=span)
            return self._named(target, ctx, span, member)
        if prev == ":" and before > 0 and kinds[before - 1] in (_NAME, _STR):
            key = texts[before - 1]
            return self._named(_string_literal(key)[0] if kinds[before - 1] == _STR else key, ctx, span, True)
        return _Ctx(_NEVER, ctx, script=self, span=span)

    def _callback(self, callee: int, opener: int, first: bool, ctx: _Ctx) -> _Ctx:
        """The context of a function passed to the call whose name is at callee."""
        texts = self.texts
        name = texts[callee]
        member = callee > 0 and texts[callee - 1] in (".", "?.")
        if name in ("setTimeout", "setInterval"):
            return _Ctx(_INHERIT, ctx, timer=True, delay=self._delay(opener))
        if name in _RUN_CALLBACKS or (name in ("$", "jQuery") and first and not member) \
                or (name == "load" and member):
            return _Ctx(_INHERIT, ctx)
        if name in _LISTENERS and opener + 1 < self.n and self.kinds[opener + 1] == _STR:
            event = _string_literal(texts[opener + 1])[0].lower()
            event = event[2:] if name == "attachEvent" and event.startswith("on") else event
            return _Ctx(_INHERIT if event in _LOAD_EVENTS else _NEVER, ctx)
        return _Ctx(_NEVER, ctx)

    def call_site(self, k: int, function: _Ctx) -> _Ctx | None:
        """The context in which the function named at token k gets called there, or None if it is not."""
        texts, n = self.texts, self.n
        prev = texts[k - 1] if k else ""
        following = texts[k + 1] if k + 1 < n else ""
        member = prev in (".", "?.")
        if following == "(" and prev != "function":
            if member != function.member:
                return None
            ctx = self.ctx_at(k)
            return ctx if member or self._sees(ctx, function) else None
        if member or function.member:
            return None
        if prev in ("(", ",") and following in (",", ")"):  # passed as a callback: setTimeout(go, 9)
            opener = k - 1 if prev == "(" else self._enclosing(k, False)
            callee = opener - 1
            if opener < 0 or texts[opener] != "(" or callee < 0 or self.kinds[callee] != _NAME \
                    or texts[callee] in _KEYWORDS:
                return None
            ctx = self.ctx_at(k)
            if not self._sees(ctx, function):
                return None
            callback = self._callback(callee, opener, k == opener + 1, ctx)
            return callback if callback.mode != _NEVER else None
        if prev == "=" and k > 1 and texts[k - 2] in _LOAD_HANDLERS:  # window.onload = go
            ctx = self.ctx_at(k)
            return _Ctx(_INHERIT, ctx) if self._sees(ctx, function) else None
        return None

    def _sees(self, ctx: _Ctx, function: _Ctx) -> bool:
        """Whether code in ctx reaches the function by its name: nothing of that name declared in between."""
        scope: _Ctx | None = ctx
        while scope is not None:
            if scope is function.parent:
                return True
            if function.name in scope.params or self._declares(scope, function.name):
                return False
            scope = scope.parent
        return False

    def _declares(self, scope: _Ctx, name: str) -> bool:
        """Whether a function body declares name itself (`function name`, `var name`, `let`, `const`)."""
        script, span = scope.script, scope.span
        if script is None or span is None:
            return False
        texts = script.texts
        for k in script.name_sites(name):
            if span[0] <= k <= span[1] and k and texts[k - 1] in ("function", "var", "let", "const"):
                if texts[k - 1] == "function" and script._in_expression(k - 1):
                    continue  # a named function expression's name is only seen inside it
                if script.ctx_at(k) is scope:
                    return True
        return False

    def _delay(self, opener: int) -> float | None:
        """The delay in seconds of a timer call, when its second argument is a number."""
        args = self._args(opener)
        if len(args) < 2:
            return 0.0
        start, stop = args[1]
        if stop - start == 1 and self.kinds[start] == _NUM:
            text = _js_number(self.texts[start])
            if _NUMBER.fullmatch(text):
                return max(float(text), 0.0) / 1000
        return None

    def _args(self, opener: int) -> list[tuple[int, int]]:
        """The token ranges of the arguments of the call whose "(" is at opener."""
        close_of, texts = self.tokens.close_of, self.texts
        closer = close_of.get(opener, self.n)
        args: list[tuple[int, int]] = []
        start = j = opener + 1
        while j < closer:
            jump = close_of.get(j)
            if jump is not None:
                while jump in close_of:  # template parts chain to the tail
                    jump = close_of[jump]
                j = jump + 1
                continue
            if texts[j] == "," and self.kinds[j] == _PUNCT:
                args.append((start, j))
                start = j + 1
            j += 1
        if start < closer or args:
            args.append((start, closer))
        return args

    # -- sinks ----------------------------------------------------------------

    def _at(self, i: int) -> None:
        """Make the context of token i the current one, for the sink that starts there."""
        self.ctx = self.ctx_at(i)

    def _trigger(self, i: int) -> None:
        """A name that may begin a navigation: a window or location chain, eval, a timer, submit()."""
        texts, n = self.texts, self.n
        name = texts[i]
        prev = texts[i - 1] if i else ""
        following = texts[i + 1] if i + 1 < n else ""
        if name in _MEMBER_TRIGGERS:
            if prev not in (".", "?."):
                return
            if following == "(" and name in ("submit", "requestSubmit", "click"):
                self._member_call(i)
            elif following == "=" and name in ("innerHTML", "outerHTML"):
                self._inner_html(i)
            elif following == ("=" if name == "href" else "(") and name in ("href", "assign", "replace"):
                self._location_alias(i)
            return
        if prev in (".", "?.", "var", "let", "const", "function"):
            return  # a member of something else, or a local of that name
        if following == ":" and prev in ("{", ","):
            return  # an object key
        if name in ("eval", "execScript", "Function") and following == "(":
            self._eval(i, i + 1, name == "Function", False)
            return
        if name in ("setTimeout", "setInterval") and following == "(":
            self._timer(i, i + 1)
            return
        if name not in _ROOTS:
            return
        parts, after, obfuscated = self._chain(i)
        k = 0
        while k < len(parts) - 1 and parts[k] in _WINDOWS:
            k += 1
        rest = parts[k:]
        if rest[:2] == ["document", "location"]:
            rest = rest[1:]
        following = texts[after] if after < n else ""
        if rest[0] == "location":
            if following == "=" and (len(rest) == 1 or rest[1:] == ["href"]):
                self._assign_sink(i, after, obfuscated)
            elif following == "=" and rest[1:] in (["host"], ["hostname"]):
                self._host_sink(i, after, rest[1], obfuscated)
            elif following == "(" and rest[1:] in (["assign"], ["replace"]):
                self._call_sink(i, after, Technique.SCRIPT, obfuscated)
        elif following == "(" and k and rest == ["open"]:
            self._call_sink(i, after, Technique.WINDOW_OPEN, obfuscated)
        elif following == "(" and k and rest == ["navigate"]:
            self._call_sink(i, after, Technique.SCRIPT, obfuscated)
        elif following == "(" and rest in (["document", "write"], ["document", "writeln"]):
            self._write(i, after, obfuscated)
        elif following == "(" and rest == ["document", "createElement"]:
            self._created_element(i, after)
        elif following == "(" and rest in (["eval"], ["execScript"], ["Function"]):
            self._eval(i, after, rest == ["Function"], obfuscated)
        elif following == "(" and rest in (["setTimeout"], ["setInterval"]):
            self._timer(i, after)

    def _chain(self, i: int) -> tuple[list[str], int, bool]:
        """The member names of `a.b["c"]...` from i, where it ends, and whether a name was hidden."""
        texts, kinds, n = self.texts, self.kinds, self.n
        parts = [texts[i]]
        obfuscated = i in self.tokens.escaped
        j = i + 1
        while j < n and len(parts) < 8:
            text = texts[j]
            if (text == "." or text == "?.") and j + 1 < n and kinds[j + 1] == _NAME:
                parts.append(texts[j + 1])
                obfuscated = obfuscated or (j + 1) in self.tokens.escaped
                j += 2
            elif text == "[":
                closer = self.tokens.close_of.get(j)
                if closer is None:
                    break
                key = self._value(j + 1, closer, 1)
                literal = closer == j + 2 and kinds[j + 1] in (_STR, _NUM)
                j = closer + 1
                if _PH in key.text:
                    parts.append(_PH)
                    break
                parts.append(key.text)
                # window["lo" + "cation"], window[atob(..)]: a member name computed to hide it
                obfuscated = obfuscated or key.obfuscated or not literal
            else:
                break
        return parts, j, obfuscated

    def _raw(self, start: int) -> str:
        """The source of the statement that begins at token start, at most 200 characters."""
        if self.raw_override is not None:
            return self.raw_override
        texts, close_of, starts = self.texts, self.tokens.close_of, self.tokens.starts
        limit = starts[start] + _RAW_MAX
        k = start
        while k < self.n and starts[k] < limit:
            text = texts[k]
            jump = close_of.get(k)
            if jump is not None:
                while jump in close_of:
                    jump = close_of[jump]
                k = jump + 1
                continue
            if text == ";" or text in (")", "]", "}") or self.kinds[k] == _TPL_TAIL:
                break
            k += 1
        last = min(max(k - 1, start), self.n - 1)
        end = starts[last] + len(texts[last])
        if last in self.tokens.escaped:  # the text is decoded: measure the source again
            match = _JS_TOKEN.match(self.code, starts[last])
            end = match.end() if match else end
        return self.code[starts[start]:end][:_RAW_MAX]

    def _emit(self, technique: Technique, value: _Val | None, start: int, obfuscated: bool,
              ctx: _Ctx | None = None, form_ref: tuple[str, str] | None = None) -> None:
        """Record a navigation from this script."""
        target = None if value is None else self.page.target_of(value)
        hidden = self.obfuscated or obfuscated or (value is not None and value.obfuscated)
        self.page.add(technique, target, self._raw(start), ctx or self.ctx, hidden, self.depth,
                      form_ref=form_ref)

    def _assign_sink(self, start: int, equals: int, obfuscated: bool) -> None:
        """`location = x`, `location.href = x`."""
        self._at(start)
        self._emit(Technique.SCRIPT, self._rhs(equals + 1), start, obfuscated)

    def _host_sink(self, start: int, equals: int, part: str, obfuscated: bool) -> None:
        """`location.host = x` moves the page to another host."""
        self._at(start)
        value = self._rhs(equals + 1)
        try:
            parts = urlsplit(self.page.doc_url)
            port = parts.port
        except ValueError:
            port = None
            parts = None
        if parts is None or _PH in value.text or _FRAGMENT in value.text:
            self._emit(Technique.SCRIPT, None, start, obfuscated or value.obfuscated)
            return
        netloc = value.text if part == "host" or port is None else f"{value.text}:{port}"
        url = parts._replace(netloc=netloc).geturl()
        self._emit(Technique.SCRIPT, _Val(url, value.obfuscated), start, obfuscated)

    def _call_sink(self, start: int, opener: int, technique: Technique, obfuscated: bool) -> None:
        """`location.assign(x)`, `location.replace(x)`, `window.open(x)`."""
        self._at(start)
        args = self._args(opener)
        if not args or args[0][0] == args[0][1]:
            return  # window.open() with no URL opens a blank window
        self._emit(technique, self._value(*args[0]), start, obfuscated)

    def _write(self, start: int, opener: int, obfuscated: bool) -> None:
        """document.write(...): the markup written is read like the document's own."""
        self._at(start)
        value = _Val("")
        for first, stop in self._args(opener):
            value = _concat(value, self._value(first, stop))
        if "<" not in value.text:
            return
        raw = self._raw(start)
        hidden = self.obfuscated or obfuscated or value.obfuscated
        self.page.scan_markup(value.text, self.ctx, self.depth + 1, _WRITTEN, hidden, raw)

    def _eval(self, start: int, opener: int, last_argument: bool, obfuscated: bool) -> None:
        """eval(code), Function(code): known code is read as script; unknown decoded code is reported."""
        self._at(start)
        args = self._args(opener)
        if not args:
            return
        first, stop = args[-1] if last_argument else args[0]
        if first >= stop:
            return
        value = self._value(first, stop)
        if _PH in value.text and self.texts[first] == "function":
            unpacked = self._unpack(first, stop)
            if unpacked is not None:
                value = unpacked
        code = value.text.split(_PH, 1)[0]
        if code.strip():
            self.page.analyze_script(code, self.ctx, self.depth + 1, True, self._raw(start), prefilter=False)
        elif value.obfuscated or obfuscated:
            self._emit(Technique.SCRIPT, None, start, True)

    def _unpack(self, first: int, stop: int) -> _Val | None:
        """The code inside Dean Edwards' packer: eval(function(p,a,c,k,e,d){..}('..',62,9,'..'.split()))."""
        texts = self.texts
        params = [texts[k] for k in range(first + 2, min(first + 12, stop), 2)]
        if params[:4] != ["p", "a", "c", "k"]:
            return None
        closer = next((k for k in range(first, stop) if texts[k] == "{"), None)
        if closer is None:
            return None
        end = self.tokens.close_of.get(closer)
        if end is None or end + 1 >= stop or texts[end + 1] != "(":
            return None
        args = [self._value(a, b) for a, b in self._args(end + 1)]
        if len(args) < 4 or _PH in args[0].text or args[3].items is None:
            return _Val(_PH, True)
        try:
            radix = int(args[1].text)
        except ValueError:
            return _Val(_PH, True)
        words = args[3].items
        digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        if not 2 <= radix <= 62:
            return _Val(_PH, True)

        def word(match: re.Match[str]) -> str:
            number = 0
            for char in match.group():
                at = digits.find(char)
                if not 0 <= at < radix:
                    return match.group()
                number = number * radix + at
            return words[number] if number < len(words) and words[number] else match.group()

        return _Val(re.sub(r"\b\w+\b", word, args[0].text), True)

    def _timer(self, start: int, opener: int) -> None:
        """setTimeout/setInterval with code as a string (a function argument is judged at its body)."""
        args = self._args(opener)
        if not args:
            return
        first, stop = args[0]
        if first >= stop or self.texts[first] in ("function", "async") or (
                "=>" in self.texts[first:min(stop, first + 64)]):
            return
        if stop - first == 1 and self.kinds[first] == _NAME:
            known = self._lookup(self.texts[first], first)
            if known is None or _PH in known.text:
                return  # a function passed by name: judged where the function is
        self._at(start)
        ctx = _Ctx(_INHERIT, self.ctx, timer=True, delay=self._delay(opener))
        value = self._value(first, stop)
        code = value.text.split(_PH, 1)[0]
        if code.strip():
            self.page.analyze_script(code, ctx, self.depth + 1, self.obfuscated or value.obfuscated,
                                     self._raw(start), prefilter=False)
        elif value.obfuscated:
            self._emit(Technique.SCRIPT, None, start, True, ctx)

    def _member_call(self, i: int) -> None:
        """`form.submit()` and `link.click()`."""
        name = self.texts[i]
        closer = self.tokens.close_of.get(i + 1)
        if name != "requestSubmit" and (closer is None or closer != i + 2):
            return  # submit(handler) binds a handler; only submit() submits
        start = self._receiver_start(i)
        receiver = self._receiver(i)
        if name == "click":
            if receiver is not None and receiver[0] == "var":
                href = self._element_attrs(receiver[1]).get("href")
                if href is not None:
                    self._at(i)
                    self._emit(Technique.SCRIPT, href[0], start, False)
            return
        self._at(i)
        if receiver is not None and receiver[0] == "var":
            action = self._element_attrs(receiver[1]).get("action")
            if action is not None:
                self._emit(Technique.FORM_AUTOSUBMIT, action[0], start, False)
                return
            site = self._assignment_site(receiver[1], i)
            receiver = None
            if site is not None:
                script, k = site
                receiver = script._element_ref(k + 2, script._expression_end(k + 2))
        self._emit(Technique.FORM_AUTOSUBMIT, None, start, False, form_ref=receiver or ("", ""))

    def _location_alias(self, i: int) -> None:
        """`l.href = x`, `l.replace(x)` where the variable l holds the location object."""
        receiver = i - 2
        if receiver < 0 or self.kinds[receiver] != _NAME or self.texts[receiver] in _ROOTS \
                or (receiver and self.texts[receiver - 1] in (".", "?.")):
            return
        if self.location_alias is None:
            self.location_alias = _LOCATION_ALIAS.search(self.code) is not None or any(
                _LOCATION_ALIAS.search(code) for code, _ in self.page.sources)
        if not self.location_alias:
            return
        value = self._lookup(self.texts[receiver], receiver)
        if value is None or not value.location:
            return
        if self.texts[i] == "href":
            self._assign_sink(receiver, i + 1, False)
        else:
            self._call_sink(receiver, i + 1, Technique.SCRIPT, False)

    def _inner_html(self, i: int) -> None:
        """`el.innerHTML = markup`: the frames and refreshes in it load as in the document."""
        self._at(i)
        value = self._rhs(i + 2)
        if "<" in value.text:
            hidden = self.obfuscated or value.obfuscated
            self.page.scan_markup(value.text, self.ctx, self.depth + 1, _INNER, hidden,
                                  self._raw(self._receiver_start(i)))

    def _created_element(self, start: int, opener: int) -> None:
        """`f = document.createElement('iframe')`, given a source and hidden: a hidden frame."""
        texts, kinds = self.texts, self.kinds
        closer = self.tokens.close_of.get(opener)
        if closer is None or closer != opener + 2 or kinds[opener + 1] != _STR:
            return
        if _string_literal(texts[opener + 1])[0].strip().lower() not in ("iframe", "frame"):
            return
        equals = start - 1
        if equals < 1 or texts[equals] != "=" or kinds[equals - 1] != _NAME:
            return
        attrs = self._element_attrs(texts[equals - 1])
        if "src" not in attrs:
            return
        value, ctx = attrs["src"]
        target = self.page.target_of(value)
        if "hidden" in attrs or _scheme_of(target) in ("data", "javascript"):
            raw = f"{texts[equals - 1]}.src = {value.text}"
            self.page.add(Technique.HIDDEN_IFRAME, target, raw, ctx, self.obfuscated or value.obfuscated,
                          self.depth)

    def _element_attrs(self, element: str) -> dict[str, tuple[_Val, _Ctx]]:
        """What the script sets on an element it holds in a variable: href, action, src, and hiding."""
        known = self.element_attrs.get(element)
        if known is not None:
            return known
        attrs: dict[str, tuple[_Val, _Ctx]] = {}
        self.element_attrs[element] = attrs
        texts, n = self.texts, self.n
        for k in self.name_sites(element):
            if k + 3 >= n or texts[k + 1] not in (".", "?.") or (k and texts[k - 1] in (".", "?.")):
                continue
            member = texts[k + 2]
            if member == "setAttribute" and texts[k + 3] == "(":
                args = self._args(k + 3)
                if len(args) == 2:
                    attribute = self._value(*args[0]).text.lower()
                    self._set_element_attr(attrs, attribute, self._value(*args[1]), k)
            elif texts[k + 3] == "=":
                self._set_element_attr(attrs, member.lower(), self._rhs(k + 4), k)
            elif member == "style" and k + 5 < n and texts[k + 3] in (".", "?.") and texts[k + 5] == "=":
                value = self._rhs(k + 6)
                style = value.text if texts[k + 4] == "cssText" else f"{texts[k + 4]}:{value.text}"
                self._set_element_attr(attrs, "style", _Val(style, value.obfuscated), k)
        return attrs

    def _set_element_attr(self, attrs: dict[str, tuple[_Val, _Ctx]], attribute: str, value: _Val,
                          k: int) -> None:
        """Record one attribute set on an element; width, height and style only for whether they hide it."""
        if attribute in ("href", "action", "src"):
            attrs[attribute] = (value, self.ctx_at(k))
        elif attribute in ("width", "height", "style", "hidden") and (
                attribute == "hidden" or _is_hidden({attribute: value.text})):
            attrs["hidden"] = (value, self.ctx_at(k))

    def _receiver_start(self, i: int) -> int:
        """The first token of the object a method at i (after its ".") is called on."""
        texts, kinds, open_of = self.texts, self.kinds, self.tokens.open_of
        j = i - 2
        while j >= 0:
            if texts[j] in (")", "]"):
                opener = open_of.get(j)
                if opener is None:
                    break
                j = opener - 1
                continue
            if kinds[j] == _NAME:
                if j > 0 and texts[j - 1] in (".", "?."):
                    j -= 2
                    continue
                return j
            break
        return max(j + 1, 0)

    def _receiver(self, i: int) -> tuple[str, str] | None:
        """Which element a method at i is called on: ("index"|"id"|"name"|"new"|"var", key)."""
        start = self._receiver_start(i)
        ref = self._element_ref(start, i - 1)
        if ref is not None:
            return ref
        if start == i - 2 and self.kinds[start] == _NAME:
            return "var", self.texts[start]
        return None

    def _element_ref(self, start: int, end: int) -> tuple[str, str] | None:
        """The element a document.forms[..], getElementById(), querySelector() or $() names, or creates."""
        texts, kinds = self.texts, self.kinds
        j = start
        if j + 1 < end and texts[j] in _WINDOWS and texts[j + 1] == ".":
            j += 2
        if j >= end:
            return None
        if texts[j] in ("$", "jQuery") and j + 1 < end and texts[j + 1] == "(":
            closer = self.tokens.close_of.get(j + 1)
            if closer is None or closer + 1 != end:
                return None
            return _selector_ref(self._value(j + 2, closer).text)
        if texts[j] != "document" or j + 2 >= end or texts[j + 1] != ".":
            return None
        member = texts[j + 2]
        after = j + 3
        if member == "forms" and after < end and texts[after] == "[":
            closer = self.tokens.close_of.get(after)
            if closer is None:
                return None
            key = self._value(after + 1, closer)
            if _PH in key.text:
                return None
            return ("index" if kinds[after + 1] == _NUM else "name"), key.text
        if after < end and texts[after] == "(":
            closer = self.tokens.close_of.get(after)
            if closer is None:
                return None
            argument = self._value(after + 1, closer).text
            if _PH in argument:
                return None
            indexed = closer + 1 < end and texts[closer + 1] == "["
            if member == "getElementById" and closer + 1 == end:
                return "id", argument
            if member == "querySelector" and closer + 1 == end:
                return _selector_ref(argument)
            if member == "createElement" and closer + 1 == end:
                return "new", argument.strip().lower()
            if member in ("getElementsByTagName", "querySelectorAll", "getElementsByName") and indexed:
                index = self._value(closer + 2, self.tokens.close_of.get(closer + 1, end)).text
                if member == "getElementsByName":
                    return "name", argument
                return "index", index
            return None
        if after == end and kinds[j + 2] == _NAME and member not in ("body", "documentElement", "head"):
            return "name", member
        return None

    # -- variables ------------------------------------------------------------

    def name_sites(self, name: str) -> list[int]:
        """The indexes of the tokens that are this name, in order."""
        known = self.sites.get(name)
        if known is not None:
            return known
        starts, texts, kinds = self.tokens.starts, self.texts, self.kinds
        sites = []
        for match in re.finditer(rf"(?<![\w$\\]){re.escape(name)}(?![\w$\\])", self.code):
            k = bisect_left(starts, match.start())
            if k < self.n and starts[k] == match.start() and kinds[k] == _NAME and texts[k] == name:
                sites.append(k)
        self.sites[name] = sites
        return sites

    def reaching_assignments(self, name: str, low: int, high: int, scope: _Ctx, at: int) -> list[int]:
        """The `name = ...` with low <= index < high, directly in scope, that may set the value used at `at`.

        That is the last one sure to have run (its block is still open at `at`) and the later
        ones inside blocks closed before `at` (an if, a loop): any of them may have won.
        """
        sites = self.name_sites(name)
        texts, close_of = self.texts, self.tokens.close_of
        reaching: list[int] = []
        for k in reversed(sites[bisect_left(sites, low):bisect_left(sites, high)]):
            if k + 1 >= self.n or texts[k + 1] != "=" or (k and texts[k - 1] in (".", "?.")) \
                    or self.ctx_at(k) is not scope:
                continue
            reaching.append(k)
            block = self._enclosing(k, False)
            if block < 0 or close_of.get(block, self.n) >= at or len(reaching) >= 4:
                break
        return reaching

    def _assignment_sites(self, name: str, at: int) -> list[tuple[_Script, int]]:
        """Where the variable used at token `at` may have got its value, in the nearest scope that sets it."""
        scope: _Ctx | None = self.ctx_at(at) if at < self.n else self.root
        while scope is not None:
            sites: list[int] = []
            if scope.script is self and scope.span is not None:
                sites = self.reaching_assignments(name, scope.span[0], min(scope.span[1] + 1, at), scope, at)
            elif scope is self.root:
                sites = self.reaching_assignments(name, 0, at, scope, at)
            if sites:
                return [(self, k) for k in sites]
            other = scope.script
            if other is not None and other is not self and scope.span is not None:
                end = scope.span[1] + 1
                sites = other.reaching_assignments(name, scope.span[0], end, scope, end)
                if sites:
                    return [(other, k) for k in sites]
            if name in scope.params:
                return []
            if scope is self.page.root:
                return self.page.global_sites(name, self)
            scope = scope.parent
        return []

    def _assignment_site(self, name: str, at: int) -> tuple[_Script, int] | None:
        """The last assignment that may have set the variable used at token `at`."""
        sites = self._assignment_sites(name, at)
        return sites[0] if sites else None

    def _lookup(self, name: str, at: int) -> _Val | None:
        """A variable's value at token `at`, as far as literals tell; unknown when branches disagree."""
        page = self.page
        if page.lookups > 2000 or page.lookup_depth > 12:
            return None  # bounds the work, and the recursion of values defined from other values
        page.lookups += 1
        values = []
        for script, k in self._assignment_sites(name, at):
            if k in script.evaluating:
                return None
            script.evaluating.add(k)
            page.lookup_depth += 1
            try:
                values.append(script._rhs(k + 2))
            finally:
                page.lookup_depth -= 1
                script.evaluating.discard(k)
        if not values:
            return None
        if any(value != values[0] for value in values[1:]):
            return _unknown(*values)
        return values[0]

    def _expression_end(self, i: int) -> int:
        """Where the expression from i stops (for element references)."""
        _, stop = self._expr(i, _MAX_EVAL_DEPTH - 4)
        return stop

    def _rhs(self, i: int) -> _Val:
        """The value of the expression from i to wherever it ends."""
        value, stop = self._expr(i, 0)
        if stop < self.n and self.texts[stop] in _CONTINUES and self.kinds[stop] == _PUNCT:
            return _unknown(value)
        return value

    def _value(self, start: int, stop: int, depth: int = 0) -> _Val:
        """The value of exactly the tokens start..stop, unknown unless all of them are understood."""
        if start >= stop:
            return _UNKNOWN
        value, end = self._expr(start, depth)
        return value if end == stop else _unknown(value)

    def _expr(self, i: int, depth: int) -> tuple[_Val, int]:
        """A concatenation of operands from i; where it stopped."""
        value, i = self._operand(i, depth)
        texts, n = self.texts, self.n
        while i < n and texts[i] == "+" and self.kinds[i] == _PUNCT:
            right, i = self._operand(i + 1, depth)
            value = _concat(value, right)
        return value, i

    def _operand(self, i: int, depth: int) -> tuple[_Val, int]:
        """One operand and what follows it (.method(), [index])."""
        if i >= self.n:
            return _UNKNOWN, self.n
        if depth > _MAX_EVAL_DEPTH:
            return _UNKNOWN, i + 1
        kind, text = self.kinds[i], self.texts[i]
        close_of = self.tokens.close_of
        value: _Val
        if kind == _STR:
            value = _Val(*_string_literal(text))
            i += 1
        elif kind == _TPL:
            value = _Val(*_template_chunk(text))
            i += 1
        elif kind == _TPL_HEAD:
            value, i = self._template(i, depth)
        elif kind == _NUM:
            value = _Val(_js_number(text))
            i += 1
        elif kind == _NAME:
            value, i = self._name_value(i, depth)
        elif text == "(" and kind == _PUNCT:
            closer = close_of.get(i)
            inner, end = self._expr(i + 1, depth + 1)
            if closer is None:
                return _unknown(inner), self.n
            value = inner if end == closer else _unknown(inner)
            i = closer + 1
        elif text == "[" and kind == _PUNCT:
            closer = close_of.get(i)
            if closer is None:
                return _UNKNOWN, self.n
            items = [self._value(a, b, depth + 1) for a, b in self._args(i)]
            if any(_PH in item.text for item in items):
                value = _unknown(*items)
            else:
                value = _Val(_PH, any(item.obfuscated for item in items), tuple(item.text for item in items))
            i = closer + 1
        else:
            return _UNKNOWN, i + 1
        return self._postfix(value, i, depth)

    def _template(self, i: int, depth: int) -> tuple[_Val, int]:
        """A template literal with substitutions."""
        kinds = self.kinds
        value = _Val(*_template_chunk(self.texts[i]))
        j = i + 1
        while True:
            inner, j = self._expr(j, depth + 1)
            value = _concat(value, inner)
            if j < self.n and kinds[j] in (_TPL_MID, _TPL_TAIL):
                value = _concat(value, _Val(*_template_chunk(self.texts[j])))
                if kinds[j] == _TPL_TAIL:
                    return value, j + 1
                j += 1
                continue
            end = i
            while end in self.tokens.close_of:
                end = self.tokens.close_of[end]
            return _unknown(value), (end + 1 if end != i else self.n)

    def _name_value(self, i: int, depth: int) -> tuple[_Val, int]:
        """The value of a name: a decoder call, the page's own location, or a variable."""
        texts, kinds, n = self.texts, self.kinds, self.n
        name = texts[i]
        if name == "new" and i + 2 < n and texts[i + 1] == "URL" and texts[i + 2] == "(":
            closer = self.tokens.close_of.get(i + 2)
            if closer is None:
                return _UNKNOWN, n
            args = [self._value(a, b, depth + 1) for a, b in self._args(i + 2)]
            return self._new_url(args), closer + 1
        while name in _WINDOWS and i + 2 < n and texts[i + 1] == "." and kinds[i + 2] == _NAME \
                and name not in ("top", "parent", "opener"):
            i += 2
            name = texts[i]
        following = texts[i + 1] if i + 1 < n else ""
        if following == "(" and name in _DECODERS:
            return self._decoder(name, i + 1, depth)
        if name == "String" and following == "." and i + 3 < n and texts[i + 2] == "fromCharCode" \
                and texts[i + 3] == "(":
            return self._decoder("fromCharCode", i + 3, depth)
        if name == "document" and following == "." and i + 2 < n:
            member = texts[i + 2]
            if member in ("URL", "documentURI"):
                return _Val(self.page.doc_url), i + 3
            if member == "domain":
                return _Val(self.page.self_parts.get("hostname", _PH)), i + 3
            if member == "location":
                i += 2
                name = "location"
                following = texts[i + 1] if i + 1 < n else ""
        if name == "location":
            if following == "." and i + 2 < n and texts[i + 2] in _SELF_PROPS:
                return _Val(self.page.self_parts.get(texts[i + 2], _PH)), i + 3
            if following == "." and i + 2 < n and texts[i + 2] == "hash":
                return _Val(_FRAGMENT), i + 3
            if following == "." and i + 2 < n and texts[i + 2] in ("reload", "assign", "replace"):
                return _UNKNOWN, i + 3
            return _Val(self.page.doc_url, location=True), i + 1
        if name in _KEYWORDS or name in _WINDOWS:
            return _UNKNOWN, i + 1
        known = self._lookup(name, i)
        return (known if known is not None else _UNKNOWN), i + 1

    def _new_url(self, args: list[_Val]) -> _Val:
        """new URL(url, base): url resolved against base (or the page's base when relative)."""
        if not args or any(_PH in a.text for a in args[:2]):
            return _unknown(*args)
        base: str | None = self.page.base
        if len(args) > 1:
            base = _resolve(args[1].text.split(_FRAGMENT, 1)[0], self.page.base)
        url = _resolve(args[0].text.split(_FRAGMENT, 1)[0], base) if base is not None else None
        return _Val(url, any(a.obfuscated for a in args), url=True) if url is not None else _unknown(*args)

    def _decoder(self, name: str, opener: int, depth: int) -> tuple[_Val, int]:
        """atob(..), unescape(..), String.fromCharCode(..) and the like, applied to known arguments."""
        closer = self.tokens.close_of.get(opener)
        if closer is None:
            return _Val(_PH, name in ("atob", "fromCharCode")), self.n
        args = [self._value(a, b, depth + 1) for a, b in self._args(opener)]
        return _decode_call(name, args), closer + 1

    def _postfix(self, value: _Val, i: int, depth: int) -> tuple[_Val, int]:
        """Method calls, property reads and indexing applied to value."""
        texts, kinds, n = self.texts, self.kinds, self.n
        close_of = self.tokens.close_of
        while i < n:
            text = texts[i]
            if (text == "." or text == "?.") and i + 1 < n and kinds[i + 1] == _NAME:
                member = texts[i + 1]
                if i + 2 < n and texts[i + 2] == "(":
                    closer = close_of.get(i + 2)
                    if closer is None:
                        return _unknown(value), n
                    args = [self._value(a, b, depth + 1) for a, b in self._args(i + 2)]
                    value = _method(value, member, args)
                    i = closer + 1
                else:
                    if member == "length" and _PH not in value.text and _FRAGMENT not in value.text:
                        value = _Val(str(len(value.items if value.items is not None else value.text)),
                                     value.obfuscated)
                    elif value.url and member in _URL_PARTS:
                        value = _Val(_url_part(value.text, member), value.obfuscated)
                    else:
                        value = _unknown(value)
                    i += 2
            elif text == "[" and kinds[i] == _PUNCT:
                closer = close_of.get(i)
                if closer is None:
                    return _unknown(value), n
                index = self._value(i + 1, closer, depth + 1)
                sequence = value.items if value.items is not None else value.text
                if _NUMBER.fullmatch(index.text) and (
                        value.items is not None or (_PH not in value.text and _FRAGMENT not in value.text)):
                    try:
                        value = _Val(sequence[int(float(index.text))], value.obfuscated or index.obfuscated)
                    except (ValueError, IndexError):
                        value = _unknown(value, index)
                else:
                    value = _unknown(value, index)
                i = closer + 1
            else:
                break
        return value, i


_URL_PARTS = frozenset({"href", "origin", "protocol", "host", "hostname", "port", "pathname", "search"})


def _url_part(url: str, part: str) -> str:
    """One property of a URL object, as the URL API gives it."""
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError:
        return _PH
    host = split.netloc.rpartition("@")[2]
    return {
        "href": url, "origin": f"{split.scheme}://{host}", "protocol": f"{split.scheme}:", "host": host,
        "hostname": split.hostname or "", "port": str(port or ""), "pathname": split.path or "/",
        "search": f"?{split.query}" if split.query else "",
    }[part]


def _selector_ref(selector: str) -> tuple[str, str] | None:
    """The element a simple CSS selector names: "#id", "form", "form[name=x]"."""
    selector = selector.strip()
    if _PH in selector:
        return None
    if selector.startswith("#") and selector[1:].replace("-", "").replace("_", "").isalnum():
        return "id", selector[1:]
    if selector.lower() == "form":
        return "index", "0"
    match = re.fullmatch(r"form\[name=['\"]?([\w-]+)['\"]?\]", selector, re.I)
    return ("name", match.group(1)) if match else None
