"""The fuzz targets: one per parser of outside input, each a function of bytes calling the real entry point.

A target takes any bytes, turns them into the input its parser gets in the proxy or the
CLI (text decoded as the caller decodes it, a few leading bytes choosing a content type
or a cap where the caller has one), and calls the parser. Errors the parser documents
(`URLError`, `TokenError`, `PolicyError`, `InputError`, …) are caught here and are
answers, not crashes. Anything else that escapes a target is a crash: an exception the
parser does not document, or `Broken`, raised when an answer breaks a bound the module
promises (output size linear in the input, the navigation reader within its step
budget, a body within its decoded cap, a normalised URL or feed entry that normalises
to itself, a click link that verifies as the target it was made for).

A target returns the checks of its answer (`Checks`), or None when there is nothing to
check: the fuzzer times the parse alone, then runs the checks.

`TARGETS` maps each name to its `Target`: the function, seed inputs made by code
(`fuzz.seeds`), the longest input worth trying and the words the fuzzer may splice in.
No target times anything: `fuzz/run.py` measures, `tests/test_fuzz_corpus.py` replays.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from clickguard.errors import InputError, TokenError, URLError
from clickguard.inspection.bodies import decode_body
from clickguard.inspection.fingerprints import FingerprintDB, traits_from
from clickguard.inspection.navigation import decode_html, find_navigations
from clickguard.inspection.navigation.results import RAW_MAX, budget_for
from clickguard.inspection.payloads import find_drive_by
from clickguard.intel.parsers import Indicator, Kind, parse_feed
from clickguard.mail.home_line import Sign, judge_sender
from clickguard.mail.links import (
    ClickContext,
    RecipientMode,
    decode,
    hash_recipient,
    make_click_link,
    verify_click_link,
)
from clickguard.mail.origin import TrustedBoundary, origin_of_message, parse_received, read_sender
from clickguard.mail.rewrite import RewriteSettings, rewrite_html, rewrite_message, rewrite_text
from clickguard.policy.model import load_policy
from clickguard.proxy.continuation import read_continue_token
from clickguard.tokens import sign
from clickguard.urls import normalize_host, normalize_url
from clickguard.vocab import FEED_FORMATS
from fuzz import seeds
from fuzz.seeds import CLICK_HOST, CONTEXT, KEY, NOW


class Broken(AssertionError):
    """An answer that breaks a bound or a property its module promises."""


def bound(holds: bool, what: str) -> None:
    """Raise Broken(what) unless holds."""
    if not holds:
        raise Broken(what)


type Checks = Callable[[], None]  # the bounds of one answer, checked after the parse was timed
type Run = Callable[[bytes], Checks | None]


class Target(NamedTuple):
    """One fuzz target."""

    name: str
    run: Run
    seeds: Callable[[], list[bytes]]
    max_len: int  # the longest input the fuzzer makes
    words: tuple[str, ...]  # a dictionary: pieces of syntax the fuzzer splices into inputs

    def check(self, data: bytes) -> None:
        """Run the target on data and check its answer (what the corpus replay does)."""
        checks = self.run(data)
        if checks is not None:
            checks()


TARGETS: dict[str, Target] = {}


def target(name: str, make_seeds: Callable[[], list[bytes]], max_len: int,
           words: tuple[str, ...] = ()) -> Callable[[Run], Run]:
    """Register a function as the target called name."""
    def register(run: Run) -> Run:
        TARGETS[name] = Target(name, run, make_seeds, max_len, words)
        return run
    return register


def text_of(data: bytes) -> str:
    """Bytes as the proxy hands text over from the wire: UTF-8, undecodable bytes as lone surrogates."""
    return data.decode("utf-8", "surrogateescape")


def pick[T](data: bytes, choices: tuple[T, ...]) -> tuple[T, bytes]:
    """(the choice the first byte names, the rest of data); the first choice for empty data."""
    if not data:
        return choices[0], b""
    return choices[data[0] % len(choices)], data[1:]


def lines_of(data: bytes, count: int) -> tuple[list[bytes], bytes]:
    """The first count lines of data (without their LF), and what follows them."""
    parts = data.split(b"\n", count)
    head, rest = parts[:count], parts[count] if len(parts) > count else b""
    return head + [b""] * (count - len(head)), rest


SETTINGS = RewriteSettings(CLICK_HOST, KEY, "hashed", frozenset({"intranet.example"}))
BASE_URL = "http://camera.example:8080/cgi-bin/index.asp?x=1"
_URL_WORDS = ("http://", "https://", "ws:", "ftp:", "[", "]", "::", "%2e", "%", "@", ":", "\\", "xn--", "0x",
              "/..", "/.", "?", "#", "\t", "ß", "\u200d")


# --- URLs --------------------------------------------------------------------------------------

@target("url", seeds.urls, 8192, _URL_WORDS)
def url(data: bytes) -> Checks | None:
    """`normalize_url`: every request and every href; a normalised URL normalises to itself."""
    default_scheme, rest = pick(data, (None, "http"))
    raw = text_of(rest)
    try:
        found = normalize_url(raw, default_scheme=default_scheme)
    except URLError:
        return None

    def checks() -> None:
        bound(len(found.url) <= 12 * len(raw) + 32, "normalised URL over 12 characters per input character")
        bound(_normalizes_to_itself(found.url), f"normalising {found.url!r} again changes it")
    return checks


def _normalizes_to_itself(text: str) -> bool:
    """Whether a normalised URL is its own normalisation (else a feed's key and a request's differ)."""
    try:
        return normalize_url(text).url == text
    except URLError:
        return False


# --- mail --------------------------------------------------------------------------------------

_BOUNDARY = TrustedBoundary(["mx.corp.example", "*.corp.example"], ["10.0.0.0/8"])
_RECEIVED_WORDS = ("from ", " by ", " with ", "helo=", "HELO ", "EHLO ", "(", ")", "[", "]", "IPv6:", ";",
                   "\\", "ESMTPSA", "unknown", "dyn", "pool", "198.51.100.7", "2001:db8::1", "Received:")


@target("received", seeds.received, 16384, _RECEIVED_WORDS)
def received(data: bytes) -> None:
    """One Received header: `parse_received`, `read_sender` and the home-line judgement of its sender."""
    value = data.decode("utf-8", "replace")  # as origin_of_message hands header values over
    parse_received(value)
    sender = read_sender(value)
    if sender is not None:
        judge_sender(sender, own_relay=_BOUNDARY.is_relay_name)


@target("origin", seeds.messages, 65536, (*_RECEIVED_WORDS, "\r\nReceived: ", "\n\n"))
def origin(data: bytes) -> None:
    """`origin_of_message` on a whole message, with and without named relays."""
    origin_of_message(data)
    origin_of_message(data, trusted_relays=("mx.corp.example", "10.1.0.0/16"),
                      internal_networks=("10.0.0.0/8",))


_MIME_WORDS = ("\r\n", "--", "boundary=", "Content-Type: ", "multipart/mixed", "text/html", "text/plain",
               "charset=", "Content-Transfer-Encoding: ", "base64", "quoted-printable", "=\r\n", "=3D",
               "http://", "www.", "<a href=", "multipart/signed", "To: ", "Message-ID: ")


@target("rewrite_message", seeds.messages, 65536, _MIME_WORDS)
def rewrite_mail(data: bytes) -> Checks:
    """`rewrite_message`: a message out for every message in, unchanged with a reason when it cannot be."""
    origin_ip, raw = pick(data, ("198.51.100.7", None, "2001:db8::7"))
    result = rewrite_message(raw, SETTINGS, origin_ip=origin_ip)

    def checks() -> None:
        if result.error is not None or not result.changed:
            bound(result.data == raw and (result.error is None or result.links == 0),
                  "a message left alone came back changed")
        bound(len(result.data) <= 40 * len(raw) + 4096, "rewritten message over 40 times the original")
    return checks


_HTML_WORDS = ("<a href=", "<area href=", "<base href=", "<svg>", "<math>", "xlink:href=", "<noscript>",
               "<template>", "<script>", "</script>", "<!--", "-->", "<textarea>", "&amp;", "&#x2f;", "//",
               "http://", "https://", "javascript:", "'", '"', ">", "<")


@target("link_finder", seeds.pages, 131072, _HTML_WORDS)
def link_finder(data: bytes) -> Checks:
    """The rewriter's link finder: `rewrite_html` (webmail pages, HTML parts) and `rewrite_text`."""
    text = text_of(data)  # mitmproxy's get_text(strict=False) gives undecodable bytes as lone surrogates
    html, count = rewrite_html(text, CONTEXT, SETTINGS)
    plain, _ = rewrite_text(text, CONTEXT, SETTINGS)

    def checks() -> None:
        bound(count <= text.count("<"), "more links rewritten than tags")
        bound(len(html) <= 40 * len(text) + 4096, "rewritten HTML over 40 times the original")
        bound(len(plain) <= 40 * len(text) + 4096, "rewritten text over 40 times the original")
    return checks


