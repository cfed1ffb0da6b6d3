"""Rewriting links into signed click links: in e-mail messages, HTML and plain text.

Nothing is re-serialised. `rewrite_html` finds the ``href`` of every ``<a>`` and
``<area>`` start tag with a tokenizer that follows the HTML tokenizer's rules for
tags, comments and raw-text elements, and splices the new values in: every other
byte of the document stays as it was (a plain document, the common one, is read by
one regular expression per link instead, with the same result: `_plain_rewrite`).
`rewrite_message` walks the MIME tree of the raw bytes itself, reading each part's
headers with the standard library (`email.parser.BytesHeaderParser`, compat32), so that headers, boundaries,
preambles, line endings and every part it does not rewrite keep their exact
bytes; only the bodies of rewritten text/html and text/plain parts change,
re-encoded in their own transfer encoding and charset.

A message that cannot be walked safely (no closing boundary, bad base64, a part
that does not decode in its declared charset) is returned unchanged with the
reason in `RewriteResult.error`; nothing here raises on bad input.
Nothing here imports mitmproxy.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import ipaddress
import re
import time
from collections.abc import Iterator, MutableMapping
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from clickguard.errors import URLError
from clickguard.inspection.navigation.markup_scan import (
    HTML,
    RAW_TEXT,
    START,
    SVG,
    TAG_ATTRIBUTES,
    MarkupScanner,
    ascii_lower,
    decode_references,
    fast_scan_pattern,
    raw_text_end,
    script_text_end,
)
from clickguard.inspection.navigation.url_resolution import resolve
from clickguard.mail.links import ClickContext, click_context, is_click_link, make_click_link, unwrap
from clickguard.urls import normalize_host, normalize_url, parent_domains

__all__ = [
    "LinkEdit",
    "RewriteResult",
    "RewriteSettings",
    "html_link_edits",
    "rewrite_html",
    "rewrite_message",
    "rewrite_text",
    "wrap_url",
]


class RewriteSettings(NamedTuple):
    """How links are rewritten: where click links point, the signing key, what is left alone."""

    click_host: str
    key: bytes
    recipient_mode: Literal["none", "hashed", "plain"] = "hashed"
    # Allow-listed domains: a link to one of them or to any of their subdomains is left alone.
    skip_domains: frozenset[str] = frozenset()


class RewriteResult(NamedTuple):
    """The rewritten message, how many links were wrapped, and why it was left alone if it was."""

    data: bytes
    links: int
    changed: bool
    error: str | None


# ---------------------------------------------------------------------------
# One URL
# ---------------------------------------------------------------------------

_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_HAS_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_WEB_SCHEME = re.compile(r"https?:", re.IGNORECASE)
_WEB_URL = re.compile(r"https?://", re.IGNORECASE)  # what make_click_link takes as a target
# What browsers strip from both ends of an href before parsing it (C0 controls and space).
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")  # surrogates surrogateescape never makes


def wrap_url(url: str, context: ClickContext, settings: RewriteSettings) -> str:
    """The click link for url; url itself when ours, not a web link, allow-listed or unparseable.

    Raises ValueError only for a context a link cannot carry (an origin that is no IP).
    A URL holding lone surrogates (bytes of a page that are not UTF-8, as the proxy keeps
    them) is wrapped as the browser reads it, each undecodable byte a U+FFFD: left as it is,
    it would be a link the browser follows that is never checked at click time.
    """
    candidate = url.strip(_C0_OR_SPACE)
    if _SURROGATE.search(candidate):
        candidate = _as_browser_reads(candidate)
    if "\t" in candidate or "\n" in candidate or "\r" in candidate:
        candidate = _TAB_OR_NEWLINE.sub("", candidate)
    # Anchors, relative URLs and every scheme but http(s) (mailto:, cid:, tel:, data:,
    # javascript:) are not destinations clickguard can judge at click time.
    if not _WEB_SCHEME.match(candidate):
        return url
    target, wrap = _link_target(candidate, settings.click_host, settings.skip_domains)
    if target is None:
        return url
    if not wrap:
        return target
    return make_click_link(target, context, settings.key, click_host=settings.click_host)


def _as_browser_reads(url: str) -> str:
    """url with its lone surrogates read as a browser reads the bytes they stand for in UTF-8.

    mitmproxy keeps each byte of a page that is not UTF-8 as a surrogate (surrogateescape) and
    serves a rewritten page as UTF-8, where the browser reads those bytes as U+FFFD; any other
    lone surrogate (not a byte) is U+FFFD too.
    """
    return _NOT_A_BYTE.sub("\ufffd", url).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@functools.lru_cache(maxsize=4096)
def _link_target(url: str, click_host: str, skip_domains: frozenset[str]) -> tuple[str | None, bool]:
    """(target, wrap it) for an http(s) URL: (None, False) leaves it alone, (ours, False) unwraps ours.

    Independent of the message, so cached: a campaign repeats its links in every copy.
    """
    if is_click_link(url, click_host):
        return None, False
    try:
        unwrapped = unwrap(url)
    except URLError:
        return None, False  # a vendor's wrapper that does not parse: not a link to vouch for
    # Mimecast keeps its target opaque (only a host hint): the wrapped link itself is
    # what the browser must be sent to, so it is the target of the click link.
    target = unwrapped.target if unwrapped.target is not None else url
    if unwrapped.layers and is_click_link(target, click_host):
        return target, False  # ours under a foreign wrapper: peel the wrapper, never wrap twice
    if not _WEB_SCHEME.match(target):
        return None, False
    try:
        landing = normalize_url(target)
    except URLError:
        return None, False
    if not _WEB_URL.match(target):
        # "http:host/", "https:/host": from a page of the other scheme these name a host as
        # "http://host/" does; the click link goes there.
        target = landing.url
    if _is_skipped(landing.host, skip_domains):
        return None, False
    return target, True


def _is_skipped(host: str, skip_domains: frozenset[str]) -> bool:
    """Whether host is, or is under, an allow-listed domain (IP literals match exactly)."""
    if not skip_domains:
        return False
    skip = _normalized_domains(skip_domains)
    return host in skip or any(parent in skip for parent in parent_domains(host))


@functools.lru_cache(maxsize=64)
def _normalized_domains(domains: frozenset[str]) -> frozenset[str]:
    """Allow-list entries in the form urls.normalize_url gives hosts (entries that do not parse dropped)."""
    normalized = set()
    for domain in domains:
        try:
            normalized.add(normalize_host(domain.strip().lstrip("*.")))
        except ValueError:
            continue
    return frozenset(normalized)


class _Wrapper:
    """wrap_url for one message or document, remembering links already seen (mail repeats them)."""

    __slots__ = ("context", "count", "seen", "settings")

    def __init__(self, context: ClickContext, settings: RewriteSettings,
                 seen: MutableMapping[str, str] | None = None) -> None:
        self.context = context
        self.settings = settings
        self.seen: MutableMapping[str, str] = {} if seen is None else seen
        self.count = 0

    def __call__(self, url: str) -> str:
        wrapped = self.seen.get(url)
        if wrapped is None:
            wrapped = self.seen[url] = wrap_url(url, self.context, self.settings)
        if wrapped != url:
            self.count += 1
        return wrapped


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

# The HTML tokenizer's view of a start tag's attributes (WHATWG 13.2.5.32 onwards):
# separators are ASCII whitespace and "/", a name runs to whitespace, "/", ">" or "="
# (an "=" may start one), a value is double-quoted, single-quoted or runs to
# whitespace or ">". The tags themselves are found by the inspection's `MarkupScanner`,
# which reads the document as a browser's parser does (raw text, script states,
# foreign content, templates, <noscript> both with and without scripting).
_WS = r"[\t\n\f\r ]"
_LINK_TAGS = frozenset({"a", "area", "base"})
# Where relative links are resolved when there is no <base>: those that stay here are the
# document's own (a webmail's pages); "//host/" leaves it.
_NO_BASE_HOST = "document.invalid"
_NO_BASE = f"https://{_NO_BASE_HOST}/"
_NO_BASE_HTTP = f"http://{_NO_BASE_HOST}/"
_OTHER_HOST = re.compile(r"[\x00-\x20]*[/\\][\t\n\r]*[/\\]")  # "//host", "\\host", "/\\host"
_ATTRIBUTE_PARTS = re.compile(
    rf"""{_WS}++|/|(?P<name>[^\t\n\f\r />][^\t\n\f\r />=]*+)
    (?:{_WS}*+={_WS}*+(?:"(?P<dq>[^"]*+)"|'(?P<sq>[^']*+)'|(?P<uq>[^\t\n\f\r >]*+)))?""",
    re.VERBOSE,
)
_FIRST_HREF = re.compile(
    rf"""{_WS}++href{_WS}*+={_WS}*+(?:"([^"]*+)"|'([^']*+)'|([^\t\n\f\r >]*+))""", re.IGNORECASE | re.ASCII)


