"""Tests for clickguard.rewrite: real messages built with the standard library, rewritten,
re-parsed with the standard library, and every click link decoded back to its target."""

from __future__ import annotations

import base64
import csv
import re
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

import pytest

from clickguard.mail.links import (
    ClickContext,
    RecipientMode,
    click_context,
    decode,
    hash_message_id,
    hash_recipient,
)
from clickguard.mail.rewrite import RewriteSettings, rewrite_html, rewrite_message, rewrite_text, wrap_url

KEY = bytes(range(32))
CLICK_HOST = "click.corp.example"
SETTINGS = RewriteSettings(click_host=CLICK_HOST, key=KEY, skip_domains=frozenset({"intranet.example"}))
CONTEXT = click_context(
    key=KEY,
    origin_ip="203.0.113.9",
    message_id="<m1@mail.example>",
    recipient="alice@corp.example",
    recipient_mode="hashed",
    rewritten_at=1_700_000_000,
)
VECTORS = Path(__file__).resolve().parents[2] / "shared" / "data" / "vectors" / "wrapped_urls.tsv"

SAFELINK = (
    "https://nam02.safelinks.protection.outlook.com/?url=https%3A%2F%2Fdatatracker.ietf.org%2Fdoc%2Fhtml"
    "%2Frfc6238&data=04%7C01%7Cx%40example.org&sdata=iBZcXWlOthfRUW%3D&reserved=0"
)
PROOFPOINT_V2 = (
    "https://urldefense.proofpoint.com/v2/url?u=https-3A__www.kernel.org_doc_html_latest_process"
    "_4.Coding.html-23regressions&d=DwIFaQ&c=7dfBJ8&r=P4xb2&m=j-KHqu&s=8LzYkG&e="
)
PROOFPOINT_V3 = "https://urldefense.com/v3/__https://google.com__;!!D0SnjzUQI17x!VcBcfvul5wWsx1iw3KhoC66wtf$"
MIMECAST = "https://protect-us.mimecast.com/s/yj15CXDwEpFqyG4H6Jxp2?domain=sourceforge.net"


def click_target(url: str) -> str | None:
    """The target of a click link that verifies, after it; fails the test if url is no click link."""
    decoded = decode(url, KEY, CLICK_HOST)
    assert decoded.layers[:1] == ("clickguard",), url
    return decoded.target


# wrap_url -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://example.com/a?b=1&c=2", "https://example.com/a?b=1&c=2"),
        ("HTTP://Example.COM/Path", "HTTP://Example.COM/Path"),
        ("  https://example.com/x \n", "https://example.com/x"),  # what a browser strips
        ("http://192.0.2.7:8080/cgi-bin/luci", "http://192.0.2.7:8080/cgi-bin/luci"),
        ("https://example.com/p#frag", "https://example.com/p#frag"),
        ("https://notintranet.example/", "https://notintranet.example/"),  # not a subdomain
        (SAFELINK, "https://datatracker.ietf.org/doc/html/rfc6238"),
        (PROOFPOINT_V2, "https://www.kernel.org/doc/html/latest/process/4.Coding.html#regressions"),
        (PROOFPOINT_V3, "https://google.com"),
        # A wrapper in a wrapper: peeled recursively, wrapped once.
        (
            "https://www.google.com/url?q=" + SAFELINK.replace("%", "%25").replace("&", "%26") + "&sa=D",
            "https://datatracker.ietf.org/doc/html/rfc6238",
        ),
    ],
)
def test_wrap_url_wraps_web_links_once(url: str, target: str) -> None:
    wrapped = wrap_url(url, CONTEXT, SETTINGS)
    assert wrapped.startswith(f"https://{CLICK_HOST}/v1/")
    assert click_target(wrapped) == target
    assert decode(wrapped, KEY, CLICK_HOST).context == CONTEXT
    assert wrap_url(wrapped, CONTEXT, SETTINGS) == wrapped  # already ours: never double-wrapped