# --- what a response does ----------------------------------------------------------------------

_CONTENT_TYPES: tuple[str | None, ...] = (
    "text/html", None, "text/html; charset=utf-8", "application/xhtml+xml", "image/svg+xml", "text/xml",
    "text/plain", "text/html; charset=utf-16le", 'text/html;charset="shift_jis"',
    "text/html; charset=gb18030", "text/html; charset=x-user-defined", "text/html; charset=iso-2022-jp",
    "text/html; charset=replacement", "text/html; charset=utf-16be", "application/xml",
    "text/html; charset=windows-1252", "*/*",
)
_SCRIPT_WORDS = ("location", ".href", "=", "window.", "document.", "top.", "self.", "assign(", "replace(",
                 "open(", "write(", "submit()", "atob(", "unescape(", "decodeURIComponent(", "eval(",
                 "String.fromCharCode(", "setTimeout(", "Function(", "function ", "=>", "(", ")", "{", "}",
                 "[", "]", "'", '"', "`", "${", "/", "//", "/*", "*/", "\\x", "\\u", "+", ";", "var ", "let ",
                 ".split('').reverse().join('')", "onload", "addEventListener(", "new Promise", ".then(")


def _navigations(body: bytes, content_type: str | None, headers: list[tuple[str, str]],
                 status: int) -> Checks:
    """find_navigations with a budget of its own, and the bounds on what it answers."""
    steps = budget_for(len(body))
    found = find_navigations(status=status, headers=headers, body=body, base_url=BASE_URL,
                             content_type=content_type, steps=steps)

    def checks() -> None:
        bound(steps.spent <= 2 * steps.limit, f"reading took {steps.spent} steps, budget {steps.limit}")
        bound(len(found) <= 66, f"{len(found)} navigations from one response (the reader keeps 64)")
        bound(all(len(n.raw) <= RAW_MAX for n in found), "a navigation's evidence over RAW_MAX")
    return checks