def rewrite_html(html_text: str, context: ClickContext, settings: RewriteSettings,
                 memo: MutableMapping[str, str] | None = None, *, fast: bool = True) -> tuple[str, int]:
    """Wrap the href of every <a> and <area>; every other character stays as it was.

    ``memo`` (URL -> its click link, for this context and settings only) carries the work
    from one document to the next: a webmail page is loaded again and again. ``fast=False``
    reads every document with the full tokenizer: the reference the fast path is tested against.
    """
    wrapper = _Wrapper(context, settings, memo)
    return _rewrite_html(html_text, wrapper, fast), wrapper.count


def html_link_edits(html_text: str, context: ClickContext, settings: RewriteSettings) -> list[LinkEdit]:
    """What `rewrite_html` changes in html_text: each link URL's span and the text put there, in order."""
    return _link_edits(html_text, _Wrapper(context, settings))


class LinkEdit(NamedTuple):
    """One link URL rewritten: text[start:stop] (the attribute value as written) becomes value."""

    start: int
    stop: int
    value: str


def _rewrite_html(text: str, wrapper: _Wrapper, fast: bool = True) -> str:
    """The document with hrefs replaced by wrapper's answers, spliced into the original text."""
    if fast and "<" in text:
        rewritten = _plain_rewrite(text, wrapper)
        if rewritten is not None:
            return rewritten
    edits = _link_edits(text, wrapper)
    if not edits:
        return text
    pieces: list[str] = []
    done = 0
    for edit in edits:
        pieces.append(text[done:edit.start])
        pieces.append(edit.value)
        done = edit.stop
    pieces.append(text[done:])
    return "".join(pieces)