@pytest.mark.parametrize(
    "url",
    [
        "mailto:alice@example.com",
        "cid:logo@mail.example",
        "tel:+4930123456",
        "data:text/html,<b>x</b>",
        "javascript:alert(1)",
        "#section-2",
        "/relative/path",
        "relative.html",
        "//example.com/protocol-relative",
        "ftp://ftp.example.com/file",
        "https://intranet.example/wiki",
        "https://wiki.intranet.example/page",  # a subdomain of an allow-listed domain
        "http://[::1",  # does not parse
        "http://exa mple.com/",  # a browser refuses this host
        "https://nam06.safelinks.protection.outlook.com/?data=1",  # a vendor link without its target
        "",
    ],
)
def test_wrap_url_leaves_alone(url: str) -> None:
    assert wrap_url(url, CONTEXT, SETTINGS) == url


def test_wrap_url_peels_a_foreign_wrapper_around_our_own_link() -> None:
    ours = wrap_url("https://example.com/", CONTEXT, SETTINGS)
    safelinked = "https://eur01.safelinks.protection.outlook.com/?url=" + ours.replace("/", "%2F").replace(
        ":", "%3A"
    ) + "&data=x&reserved=0"
    assert wrap_url(safelinked, CONTEXT, SETTINGS) == ours


def test_wrap_url_keeps_mimecast_links_and_wraps_them() -> None:
    wrapped = wrap_url(MIMECAST, CONTEXT, SETTINGS)
    decoded = decode(wrapped, KEY, CLICK_HOST)
    assert decoded.layers == ("clickguard", "mimecast")
    assert decoded.host_hint == "sourceforge.net"
    assert wrapped.endswith("/" + MIMECAST)


def _vectors() -> list[tuple[str, str, str]]:
    with VECTORS.open(newline="") as f:
        return [(row["wrapped"], row["target"], row["vendor"]) for row in csv.DictReader(f, delimiter="\t")]


@pytest.mark.parametrize(("wrapped", "target", "vendor"), _vectors())
def test_wrap_url_shared_vectors(wrapped: str, target: str, vendor: str) -> None:
    decoded = decode(wrap_url(wrapped, CONTEXT, SETTINGS), KEY, CLICK_HOST)
    assert decoded.layers[0] == "clickguard"
    if target.startswith("host:"):
        assert (decoded.host_hint, decoded.layers[1:]) == (target[5:], (vendor,))
    else:
        assert decoded.target == target


def test_skip_domains_are_normalised() -> None:
    settings = SETTINGS._replace(skip_domains=frozenset({"Partner.EXAMPLE.", "198.51.100.1"}))
    assert wrap_url("https://www.partner.example/", CONTEXT, settings) == "https://www.partner.example/"
    assert wrap_url("http://198.51.100.1/", CONTEXT, settings) == "http://198.51.100.1/"
    assert wrap_url("http://198.51.100.10/", CONTEXT, settings) != "http://198.51.100.10/"


# rewrite_html ---------------------------------------------------------------------------------


class _Links(HTMLParser):
    """The href of every <a> and <area>, as the standard library's HTML parser reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            href = next((value for name, value in attrs if name == "href"), None)
            if href is not None:
                self.hrefs.append(href)


def hrefs(document: str) -> list[str]:
    parser = _Links()
    parser.feed(document)
    parser.close()
    return parser.hrefs


_ANY_HREF = re.compile(r"""(?i)\bhref[\t\n\f\r ]*=[\t\n\f\r ]*(?:"[^"]*"|'[^']*'|[^\t\n\f\r >]*)""")


def without_links(document: str) -> str:
    """The document with every href value blanked: what must stay byte-identical."""
    return _ANY_HREF.sub("href=_", document)