@target("navigation", seeds.pages, 131072, (*_HTML_WORDS, *_SCRIPT_WORDS, "<meta http-equiv=refresh content=",
                                             "<iframe src=", "<form action=", "<meta charset="))
def navigation(data: bytes) -> Checks:
    """`find_navigations` on a page: markup, meta refresh, frames, forms, scripts, the step budget."""
    content_type, body = pick(data, _CONTENT_TYPES)
    return _navigations(body, content_type, [("Content-Type", content_type)] if content_type else [], 200)


@target("script", seeds.scripts, 131072, _SCRIPT_WORDS)
def script(data: bytes) -> Checks:
    """The script reader alone: the input is the inside of one inline <script>."""
    return _navigations(b"<script>" + data, "text/html", [], 200)


@target("redirect_headers", lambda: [b"\x00http://e.example/\n0; url=/x\n", b"\x01\n5;URL='//e.example'\n"],
        4096, ("url=", "URL =", ";", ",", "'", '"', "http://", "//", "\\", "javascript:", "data:"))
def redirect_headers(data: bytes) -> Checks:
    """The Location and Refresh headers (first and second line); the first byte picks the status."""
    status, rest = pick(data, (302, 200, 301, 303, 307, 308, 304))
    (location, refresh), body = lines_of(rest, 2)
    headers = [("Location", text_of(location)), ("Refresh", text_of(refresh))]
    return _navigations(body, "text/html", headers, status)