def _link_edits(text: str, wrapper: _Wrapper) -> list[LinkEdit]:
    """The spans of the link URLs wrapper wraps, and their new text (escaped, quoted when it was not)."""
    if "<" not in text:
        return []
    links, base = _scanned_links(text)
    # The views of <noscript> (with and without scripting) may see the same link twice.
    return _edits(text, sorted(set(links)), base, wrapper)


def _scanned_links(text: str) -> tuple[list[tuple[int, int, str]], str | None]:
    """(start, stop, quote) of each link's URL as the full tokenizer finds them, and the <base>."""
    links: list[tuple[int, int, str]] = []
    base: str | None = None
    for tag in MarkupScanner(text, _LINK_TAGS, foreign_links=True):
        if tag.kind != START or not tag.complete:
            continue  # a last tag cut by the end of the document is dropped by a browser
        if tag.ns == HTML:
            if tag.name == "base":
                if base is None and not tag.inert:
                    base = _base_href(text, tag.attrs_start, tag.attrs_end)
                continue
            names: tuple[str, ...] = ("href",)
        elif tag.ns == SVG:
            if tag.name != "a":
                continue
            names = ("href", "xlink:href")  # SVG 2: href wins over xlink:href
        else:
            names = ("href", "xlink:href")  # MathML links (Firefox): any element
        span = _href_value_span(text, tag.attrs_start, tag.attrs_end, names)
        if span is not None:
            links.append(span)
    return links, base


# The fast path: a document whose tags are all read alike in every state of tree
# construction it can reach — no <svg>, <math>, <template>, <select>, <noscript> or <base>
# start tag, no </template> — is read by the scanner's own skipping regex (the
# MarkupScanner at the same point) followed by the one token it stops at, in a single
# match: an <a> or <area> with the value of its href when that is the first attribute
# (what _FIRST_HREF reads), or a raw-text element or script, whose text is then skipped
# as the scanner skips it. Anything else hands the whole document to the full tokenizer.
_PLAIN_STEP = re.compile(
    fast_scan_pattern(_LINK_TAGS, False, True).pattern
    + rf"""
    (?:<(?:a|area)(?=[\t\n\f\r\ />])
       (?:(?={_WS}++href{_WS}*+={_WS}*+(?:"(?P<dq>[^"]*+)"|'(?P<sq>[^']*+)'|(?P<uq>[^\t\n\f\r\ >]*+)))|)
       (?P<attrs>{TAG_ATTRIBUTES})/?(?P<link_end>>)?
     |<(?P<name>[A-Za-z][^\t\n\f\r\ />]*+){TAG_ATTRIBUTES}/?(?P<tag_end>>)?
    )?""",
    re.I | re.A | re.S | re.X,
)
# Its groups by number (quicker to read): a match that ends with an <a>/<area> closes link_end
# last; one that ends with another start tag tag_end, or name when the end of the text cuts it.
_DQ, _SQ, _UQ, _ATTRS, _LINK_END, _NAME, _TAG_END = (
    _PLAIN_STEP.groupindex[name] for name in ("dq", "sq", "uq", "attrs", "link_end", "name", "tag_end"))
_WEB_PREFIXES = ("https:", "http:")  # values that start so have a scheme (_HAS_SCHEME)


def _plain_rewrite(text: str, wrapper: _Wrapper) -> str | None:
    """The rewritten document, or None when it is not plain (the full tokenizer reads it then).

    The links are those `_scanned_links` finds in a plain document (which has no <base>),
    edited as `_edits` edits them; a link already in wrapper's memo costs no call.
    """
    pieces: list[str] = []
    seen, count, before = wrapper.seen, 0, wrapper.count
    done = 0
    matches: Iterator[re.Match[str]] | None = _PLAIN_STEP.finditer(text)
    while matches is not None:
        steps, matches = matches, None
        for match in steps:
            if match.lastindex != _LINK_END:
                pos = _plain_other(text, match)
                if pos is None:
                    wrapper.count = before  # the tokenizer's path counts the links wrapped so far again
                    return None
                if pos < len(text):
                    matches = _PLAIN_STEP.finditer(text, pos)  # on after the raw text
                break
            start = match.start(_DQ)
            if start >= 0:
                stop, quote = match.end(_DQ), '"'
            else:
                span = _plain_href(text, match)
                if span is None:
                    continue
                start, stop, quote = span
            value = text[start:stop]
            # A value with a scheme and no reference is its URL (as _wrapped reads it, without a base).
            wrapped = seen.get(value) if value.startswith(_WEB_PREFIXES) and "&" not in value else None
            if wrapped is None:
                wrapped = _wrapped(value, None, wrapper)
                if wrapped is None:
                    continue
            elif wrapped == value:
                continue
            else:
                count += 1
            if quote == '"':
                pieces += (text[done:start], wrapped.replace("&", "&amp;").replace('"', "&quot;"))
            else:
                pieces += (text[done:start], _escaped(wrapped, quote))
            done = stop
    wrapper.count += count
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _plain_href(text: str, match: re.Match[str]) -> tuple[int, int, str] | None:
    """(start, stop, quote) of the href of the <a> or <area> _PLAIN_STEP matched, or None."""
    for group, quote in ((_SQ, "'"), (_UQ, "")):
        start = match.start(group)
        if start >= 0:
            return start, match.end(group), quote
    return _href_value_span(text, match.start(_ATTRS), match.end(_ATTRS), ("href",))