@pytest.mark.parametrize(
    ("document", "targets"),
    [
        ('<a href="https://a.example/">x</a>', ["https://a.example/"]),
        ("<A HREF='https://a.example/?q=1'>x</A>", ["https://a.example/?q=1"]),
        ("<a href=https://a.example/p?x=1&amp;y=2>x</a>", ["https://a.example/p?x=1&y=2"]),
        ('<a\n  class="btn"\n  href="https://a.example/split"\n>x</a>', ["https://a.example/split"]),
        ('<a href="https://a.example/?a=1&copy=2&region=eu">', ["https://a.example/?a=1&copy=2&region=eu"]),
        ('<a href="https://a.example/&#x41;&amp;">', ["https://a.example/A&"]),
        ('<a/href="https://a.example/slash">', ["https://a.example/slash"]),
        ('<a href = "https://a.example/spaces" >', ["https://a.example/spaces"]),
        ('<map><area shape="rect" coords="0,0,1,1" href="https://a.example/map"></map>', ["https://a.example/map"]),
        ('<a href="https://first.example/" href="https://second.example/">', ["https://first.example/"]),
        ("<a title=\"it's\" href='https://a.example/it&#39;s'>", ["https://a.example/it's"]),
        ('<a href="https://a.example/x">1</a><a href="https://a.example/x">2</a>',
         ["https://a.example/x"] * 2),
    ],
)
def test_rewrite_html_wraps_hrefs(document: str, targets: list[str]) -> None:
    rewritten, count = rewrite_html(document, CONTEXT, SETTINGS)
    assert count == len(targets)
    found = hrefs(rewritten)
    assert [click_target(url) for url in found[: len(targets)]] == targets
    assert without_links(rewritten) == without_links(document).replace("href=_", "href=_")


@pytest.mark.parametrize(
    "document",
    [
        '<!-- <a href="https://commented.example/"> -->',
        '<!--> <p>abrupt comment</p> <a href="mailto:x@example.com">',
        "<script>var s = '<a href=\"https://script.example/\">';</script>",
        '<style>a[href="https://style.example/"] {}</style>',
        '<textarea><a href="https://textarea.example/"></textarea>',
        '<title><a href="https://title.example/"></title>',
        '<img alt=\'<a href="https://attribute.example/">\' src="https://img.example/i.png">',
        '<link href="https://css.example/s.css" rel=stylesheet><base href="https://base.example/">',
        '<abbr href="https://abbr.example/">',
        '<a name="top">no href</a><a href>empty</a><a href="#top">anchor</a><a href="cid:x@y">',
        '<a href="https://intranet.example/">allow-listed</a>',
        '<a href="https://unterminated.example/',  # a tag cut by the end of the document
        "plain text, no markup at all: https://text.example/",
        "",
    ],
)
def test_rewrite_html_leaves_alone(document: str) -> None:
    assert rewrite_html(document, CONTEXT, SETTINGS) == (document, 0)


def test_rewrite_html_keeps_quotes_and_escapes_new_values() -> None:
    rewritten, _ = rewrite_html(
        "<a href='https://a.example/?x=1&amp;y=2'>x</a> <a href=https://b.example/>y</a>", CONTEXT, SETTINGS
    )
    assert re.fullmatch(r"<a href='[^'<>]*&amp;y=2'>x</a> <a href=\"[^\"<>]*\">y</a>", rewritten)


def test_rewrite_html_is_linear_on_hostile_markup() -> None:
    hostile = '<a x="' * 20_000 + "<div title='" * 20_000 + "<!--" + "<a" * 20_000
    rewritten, count = rewrite_html(hostile, CONTEXT, SETTINGS)  # a backtracking scan would hang here
    assert (rewritten, count) == (hostile, 0)


# rewrite_text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "targets", "rest"),
    [
        ("Go to https://a.example/x.", ["https://a.example/x"], "Go to _."),
        ("(see https://a.example/wiki/Foo_(bar))", ["https://a.example/wiki/Foo_(bar)"], "(see _)"),
        ("<https://a.example/>, 'https://b.example/'!", ["https://a.example/", "https://b.example/"],
         "<_>, '_'!"),
        ('"http://a.example/q?x=1";', ["http://a.example/q?x=1"], '"_";'),
        ("www.a.example/path?", ["http://www.a.example/path"], "_?"),
        ("Is it https://a.example/x?! URL:https://b.example/:", ["https://a.example/x", "https://b.example/"],
         "Is it _?! URL:_:"),
        ("詳細はhttps://a.example/jp。ご覧ください", ["https://a.example/jp"], "詳細は_。ご覧ください"),
        ("line one\nhttps://a.example/1\r\nhttps://a.example/2\n", ["https://a.example/1", "https://a.example/2"],
         "line one\n_\r\n_\n"),
    ],
)
def test_rewrite_text_wraps_bare_urls(text: str, targets: list[str], rest: str) -> None:
    links = [wrap_url(target, CONTEXT, SETTINGS) for target in targets]
    assert [click_target(url) for url in links] == targets
    pieces = rest.split("_")
    expected = pieces[0] + "".join(url + piece for url, piece in zip(links, pieces[1:], strict=True))
    assert rewrite_text(text, CONTEXT, SETTINGS) == (expected, len(targets))