_CHARSETS = ("", "utf-8", "windows-1252", "shift_jis", "euc-jp", "iso-2022-jp", "gb18030", "big5", "euc-kr",
             "utf-16le", "utf-16be", "x-user-defined", "replacement", "koi8-r", "iso-8859-8-i",
             "x-mac-cyrillic", "windows-874", "nonsense")


@target("decode_html", seeds.pages, 65536, ("<meta charset=", "<?xml version='1.0' encoding='",
                                           "\xef\xbb\xbf", "\xfe\xff", "\xff\xfe", "http-equiv=content-type",
                                           "content="))
def html_text(data: bytes) -> Checks:
    """`decode_html`: the encoding a browser picks (BOM, charset, XML declaration, <meta> prescan)."""
    charset, rest = pick(data, _CHARSETS)
    mime, body = pick(rest, ("text/html", "application/xhtml+xml", "image/svg+xml", ""))
    content_type = f"{mime}; charset={charset}" if charset else mime or None
    text = decode_html(body, content_type)
    return lambda: bound(len(text) <= len(body), "decoded text longer than its bytes")


@target("drive_by", seeds.drive_bys, 65536, (
    "attachment", "inline", "filename=", "filename*=UTF-8''", "=?UTF-8?B?", ".exe", ".js", ".zip", ".apk",
    ".sh", "\x7fELF", "MZ", "PK\x03\x04", "#!/bin/sh", "wget ", "curl ", "chmod +x", "powershell"))
def drive_by(data: bytes) -> None:
    """`find_drive_by`: lines URL path, Content-Type, Content-Disposition, then the body's first bytes."""
    (path, content_type, disposition), head = lines_of(data, 3)
    try:
        url_path = normalize_url("http://h.example/" + text_of(path).lstrip("/")).path
    except URLError:
        url_path = "/"
    headers = [("Content-Type", text_of(content_type)), ("Content-Disposition", text_of(disposition))]
    find_drive_by(url_path=url_path, headers=headers, head=head)


# --- bodies ------------------------------------------------------------------------------------

BODY_CAPS = (1 << 20, 65536, 4096, 1)
_TRUNCATIONS = (None, "decoded cap", "ratio cap", "undecodable")


def _body(data: bytes, content_encoding: str) -> Checks:
    """decode_body within the cap the first byte picks; the answer stays within it."""
    cap, body = pick(data, BODY_CAPS)
    decoded, truncated = decode_body(body, content_encoding, max_decoded=cap)

    def checks() -> None:
        bound(len(decoded) <= cap, f"{len(decoded)} decoded bytes over the cap of {cap}")
        bound(truncated in _TRUNCATIONS, f"unknown truncation {truncated!r}")
    return checks


def _body_target(coding: str) -> None:
    """Register the body target of one Content-Encoding."""
    target(f"body_{coding}", lambda: seeds.bodies(coding), 262144)(lambda data: _body(data, coding))


for _coding in ("gzip", "deflate", "br", "zstd"):
    _body_target(_coding)


@target("body_stacked", seeds.stacked_bodies, 262144)
def body_stacked(data: bytes) -> Checks:
    """Brotli inside gzip ("Content-Encoding: br, gzip")."""
    return _body(data, "br, gzip")


@target("body_codings", seeds.coded_bodies, 262144,
        ("gzip", "x-gzip", "deflate", "br", "zstd", "identity", ","))
def body_codings(data: bytes) -> Checks:
    """Any Content-Encoding header (first line) over any body; the cap is 64 KiB."""
    (header,), body = lines_of(data, 1)
    return _body(b"\x01" + body, text_of(header))


# --- feeds -------------------------------------------------------------------------------------

def _canonical(entry: Indicator) -> bool:
    """Whether an indicator is in the form a request's own lookup key takes (else the entry never matches)."""
    try:
        if entry.kind is Kind.URL:
            return normalize_url(entry.value).url == entry.value
        if entry.kind is Kind.IP:
            return str(ipaddress.ip_address(entry.value)) == entry.value
        if entry.kind is Kind.CIDR:
            return str(ipaddress.ip_network(entry.value)) == entry.value
        if entry.kind in (Kind.DOMAIN, Kind.HOST):
            return normalize_host(entry.value) == entry.value
    except ValueError:  # URLError too: the entry's own form does not even parse
        return False
    return True