def _plain_other(text: str, match: re.Match[str]) -> int | None:
    """Where a plain reading goes on after a match that ends with no link; None: the text is not plain."""
    if match.lastindex is None:
        return len(text) if match.end() >= len(text) else None  # the end, or a </template>
    if match.lastindex != _TAG_END:
        return len(text)  # a tag cut by the end of the text: dropped by a browser
    name = match.group(_NAME).lower()
    if name in RAW_TEXT:
        return raw_text_end(text, name, match.end())[1]
    if name == "script":
        return script_text_end(text, match.end())[1]
    if name == "plaintext":
        return len(text)  # the rest of the document is text
    return None  # structure (foreign content, templates, <noscript>, <select>) or a <base>


def _escaped(wrapped: str, quote: str) -> str:
    """A new link URL as attribute text in its quote (quoted when it was not)."""
    escaped = wrapped.replace("&", "&amp;")
    escaped = escaped.replace("'", "&#39;") if quote == "'" else escaped.replace('"', "&quot;")
    if quote == "=":  # an attribute without a value gets one
        return f'="{escaped}"'
    if not quote:  # an unquoted value becomes double-quoted: the new one may need it
        return f'"{escaped}"'
    return escaped


def _edits(text: str, links: list[tuple[int, int, str]], base: str | None,
           wrapper: _Wrapper) -> list[LinkEdit]:
    """The edits for the link URLs at links (in order), skipping those that overlap one before."""
    edits: list[LinkEdit] = []
    done = 0
    for start, stop, quote in links:
        if start < done:
            continue
        wrapped = _wrapped(text[start:stop], base, wrapper)
        if wrapped is None:
            continue
        edits.append(LinkEdit(start, stop, _escaped(wrapped, quote)))
        done = stop
    return edits


def _wrapped(value: str, base: str | None, wrapper: _Wrapper) -> str | None:
    """The click link for a link's attribute value as written, or None when it stays as it is."""
    url = _unescape_attribute(value) if "&" in value else value
    scheme = _HAS_SCHEME.match(_TAB_OR_NEWLINE.sub("", url.strip(_C0_OR_SPACE)))
    # "http:path" (no "//") is relative to a base of the same scheme: it goes to the base's host.
    if scheme and not (base is not None and _same_scheme_relative(scheme, base)):
        wrapped = wrapper(url)
        return None if wrapped == url else wrapped
    # A relative URL goes where the <base> says, and "//host/" to another host whatever
    # the document's own URL is; relative to the document itself, it is not ours to judge.
    if base is None and not _OTHER_HOST.match(url):
        return None
    resolved = _resolved(url, base or _NO_BASE)
    if resolved is None:
        return None
    wrapped = wrapper(resolved)
    return None if wrapped == resolved else wrapped


def _same_scheme_relative(scheme: re.Match[str], base: str) -> bool:
    """Whether a URL starting with scheme is relative to base: the same scheme, no "//" after it."""
    if scheme.group().lower() != base[:len(scheme.group())].lower():
        return False
    rest = scheme.string[scheme.end():scheme.end() + 2]
    return len(rest) < 2 or any(c not in "/\\" for c in rest)


@functools.lru_cache(maxsize=4096)
def _resolved(url: str, base: str) -> str | None:
    """url resolved against base, when it is a web URL that leaves the document's own host."""
    resolved = resolve(url, base)
    if resolved is None or not _WEB_URL.match(resolved) or urlsplit(resolved).netloc == _NO_BASE_HOST:
        return None
    return resolved


def _base_href(text: str, start: int, end: int) -> str | None:
    """The http(s) URL on another host a <base href> makes the document's base, or None.

    The href is resolved against the document's URL as a browser does: "//host/",
    "https:host" and "/\\host" name another host as well as "http://host/" does; a base on
    the document's own host leaves its relative links there.
    """
    span = _href_value_span(text, start, end, ("href",))
    if span is None:
        return None
    value = text[span[0]:span[1]]
    url = _unescape_attribute(value) if "&" in value else value
    # "https:host" names a host only from a document of another scheme: either may be ours.
    return _resolved(url, _NO_BASE) or _resolved(url, _NO_BASE_HTTP)