@pytest.mark.parametrize(
    "text",
    [
        "write to bob@www.example.com or visit our office",
        "mailto:alice@example.com and ftp://ftp.example.com/",
        "the prefix www. alone, and http:// alone",
        "https://intranet.example/wiki is allow-listed",
        "",
    ],
)
def test_rewrite_text_leaves_alone(text: str) -> None:
    assert rewrite_text(text, CONTEXT, SETTINGS) == (text, 0)


# rewrite_message ------------------------------------------------------------------------------

HTML_BODY = """<!DOCTYPE html>
<html><head><meta charset="{charset}"><title>Your parcel</title></head>
<body><p>Hello {greeting},</p>
<p><a href="https://shop.example/track?id=42&amp;lang=en">Track your parcel</a> or see
<a HREF=https://docs.example/faq>the FAQ</a>. Questions? <a href="mailto:help@shop.example">Mail us</a>.</p>
<p><a href="#top">Back to top</a> <img src="cid:logo@shop.example" alt="logo">
<a href="https://intranet.example/policy">Policy</a></p>
<p>{filler}</p>
</body></html>
"""
HTML_TARGETS = ["https://shop.example/track?id=42&lang=en", "https://docs.example/faq"]
HTML_UNCHANGED = ["mailto:help@shop.example", "#top", "https://intranet.example/policy"]
TEXT_BODY = (
    "Hello {greeting},\n\nTrack your parcel: https://shop.example/track?id=42&lang=en.\n"
    "FAQ: www.docs.example/faq\n{filler}\n"
)
TEXT_TARGETS = ["https://shop.example/track?id=42&lang=en", "http://www.docs.example/faq"]


def _headers(msg: Message, *, to: str = "Alice Example <alice@corp.example>") -> None:
    msg["From"] = "Shop <news@shop.example>"
    msg["To"] = to
    msg["Subject"] = "Your parcel is on its way, with a subject long enough to be folded by the generator"
    msg["Message-ID"] = "<m1@mail.example>"
    msg["Received"] = (
        "from relay.example ([198.51.100.7]) by mx.corp.example with ESMTPS id 42; Mon, 1 Jan 2024"
    )


def _text(kind: str, charset: str, greeting: str, filler: str, cte: str) -> EmailMessage:
    part = EmailMessage()
    template = HTML_BODY if kind == "html" else TEXT_BODY
    body = template.format(charset=charset, greeting=greeting, filler=filler)
    part.set_content(body, subtype=kind, charset=charset, cte=cte)
    return part


def alternative(charset: str, greeting: str, html_cte: str, text_cte: str, filler: str = "") -> EmailMessage:
    msg = EmailMessage()
    _headers(msg)
    msg.make_alternative()
    msg.attach(_text("plain", charset, greeting, filler, text_cte))
    msg.attach(_text("html", charset, greeting, filler, html_cte))
    return msg


def mixed_with_attachments() -> EmailMessage:
    msg = EmailMessage()
    _headers(msg)
    msg.set_content(TEXT_BODY.format(greeting="Alice", filler=""), cte="quoted-printable")
    msg.add_alternative(HTML_BODY.format(charset="utf-8", greeting="Alice", filler=""), subtype="html")
    msg.add_attachment(bytes(range(256)) * 8, maintype="application", subtype="pdf", filename="invoice.pdf")
    # An attached HTML file and an attached text file are files: their bytes must not change.
    msg.add_attachment('<a href="https://attached.example/">x</a>', subtype="html", filename="page.html")
    msg.add_attachment("see https://attached.example/notes", filename="notes.txt")
    inner = EmailMessage()
    _headers(inner)
    inner.set_content("forwarded: https://forwarded.example/")
    msg.add_attachment(inner)  # message/rfc822: the forwarded evidence stays as it came
    return msg