def _feed(fmt: str, data: bytes) -> Checks:
    """parse_feed on a feed's bytes as sources.py decodes them; every entry canonical."""
    text = data.decode("utf-8", errors="replace")
    parsed = parse_feed(fmt, text)

    def checks() -> None:
        bound(parsed.size + len(parsed.skipped) <= len(text) + 1, "more entries than characters")
        for entry in parsed.all():
            bound(_canonical(entry), f"{entry.kind} entry {entry.value!r} is not in canonical form")
    return checks


def _feed_target(fmt: str) -> None:
    """Register the target of one feed format."""
    words = ("\n", "#", ";", ",", "\t", '"', "/", ":", "::", "0.0.0.0 ", "*.", "http://", '{"cidr":"', '"}',
             '{"type":"metadata","records":', "id,dateadded,url,url_status,last_online,threat,tags")
    target(f"feed_{fmt}", lambda: seeds.FEEDS[fmt], 262144, words)(lambda data: _feed(fmt, data))


for _fmt in FEED_FORMATS:
    _feed_target(_fmt)


# --- YAML files IT writes ----------------------------------------------------------------------

@functools.cache
def _scratch() -> tempfile.TemporaryDirectory[str]:
    """A directory of this process's own for the files the YAML targets load (gone at exit)."""
    return tempfile.TemporaryDirectory(prefix="clickguard-fuzz-")


def remove_scratch() -> None:
    """Remove the YAML targets' directory now (for a process that ends without running exit handlers)."""
    if _scratch.cache_info().currsize:
        _scratch().cleanup()
        _scratch.cache_clear()


_YAML_WORDS = (": ", "- ", "\n  ", "&a ", "*a", "<<: ", "!!", "[", "]", "{", "}", "'", '"', "|", ">", "---",
               "version: 1", "feeds:", "actions:", "allow:", "deny:", "networks:", "domains:", "warn:",
               "inspect:", "email:", "audit:", "admin:", "fingerprints:", "match:", "examples:", "server:",
               "realm:", "title:", "header:", "pattern:", "class: camera", "strength: device", "source: x")


@target("policy", seeds.policies, 65536, _YAML_WORDS)
def policy(data: bytes) -> None:
    """`load_policy` (which parses with `parse_policy`): the file as the proxy reloads it."""
    path = Path(_scratch().name) / "policy.yaml"
    path.write_bytes(data)
    try:
        load_policy(path)
    except InputError:  # PolicyError: every problem, with file, line and field
        return


@target("fingerprints", seeds.fingerprints, 65536, _YAML_WORDS)
def fingerprints(data: bytes) -> None:
    """`FingerprintDB.load`: a fingerprint file IT adds with inspect.fingerprints."""
    path = Path(_scratch().name) / "fingerprints.yaml"
    path.write_bytes(data)
    try:
        FingerprintDB.load([path])
    except InputError:
        return


@target("fingerprint_match", lambda: [b"Boa/0.94.13\nBasic realm=\"DVR\"\n<title>NETSurveillance WEB</title>",
                                      b"Hikvision-Webs\n\n", b"lighttpd\n\n<title>Router</title>"],
        65536, ("<title>", "</title>", "realm=", "Basic ", "Digest ", "&amp;", "&#", "/"))
def fingerprint_match(data: bytes) -> None:
    """The shipped fingerprints against a response: lines Server and WWW-Authenticate, then the body."""
    (server, realm), body = lines_of(data, 2)
    headers = [("Server", text_of(server)), ("WWW-Authenticate", text_of(realm)),
               ("Content-Type", "text/html")]
    FingerprintDB.default().matches(traits_from(headers, body.decode("utf-8", "replace")))


# --- click links and continue tokens -----------------------------------------------------------