def _href_value_span(text: str, start: int, end: int, names: tuple[str, ...]) -> tuple[int, int, str] | None:
    """(start, end, quote) of the value of the first of names present in the attributes text[start:end].

    The quote is '"', "'", "" (unquoted) or "=" (no value: an empty span after the name).
    """
    # Most links: href is the first attribute.
    if names[0] == "href":
        first = _FIRST_HREF.match(text, start, end)
        if first is not None:
            n = first.lastindex or 0
            return first.start(n), first.end(n), ('"', "'", "")[n - 1]
    # The first of duplicate attributes wins in HTML; later ones are dropped by the parser.
    found: dict[str, tuple[int, int, str] | None] = {}
    for part in _ATTRIBUTE_PARTS.finditer(text, start, end):
        name = part.group("name")
        if name is None:
            continue
        name = ascii_lower(name)
        if name not in names or name in found:
            continue
        # Without a value ("<a href>") the URL is "": the document itself, or the <base>; a value
        # can be added right after the name (the quote "=" says so).
        found[name] = (part.end("name"), part.end("name"), "=")
        for group, quote in (("dq", '"'), ("sq", "'"), ("uq", "")):
            if part.start(group) >= 0:
                found[name] = (part.start(group), part.end(group), quote)
                break
        if name == names[0]:
            break
    for name in names:
        if name in found:
            return found[name]
    return None


def _unescape_attribute(value: str) -> str:
    """Decode character references as the HTML tokenizer does inside an attribute value."""
    return decode_references(value, attribute=True)


# ---------------------------------------------------------------------------
# Plain text
# ---------------------------------------------------------------------------

# Bare web URLs: "http(s)://" or "www." not inside an ASCII word, an address or (for
# "www.") another URL; CJK text and punctuation end a URL, since Japanese or Chinese
# prose runs on without spaces around it.
_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
_TEXT_URL = re.compile(
    rf"""(?:(?<![A-Za-z0-9_@.+-])https?://|(?<![A-Za-z0-9_@.:/+-])www\.)[^\s<>"{_CJK}]+""",
    re.IGNORECASE,
)
_TRAILING = frozenset(".,;:!?'\"")
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def rewrite_text(text: str, context: ClickContext, settings: RewriteSettings) -> tuple[str, int]:
    """Wrap the bare http(s):// and www. URLs of a plain-text body."""
    wrapper = _Wrapper(context, settings)
    return _rewrite_text(text, wrapper), wrapper.count


def _rewrite_text(text: str, wrapper: _Wrapper) -> str:
    """The text with each bare URL replaced by wrapper's answer."""
    if "http" not in text and "www" not in text and "HTTP" not in text and "WWW" not in text:
        return text
    return _TEXT_URL.sub(functools.partial(_wrap_text_url, wrapper=wrapper), text)


def _wrap_text_url(match: re.Match[str], wrapper: _Wrapper) -> str:
    """One URL found in text, its trailing punctuation kept outside the click link."""
    found = match.group()
    url = _trim_url(found)
    tail = found[len(url):]
    if url[:4].lower() == "www.":
        if len(url) <= 4:
            return found
        wrapped = wrapper("http://" + url)
        return found if wrapped == "http://" + url else wrapped + tail
    return wrapper(url) + tail


def _trim_url(url: str) -> str:
    """url without the sentence punctuation and unbalanced closing brackets that end it."""
    while url:
        last = url[-1]
        if last in _TRAILING or (last in _CLOSERS and url.count(last) > url.count(_CLOSERS[last])):
            url = url[:-1]
        else:
            break
    return url


# ---------------------------------------------------------------------------
# E-mail messages
# ---------------------------------------------------------------------------


class _MessageError(Exception):
    """A message or part that cannot be rewritten safely: the whole message is left alone."""


# email.feedparser's test for a header line (then "From " lines and continuations).
_HEADER_NAME = re.compile(r"[\041-\071\073-\176]*:")
_HEADERS_READ = frozenset(
    {"content-type", "content-transfer-encoding", "content-disposition", "to", "message-id"}
)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_TRANSFER_ENCODING_HEADER = re.compile(
    rb"^content-transfer-encoding[ \t]*:(?P<value>[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)",
    re.IGNORECASE | re.MULTILINE,
)
_BASE64_WHITESPACE = re.compile(rb"[ \t\r\n]+")
_QP_MAX_LINE = 76
# One line of a quoted-printable body: its physical lines ending in "=" (soft breaks), then one more.
_QP_LINE = re.compile(rb"(?:[^\n]*=\r?\n)*+[^\n]*\n?")
_MAX_DEPTH = 32  # nested multiparts beyond this are a bomb, not a mail
_MAX_LINE = 998  # RFC 5322 limit for 7bit and 8bit bodies, without the line break
# Multipart types whose parts must stay byte-exact: rewriting breaks the signature.
_SEALED = frozenset({"multipart/signed", "multipart/encrypted"})


class _Edit(NamedTuple):
    """Replace raw[start:end] by data."""

    start: int
    end: int
    data: bytes