def wrapped_links() -> EmailMessage:
    msg = EmailMessage()
    _headers(msg)
    html = (
        f'<p><a href="{SAFELINK.replace("&", "&amp;")}">RFC</a> '
        f'<a href="{PROOFPOINT_V2.replace("&", "&amp;")}">kernel</a> '
        f'<a href="{PROOFPOINT_V3}">g</a> <a href="{MIMECAST}">sf</a></p>\n'
    )
    msg.set_content(html, subtype="html", cte="quoted-printable")
    return msg


class Case(NamedTuple):
    msg: EmailMessage
    links: int
    targets: list[str]  # every target a click link in the result must lead to (any order, repeats)
    unchanged: list[str]  # hrefs that must be left as they were


FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40
CASES = {
    "utf8 QP html + base64 text": Case(
        alternative("utf-8", "Jürgen ✓", "quoted-printable", "base64", FILLER), 4,
        HTML_TARGETS + TEXT_TARGETS, HTML_UNCHANGED,
    ),
    "iso-8859-1 QP html + 8bit text": Case(
        alternative("iso-8859-1", "Jürgen Müller", "quoted-printable", "8bit"), 4,
        HTML_TARGETS + TEXT_TARGETS, HTML_UNCHANGED,
    ),
    "windows-1252 base64 html + QP text": Case(
        alternative("windows-1252", "Zoë – “quoted” €", "base64", "quoted-printable"), 4,
        HTML_TARGETS + TEXT_TARGETS, HTML_UNCHANGED,
    ),
    "shift_jis base64": Case(
        alternative("shift_jis", "山田様、ソフト表示", "base64", "base64"), 4,
        HTML_TARGETS + TEXT_TARGETS, HTML_UNCHANGED,
    ),
    "us-ascii 7bit": Case(alternative("us-ascii", "Alice", "7bit", "7bit"), 4, HTML_TARGETS + TEXT_TARGETS,
                          HTML_UNCHANGED),
    "mixed with attachments": Case(mixed_with_attachments(), 4, HTML_TARGETS + TEXT_TARGETS, HTML_UNCHANGED),
    "foreign wrappers": Case(
        wrapped_links(), 4,
        ["https://datatracker.ietf.org/doc/html/rfc6238",
         "https://www.kernel.org/doc/html/latest/process/4.Coding.html#regressions",
         "https://google.com", MIMECAST],
        [],
    ),
}


def as_bytes(msg: EmailMessage, linesep: str) -> bytes:
    return msg.as_bytes(policy=policy.default.clone(linesep=linesep))


def parse(raw: bytes) -> EmailMessage:
    """raw as the standard library reads it (policy.default: EmailMessage objects)."""
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_parts(raw: bytes) -> list[tuple[EmailMessage, str]]:
    """(part, decoded text) of every text part the standard library finds, attachments included."""
    parsed = parse(raw)
    assert not parsed.defects
    parts = []
    for part in parsed.walk():
        assert isinstance(part, EmailMessage)
        assert not part.defects, part.defects
        if part.get_content_maintype() == "text":
            parts.append((part, part.get_content()))
    return parts


def header_block(raw: bytes) -> bytes:
    return re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]


def body_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\n")