_LINK_WORDS = (f"https://{CLICK_HOST}/v1/", "/http://", "/https://", "%23", "%25", "%2F", "%2e", "?", "#",
               "=3D", "=\r\n", "safelinks.protection.outlook.com/?url=",
               "urldefense.proofpoint.com/v2/url?u=", "urldefense.com/v3/__", "__;", "!!", "mimecast.com/s/",
               "?domain=", "google.com/url?q=")


@target("click_link", seeds.click_links, 8192, _LINK_WORDS)
def click_link(data: bytes) -> None:
    """A click link as `clickguard decode` reads it (`decode`) and as the click endpoint does."""
    link = text_of(data)
    with contextlib.suppress(TokenError, URLError):
        decode(link, KEY, CLICK_HOST)
    try:
        found, _ = verify_click_link(link, KEY, click_host=CLICK_HOST)
        normalize_url(found)
    except (TokenError, URLError):
        return


def _context(choices: bytes) -> ClickContext:
    """A click context from 24 bytes: origin, Message-ID hash, recipient mode, home-line signs, time."""
    origin_ip = (None, str(ipaddress.IPv4Address(choices[1:5])), str(ipaddress.IPv6Address(choices[1:17])))[
        choices[0] % 3]
    recipient_mode: RecipientMode = ("none", "hashed", "plain")[choices[18] % 3]
    recipient = {"none": None, "hashed": hash_recipient("alice@corp.example", KEY),
                 "plain": "jürgen@corp.example" if choices[18] & 4 else "a"}[recipient_mode]
    message_id_hash = choices[5:13].hex() if choices[17] & 1 else None
    minutes = int.from_bytes(choices[20:24])
    return ClickContext(origin_ip, message_id_hash, recipient, recipient_mode, minutes * 60,
                        Sign(choices[19]) if origin_ip else Sign(0))


@target("click_roundtrip", seeds.click_roundtrips, 8192, _URL_WORDS)
def click_roundtrip(data: bytes) -> Checks | None:
    """make_click_link, then verify_click_link gives back target and context; a browser leaves the link be.

    The first 24 bytes choose the context (see `_context`); the rest is the target.
    """
    if len(data) < 24:
        return None
    context, target_text = _context(data[:24]), text_of(data[24:])
    try:
        link = make_click_link(target_text, context, KEY, click_host=CLICK_HOST)
    except URLError:
        return None  # not an absolute http(s) URL, or not text
    try:
        verified: tuple[str, ClickContext] | TokenError = verify_click_link(link, KEY, click_host=CLICK_HOST)
    except TokenError as e:
        verified = e

    def checks() -> None:
        bound(verified == (target_text, context),
              f"the link made for {target_text!r} verifies as {verified!r}")
        bound(link.isascii(), "a click link with characters a browser escapes")
        browsed = normalize_url(link).url
        bound(_as_keyed(browsed) == _as_keyed(link), f"a browser would request {browsed!r}, not {link!r}")
    return checks


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _as_keyed(url_text: str) -> str:
    """A URL as normalize_url keys it on purpose and browsers do not: escapes upper-cased, no empty query."""
    return _ESCAPE.sub(lambda escape: escape.group().upper(), url_text).removesuffix("?")


@target("continue_token", seeds.continue_tokens, 8192, (".", "-", "_", "ey"))
def continue_token(data: bytes) -> None:
    """A continue token as the click endpoint reads it (what anyone can send)."""
    try:
        read_continue_token(text_of(data), KEY, now=NOW)
    except TokenError:
        return


@target("continue_payload", seeds.continue_payloads, 8192,
        ('"v":', '"u":', '"c":', '"usr":', '"ref":', '"codes":', '"click":', '"id":', '"origin":',
         '"recipient":', '"hop":', '"home":', "null", "true", "[", "]", "{", "}", ","))
def continue_payload(data: bytes) -> None:
    """A payload signed with our key, as an older or newer clickguard may have issued it (any JSON object)."""
    try:
        payload = json.loads(data)
        token = sign(payload, KEY, expires=NOW + 60) if isinstance(payload, dict) else None
    except (ValueError, RecursionError):  # not JSON, or too deep for this harness to sign
        return
    if token is None:
        return
    try:
        read_continue_token(token, KEY, now=NOW)
    except TokenError:
        return