def rewrite_message(
    raw: bytes, settings: RewriteSettings, *, origin_ip: str | None, recipient: str | None = None
) -> RewriteResult:
    """Wrap the links of a message's text/html and text/plain parts; unchanged, with error, if it can't."""
    if origin_ip is not None:
        try:
            ipaddress.ip_address(origin_ip)
        except ValueError:
            return RewriteResult(raw, 0, False, f"origin_ip is not an IP address: {origin_ip!r}")
    try:
        edits, links = _rewrite_message(raw, settings, origin_ip, recipient or None)
    except _MessageError as e:
        return RewriteResult(raw, 0, False, str(e))
    if not edits:
        return RewriteResult(raw, 0, False, None)
    pieces: list[bytes] = []
    done = 0
    for edit in sorted(edits, key=lambda edit: edit.start):
        pieces.append(raw[done:edit.start])
        pieces.append(edit.data)
        done = edit.end
    pieces.append(raw[done:])
    data = b"".join(pieces)
    return RewriteResult(data, links, data != raw, None)


def _rewrite_message(
    raw: bytes, settings: RewriteSettings, origin_ip: str | None, recipient: str | None
) -> tuple[list[_Edit], int]:
    """The byte edits that rewrite raw, and the number of links they wrap."""
    eol = b"\r\n" if raw.find(b"\r\n", 0, raw.find(b"\n") + 1) >= 0 else b"\n"
    header_end, body_start = _split_entity(raw, 0, len(raw))
    headers = _parse_headers(raw[:header_end])
    message_id = headers.get("Message-ID")
    if recipient is None:
        recipient = _first_address(headers.get_all("To", []))
    context = click_context(
        key=settings.key,
        origin_ip=origin_ip,
        message_id=_unfold(message_id) if message_id else None,
        recipient=recipient,
        recipient_mode=settings.recipient_mode,
        rewritten_at=time.time(),
    )
    walker = _Walker(raw, eol, _Wrapper(context, settings))
    try:
        walker.entity(0, len(raw), headers, header_end, body_start, "text/plain", 0)
    except URLError as e:  # a link no click link can carry (wrap_url reads lone surrogates first)
        raise _MessageError(f"a link cannot be rewritten: {e}") from e
    return walker.edits, walker.wrapper.count