@pytest.mark.parametrize("linesep", ["\r\n", "\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("name", list(CASES))
def test_rewrite_message(name: str, linesep: str) -> None:
    case = CASES[name]
    raw = as_bytes(case.msg, linesep)
    result = rewrite_message(raw, SETTINGS, origin_ip="203.0.113.9")
    assert (result.error, result.links, result.changed) == (None, case.links, True)
    # Headers are untouched, byte for byte; so is every part that was not rewritten.
    assert header_block(result.data) == header_block(raw)
    before, after = text_parts(raw), text_parts(result.data)
    assert len(before) == len(after)
    click_links: list[str] = []
    for (old_part, old_text), (new_part, new_text) in zip(before, after, strict=True):
        assert new_part.get_content_charset() == old_part.get_content_charset()
        assert new_part.get("Content-Transfer-Encoding") == old_part.get("Content-Transfer-Encoding")
        if old_part.is_attachment():
            assert new_text == old_text
        elif old_part.get_content_subtype() == "html":
            old_hrefs, new_hrefs = hrefs(old_text), hrefs(new_text)
            kept = [h for h in old_hrefs if h in case.unchanged]
            assert [h for h in new_hrefs if h in case.unchanged] == kept
            click_links += [h for h in new_hrefs if h not in case.unchanged]
            assert without_links(new_text) == without_links(old_text)
        else:
            found = re.findall(rf"https://{re.escape(CLICK_HOST)}/v1/\S+?(?=[.,]?\s)", new_text)
            click_links += found
    assert sorted(_inner(url) for url in click_links) == sorted(case.targets)
    decoded = [decode(url, KEY, CLICK_HOST) for url in click_links]
    for d in decoded:
        assert d.context is not None
        assert d.context.origin_ip == "203.0.113.9"
        assert d.context.message_id_hash == hash_message_id("<m1@mail.example>")
        assert d.context.recipient == hash_recipient("alice@corp.example", KEY)
    for line in body_lines(result.data):
        assert len(line.rstrip(b"\r")) <= 998
    _check_encoded_line_lengths(result.data)
    # Rewriting again changes nothing: every link is ours already.
    again = rewrite_message(result.data, SETTINGS, origin_ip="203.0.113.9")
    assert (again.data, again.links, again.changed, again.error) == (result.data, 0, False, None)


def _inner(url: str) -> str:
    """The link inside a click link: the target, or the vendor link kept when its target is opaque."""
    verified = decode(url, KEY, CLICK_HOST)
    return verified.target if verified.target is not None else url.split("/", 5)[5]


def _check_encoded_line_lengths(raw: bytes) -> None:
    """Every quoted-printable and base64 body line of every part is at most 76 characters."""
    parsed = BytesParser(policy=policy.compat32).parsebytes(raw)
    for part in parsed.walk():
        encoding = (part.get("Content-Transfer-Encoding") or "").lower()
        if part.is_multipart() or encoding not in ("quoted-printable", "base64"):
            continue
        payload = part.get_payload()
        assert isinstance(payload, str)
        for line in payload.splitlines():
            assert len(line) <= 76, (encoding, line)


def test_rewrite_message_attachments_stay_byte_identical() -> None:
    raw = as_bytes(mixed_with_attachments(), "\r\n")
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert result.links == 4
    boundary = re.search(rb'boundary="([^"]+)"', raw)
    assert boundary is not None
    old_parts = raw.split(b"--" + boundary.group(1))
    new_parts = result.data.split(b"--" + boundary.group(1))
    assert len(old_parts) == len(new_parts) == 7  # preamble, alternative, 4 attachments, epilogue
    assert old_parts[2:] == new_parts[2:]
    assert old_parts[0] == new_parts[0]
    assert old_parts[1] != new_parts[1]


@pytest.mark.parametrize(
    ("mode", "to", "argument", "expected"),
    [
        ("hashed", "Alice <Alice@Corp.Example>", None, hash_recipient("alice@corp.example", KEY)),
        ("plain", "Alice <alice@corp.example>, bob@corp.example", None, "alice@corp.example"),
        ("plain", "Alice <alice@corp.example>", "carol@corp.example", "carol@corp.example"),
        ("none", "Alice <alice@corp.example>", None, None),
        ("plain", "undisclosed-recipients:;", None, None),
    ],
)
def test_rewrite_message_context(
    mode: RecipientMode, to: str, argument: str | None, expected: str | None
) -> None:
    msg = EmailMessage()
    _headers(msg, to=to)
    msg.set_content("https://a.example/")
    settings = SETTINGS._replace(recipient_mode=mode)
    result = rewrite_message(as_bytes(msg, "\n"), settings, origin_ip="2001:db8::1", recipient=argument)
    link = re.search(rb"https://\S+", result.data)
    assert link is not None
    context = decode(link.group().decode(), KEY, CLICK_HOST).context
    assert isinstance(context, ClickContext)
    assert (context.recipient, context.origin_ip) == (expected, "2001:db8::1")


def test_rewrite_message_switches_long_7bit_lines_to_quoted_printable() -> None:
    msg = EmailMessage()
    _headers(msg)
    msg.set_content(f'<p>{"x" * 900} <a href="https://a.example/">a</a></p>\n', subtype="html", cte="7bit")
    raw = as_bytes(msg, "\r\n")
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert result.error is None and result.links == 1
    parsed = parse(result.data)
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    assert click_target(hrefs(parsed.get_content())[0]) == "https://a.example/"
    _check_encoded_line_lengths(result.data)
    # Only that header line changed among the headers.
    old_lines, new_lines = header_block(raw).split(b"\r\n"), header_block(result.data).split(b"\r\n")
    assert [line for line in old_lines if line not in new_lines] == [b"Content-Transfer-Encoding: 7bit"]


def test_rewrite_message_leaves_signed_parts_alone() -> None:
    msg = EmailMessage()
    _headers(msg)
    msg.set_content("signed: https://a.example/")
    msg.add_attachment(b"0\x82signature", maintype="application", subtype="pkcs7-signature")
    msg.replace_header("Content-Type", msg.get_content_type().replace("mixed", "signed"))
    raw = as_bytes(msg, "\r\n")
    assert b"multipart/signed" in raw
    assert rewrite_message(raw, SETTINGS, origin_ip=None) == (raw, 0, False, None)


def _broken_messages() -> dict[str, bytes]:
    good = as_bytes(alternative("utf-8", "Alice", "quoted-printable", "base64"), "\r\n")
    boundary = re.search(rb'boundary="([^"]+)"', good)
    assert boundary is not None
    bad_base64 = good.replace(b"\r\nSGVsbG8g", b"\r\nSGVs!bG8g", 1)  # "Hello " in base64
    assert bad_base64 != good
    latin1_as_utf8 = as_bytes(alternative("iso-8859-1", "Jürgen", "8bit", "8bit"), "\n").replace(
        b"iso-8859-1", b"utf-8"
    )
    return {
        "truncated multipart": good[: good.rindex(b"--" + boundary.group(1))],
        "truncated inside a part": good[: len(good) // 2],
        "bad base64": bad_base64,
        "undecodable in declared charset": latin1_as_utf8,
        "unknown charset": good.replace(b'charset="utf-8"', b'charset="x-no-such-charset"'),
        "garbage": b"\x00\xff\xfe not a header\r\n\r\nhttps://a.example/\r\n",
        "multipart without boundary": re.sub(rb';\s*boundary="[^"]+"', b"", good, count=1),
    }


@pytest.mark.parametrize(("name", "raw"), list(_broken_messages().items()))
def test_rewrite_message_passes_broken_messages_through(name: str, raw: bytes) -> None:
    result = rewrite_message(raw, SETTINGS, origin_ip="203.0.113.9")
    assert (result.data, result.links, result.changed) == (raw, 0, False)
    assert result.error, name


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"Subject: headers only\r\n",
        b"Subject: no links\r\n\r\njust text\r\n",
        b"Content-Type: image/png\r\n\r\n" + base64.b64encode(b"http://not.text.example/"),
    ],
)
def test_rewrite_message_without_links_is_unchanged(raw: bytes) -> None:
    assert rewrite_message(raw, SETTINGS, origin_ip=None) == (raw, 0, False, None)


def test_rewrite_message_reports_a_bad_origin_instead_of_raising() -> None:
    raw = b"To: a@corp.example\r\n\r\nhttps://a.example/\r\n"
    result = rewrite_message(raw, SETTINGS, origin_ip="not-an-ip")
    assert (result.data, result.links, result.changed) == (raw, 0, False)
    assert result.error is not None and "origin_ip" in result.error


@pytest.mark.parametrize("mode", ["hashed", "plain"])
def test_rewrite_message_raw_8bit_headers(mode: RecipientMode) -> None:
    raw = "To: Jürgen <jürgen@corp.example>\r\nMessage-ID: <ü@x>\r\n\r\nhttps://a.example/\r\n".encode()
    result = rewrite_message(raw, SETTINGS._replace(recipient_mode=mode), origin_ip=None)
    assert (result.error, result.links) == (None, 1)
    link = re.search(rb"https://\S+", result.data)
    assert link is not None
    context = decode(link.group().decode(), KEY, CLICK_HOST).context
    assert context is not None
    assert context.message_id_hash == hash_message_id("<ü@x>")
    expected = "jürgen@corp.example" if mode == "plain" else hash_recipient("jürgen@corp.example", KEY)
    assert context.recipient == expected


# Input that is not text, or charsets and boundaries that are not what they say (fuzz findings) -------


@pytest.mark.parametrize(
    ("url", "read_as"),
    [
        ("http://x.example/\udcff", "http://x.example/\ufffd"),  # a byte that is not UTF-8 (surrogateescape)
        ("http://x.example/\udce2\udc82/y", "http://x.example/\ufffd/y"),  # a cut sequence: one U+FFFD
        ("http://x.example/\ud800", "http://x.example/\ufffd"),  # a surrogate no byte stands for
        ("http://google.example/=3D\udcff", "http://google.example/=3D\ufffd"),  # a wrapper's host word
    ],
)
def test_a_link_holding_lone_surrogates_is_wrapped_as_the_browser_reads_it(url: str, read_as: str) -> None:
    """A page mitmproxy could not decode comes with surrogates and is served as UTF-8: unwrapped, the
    link would be followed with no click-time check; wrapped as read, the check judges where it goes."""
    assert click_target(wrap_url(url, CONTEXT, SETTINGS)) == read_as
    page = f'<a href="{url}">x</a> <a href="https://evil.example/">y</a>'
    html, count = rewrite_html(page, CONTEXT, SETTINGS)
    assert count == 2 and html.count(f'href="https://{CLICK_HOST}/v1/') == 2
    assert not re.search("[\ud800-\udfff]", html)
    text, count = rewrite_text(f"see {url} and https://evil.example/", CONTEXT, SETTINGS)
    assert count == 2 and not re.search("[\ud800-\udfff]", text)


def test_a_link_with_a_lone_surrogate_in_its_host_is_left_as_no_browser_can_follow_it() -> None:
    # U+FFFD is no host a browser looks up: the link goes nowhere, so there is nothing to check.
    assert wrap_url("http://x\udcff.example/", CONTEXT, SETTINGS) == "http://x\udcff.example/"


def test_a_utf7_part_whose_link_decodes_to_a_lone_surrogate_is_rewritten() -> None:
    raw = b"Content-Type: text/plain; charset=utf-7\n\nsee http://x.example/+2AA- and http://evil.example/\n"
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert (result.error, result.links, result.changed) == (None, 2, True)
    targets = [click_target(link.decode()) for link in re.findall(rb"https://click\S+", result.data)]
    assert targets == ["http://x.example/\ufffd", "http://evil.example/"]


@pytest.mark.parametrize(
    "charset",
    [
        "a\x00b",  # codecs.lookup: ValueError
        "rot13", "hex", "base64",  # bytes-to-bytes or text-to-text: no charset
        "idna", "punycode", "unicode_escape", "raw_unicode_escape", "undefined",  # text transformations
    ],
)
def test_a_part_in_a_charset_that_is_no_character_set_is_left_alone_with_a_reason(charset: str) -> None:
    raw = b'Content-Type: text/plain; charset="' + charset.encode() + b'"\n\nsee http://evil.example/\n'
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert (result.data, result.links, result.changed) == (raw, 0, False)
    assert result.error is not None and "unknown charset" in result.error


def test_a_multipart_with_a_utf8_boundary_is_rewritten() -> None:
    boundary = "grenze-ß".encode()
    raw = (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\n\n--" + boundary
           + b"\nContent-Type: text/plain\n\nhttp://evil.example/\n--" + boundary + b"--\n")
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert (result.error, result.links, result.changed) == (None, 1, True)
    assert result.data.count(b"--" + boundary) == 2


@pytest.mark.parametrize("boundary", [b"\xdf", b"x\xff\xfey"])
def test_a_multipart_whose_boundary_is_not_utf8_is_left_alone_with_a_reason(boundary: bytes) -> None:
    # Headers are read as UTF-8: a byte that is not UTF-8 leaves the raw boundary unknown.
    raw = (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\n\n--" + boundary
           + b"\n\nhttp://evil.example/\n--" + boundary + b"--\n")
    result = rewrite_message(raw, SETTINGS, origin_ip=None)
    assert (result.data, result.links, result.changed) == (raw, 0, False)
    assert result.error is not None and "boundary is not UTF-8" in result.error