class _Walker:
    """Walks the MIME tree of raw bytes and collects the edits that rewrite its text parts."""

    def __init__(self, raw: bytes, eol: bytes, wrapper: _Wrapper) -> None:
        self.raw = raw
        self.eol = eol
        self.wrapper = wrapper
        self.edits: list[_Edit] = []

    def entity(
        self,
        start: int,
        end: int,
        headers: Message,
        header_end: int,
        body_start: int,
        default_type: str,
        depth: int,
    ) -> None:
        """Rewrite one entity (the message or a body part) spanning raw[start:end]."""
        headers.set_default_type(default_type)
        content_type = headers.get_content_type()
        if content_type.startswith("multipart/"):
            if content_type in _SEALED:
                return
            if depth >= _MAX_DEPTH:
                raise _MessageError(f"multiparts nested deeper than {_MAX_DEPTH} levels")
            self.multipart(headers, body_start, end, content_type, depth)
            return
        if content_type not in ("text/html", "text/plain"):
            return
        if (headers.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
            return  # an attached file keeps its exact bytes
        self.text_part(start, end, headers, header_end, body_start, content_type)

    def multipart(self, headers: Message, body_start: int, end: int, content_type: str, depth: int) -> None:
        """Walk the body parts of a multipart entity whose body is raw[body_start:end]."""
        boundary = headers.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            raise _MessageError(f"{content_type} without a boundary")
        if "\ufffd" in boundary:
            # The header's bytes were not UTF-8 (_parse_headers): the raw boundary is unknown.
            raise _MessageError(f"{content_type} boundary is not UTF-8: {boundary!r}")
        # Headers are read as UTF-8: a raw 8-bit boundary (against the RFC) is its UTF-8 again.
        marker = b"--" + boundary.encode("utf-8")
        part_default = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
        raw = self.raw
        found = _find_delimiter(raw, marker, body_start, end)
        while found is not None:
            _, part_start, is_close = found
            if is_close:
                return  # what follows the close delimiter is the epilogue
            found = _find_delimiter(raw, marker, part_start, end)
            if found is None:
                break
            # The line break before a delimiter belongs to the delimiter, not to the part.
            part_end = found[0] - 1
            if part_end > part_start and raw[part_end - 1] == 0x0D:
                part_end -= 1
            part_end = max(part_end, part_start)
            header_end, part_body = _split_entity(raw, part_start, part_end)
            part_headers = _parse_headers(raw[part_start:header_end])
            self.entity(part_start, part_end, part_headers, header_end, part_body, part_default, depth + 1)
        raise _MessageError(f"{content_type} is truncated: closing boundary {boundary!r} not found")

    def text_part(
        self, start: int, end: int, headers: Message, header_end: int, body_start: int, content_type: str
    ) -> None:
        """Rewrite the links of one text/html or text/plain part, re-encoded as it came."""
        body = self.raw[body_start:end]
        if not body:
            return
        encoding = (headers.get("Content-Transfer-Encoding") or "7bit").strip().lower()
        data = _decode_body(body, encoding)
        if data is None:
            return  # an encoding clickguard does not know (uuencode…): left alone
        codec, text = _decode_text(data, headers.get_content_charset())
        before = self.wrapper.count
        if content_type == "text/html":
            rewritten = _rewrite_html(text, self.wrapper)
        else:
            rewritten = _rewrite_text(text, self.wrapper)
        if self.wrapper.count == before:
            return
        try:
            new_data = rewritten.encode(codec)
        except UnicodeError as e:  # click links are ASCII; a charset without ASCII
            raise _MessageError(f"rewritten {content_type} part does not encode in {codec}: {e}") from e
        new_encoding = encoding
        if encoding in ("7bit", "8bit") and not _fits_identity(new_data, seven_bit=encoding == "7bit"):
            new_encoding = "quoted-printable"
            self.edits.append(self.transfer_encoding_edit(start, header_end, "quoted-printable"))
        if encoding == "quoted-printable":
            new_body = _reencode_qp(body, data, new_data, self.eol)
        else:
            new_body = _encode_body(new_data, new_encoding, self.eol)
        # Keep the part's own ending: with or without a final line break before the delimiter.
        ends_with_break = body.endswith(b"\n")
        if ends_with_break and not new_body.endswith(b"\n"):
            new_body += self.eol
        elif not ends_with_break and new_body.endswith(self.eol):
            new_body = new_body[: -len(self.eol)]
        self.edits.append(_Edit(body_start, end, new_body))

    def transfer_encoding_edit(self, start: int, header_end: int, encoding: str) -> _Edit:
        """The edit that sets a part's Content-Transfer-Encoding (replacing or adding the header)."""
        found = _TRANSFER_ENCODING_HEADER.search(self.raw, start, header_end)
        if found is not None:
            return _Edit(found.start("value"), found.end("value"), b" " + encoding.encode())
        line = b"Content-Transfer-Encoding: " + encoding.encode()
        if header_end == start:  # no headers at all: the part began with its blank line
            return _Edit(start, start, line + self.eol)
        return _Edit(header_end, header_end, line + self.eol)  # the block ends with its line break


def _split_entity(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """(end of the header block, start of the body) of the entity raw[start:end]."""
    if raw.startswith(b"\n", start) or raw.startswith(b"\r\n", start):
        # No headers: the entity starts with the blank line that ends them.
        return start, start + (1 if raw[start] == 0x0A else 2)
    found = _HEADER_END.search(raw, start, end)
    if found is None:
        return end, end
    # The header block keeps its last line's break; the blank line is the separator.
    line_break = 2 if raw[found.start():found.start() + 2] == b"\r\n" else 1
    return found.start() + line_break, found.end()


def _find_delimiter(raw: bytes, marker: bytes, start: int, end: int) -> tuple[int, int, bool] | None:
    """(line start, position after the line, is the close delimiter) of the next boundary line."""
    position = start
    while True:
        found = raw.find(marker, position, end)
        if found < 0:
            return None
        position = found + 1
        if found != start and raw[found - 1] != 0x0A:
            continue  # a delimiter starts a line
        after = found + len(marker)
        is_close = raw.startswith(b"--", after, end)
        if is_close:
            after += 2
        while after < end and raw[after] in b" \t":  # transport padding
            after += 1
        if after == end:
            return found, end, is_close
        if raw[after] == 0x0A:
            return found, after + 1, is_close
        if raw.startswith(b"\r\n", after, end):
            return found, after + 2, is_close


def _parse_headers(block: bytes) -> Message:
    """The headers of one entity that rewriting reads, parsed by the standard library's compat32 rules.

    Only the header block is split here (as email.feedparser does); each field is then read
    by compat32, so parameters (RFC 2231, quoting) are the standard library's reading.
    """
    headers = Message()
    fields: list[list[str]] = []
    # Raw 8-bit bytes (against the RFC, yet seen) are read as UTF-8: compat32 would keep
    # them escaped and hand back Header objects instead of strings.
    for line_bytes in block.splitlines(keepends=True):  # CRLF, CR or LF only, as feedparser
        line = line_bytes.decode("utf-8", "replace")
        if line[0] in " \t":
            if fields:
                fields[-1].append(line)
        elif line.startswith("From "):
            continue  # an mbox envelope line, not a header
        elif _HEADER_NAME.match(line):
            fields.append([line])
        else:
            raise _MessageError(f"not a header line: {line[:80]!r}")
    for lines in fields:
        name = lines[0][: lines[0].index(":")]
        if name.strip().lower() in _HEADERS_READ:  # "To :" is "To" too
            headers.set_raw(*compat32.header_source_parse(lines))
    return headers


def _unfold(value: str) -> str:
    """A header value with its folding removed."""
    return re.sub(r"\r?\n(?=[ \t])", "", value).strip()


def _first_address(to_values: list[str]) -> str | None:
    """The first address of the To: header, or None."""
    for _name, address in getaddresses([_unfold(value) for value in to_values]):
        if address:
            return address
    return None


def _decode_body(body: bytes, encoding: str) -> bytes | None:
    """The body's bytes with its transfer encoding undone; None for an unknown encoding."""
    if encoding in ("7bit", "8bit", "binary"):
        return body
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    if encoding == "base64":
        try:
            return binascii.a2b_base64(_BASE64_WHITESPACE.sub(b"", body), strict_mode=True)
        except binascii.Error as e:
            raise _MessageError(f"bad base64 in a text part: {e}") from e
    return None


def _encode_body(data: bytes, encoding: str, eol: bytes) -> bytes:
    """data in the transfer encoding, lines ending in eol (quoted-printable and base64: ≤ 76 chars)."""
    if encoding == "quoted-printable":
        # Hard line breaks are CRLF in canonical text: encode from LF, then use the message's.
        encoded = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True)
    elif encoding == "base64":
        encoded = base64.encodebytes(data)
    else:
        return data
    return encoded.replace(b"\n", eol) if eol != b"\n" else encoded


def _reencode_qp(body: bytes, data: bytes, new_data: bytes, eol: bytes) -> bytes:
    """The quoted-printable body of new_data: only the lines that changed re-encoded.

    body decodes to data. A line of data (up to a hard line break; soft breaks join the
    physical lines of one) that new_data keeps keeps its bytes as they were in body; the
    others are encoded as `_encode_body` encodes them. The whole body is re-encoded when
    new_data has a line more or less than data, when body's lines do not line up with
    data's, or when body breaks the 76-character limit (the email package writes lines
    of 78): the rewritten body keeps to it.
    """
    # A CR left before a line break once CRLFs are LFs switches binascii's encoder to CRLF
    # line breaks throughout, from the first line on: only the whole text is encoded alike.
    if _has_long_line(body) or b"\r\r\n" in new_data:
        return _encode_body(new_data, "quoted-printable", eol)
    old_lines = data.split(b"\n")
    new_lines = new_data.split(b"\n")
    groups = _qp_lines(body)
    # binascii decodes line by line: as many hard breaks in body as line breaks in data means
    # no "=0A" made one, so the n-th line of body decodes to the n-th line of data.
    if not len(groups) == len(old_lines) == len(new_lines):
        return _encode_body(new_data, "quoted-printable", eol)
    last = len(groups) - 1
    pieces: list[bytes] = []
    pending: list[bytes] = []  # lines to encode, one call for a run of them
    for n, (group, old, new) in enumerate(zip(groups, old_lines, new_lines, strict=True)):
        if old == new:
            if pending:
                pieces.append(_encode_body(b"".join(pending), "quoted-printable", eol))
                pending.clear()
            pieces.append(group)
        elif n == last:
            pending.append(new)
        else:  # canonical text: a CR before the LF is part of the line break
            pending.append(new.removesuffix(b"\r") + b"\n")
    if pending:
        pieces.append(_encode_body(b"".join(pending), "quoted-printable", eol))
    return b"".join(pieces)


def _has_long_line(encoded: bytes) -> bool:
    """Whether a physical line of encoded text is over 76 characters without its line break (RFC 2045 6.7)."""
    lines = encoded.split(b"\n")
    if max(map(len, lines)) <= _QP_MAX_LINE:
        return False
    return any(len(line.removesuffix(b"\r")) > _QP_MAX_LINE for line in lines)


def _qp_lines(body: bytes) -> list[bytes]:
    """A quoted-printable body cut after each hard line break (a break after "=" is a soft one)."""
    lines = _QP_LINE.findall(body)
    # The pattern matches empty at the end; that is a line only after a hard break.
    if len(lines) > 1 and not (lines[-2].endswith(b"\n") and not lines[-2].endswith((b"=\n", b"=\r\n"))):
        lines.pop()
    return lines


def _fits_identity(data: bytes, *, seven_bit: bool) -> bool:
    """Whether data can still travel as 7bit (or 8bit): no NUL, no long lines, ASCII for 7bit."""
    if seven_bit and not data.isascii():
        return False
    if b"\0" in data:
        return False
    return all(len(line) <= _MAX_LINE + 1 for line in data.split(b"\n"))


def _decode_text(data: bytes, charset: str | None) -> tuple[str, str]:
    """(codec, text) of a part's bytes in its declared charset; _MessageError if they don't decode."""
    if charset is None:
        # Undeclared: ASCII by the RFC, UTF-8 in practice, else Latin-1 (byte-transparent,
        # so the bytes around the links come back exactly as they were).
        for codec in ("ascii", "utf-8"):
            try:
                return codec, data.decode(codec)
            except UnicodeDecodeError:
                continue
        return "latin-1", data.decode("latin-1")
    declared = _codec_name(charset)
    if declared is None:
        raise _MessageError(f"unknown charset {charset!r}")
    try:
        return declared, data.decode(declared)
    except UnicodeError as e:  # a codec may raise a plain UnicodeError, not UnicodeDecodeError
        raise _MessageError(f"part does not decode as its declared charset {charset!r}: {e}") from e


# Python codecs that are transformations of text, not character sets: decoding a body with
# one of them and encoding it back would change its bytes around the links.
_NOT_CHARSETS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"})


@functools.lru_cache(maxsize=256)
def _codec_name(charset: str) -> str | None:
    """Python's codec for a MIME charset name, or None if Python knows none that is a character set."""
    try:
        name = codecs.lookup(charset).name
        # rot13, hex, base64… are bytes-to-bytes or text-to-text: str.encode refuses them (LookupError).
        if name in _NOT_CHARSETS or not isinstance("a".encode(name), bytes):
            return None
    except (LookupError, ValueError):  # ValueError: a NUL in the name; UnicodeError from "undefined"
        return None
    return name
