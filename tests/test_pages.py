"""Block and warn pages: escaped, self-contained, marked with their action and reference."""

from __future__ import annotations

import base64
import json
import re
import textwrap
from collections.abc import Callable
from html import unescape
from pathlib import Path
from typing import NamedTuple

import pytest
from markupsafe import escape

from clickguard import reasons
from clickguard.decision.verdict import Finding
from clickguard.errors import PolicyError
from clickguard.policy.model import Policy, load_policy
from clickguard.policy.pages import LANGUAGES, PagesConfig, catalogs, image_type, read_catalog
from clickguard.web.pages import (
    Page,
    Viewer,
    accepted_ranges,
    block_page,
    choose_language,
    message_page,
    not_recorded_page,
    viewer,
    warn_page,
)
from tests.harness import REPO, ProxyPool, Response, upstream, wait_until, write_policy

HOSTILE_URL = "http://203.0.113.9/<script>alert(1)</script>?a=\"x\"&b='y'"
FINDINGS = (
    Finding("landing.thingbot", "203.0.113.9 is listed by feed 'bots' (tags: <img src=x onerror=alert(2)>)",
            "bots", ("mirai",), "203.0.113.9"),
    Finding("landing.phishing", "login.example is under the domain example & co"),
)
REF = "a1b2c3d4e5f6"
CONTINUE = "http://clickguard.local/continue?t=abc.def&x=\"1\""

PAGES: dict[str, Callable[[], Page]] = {
    "block": lambda: block_page(HOSTILE_URL, FINDINGS, REF),
    "warn": lambda: warn_page(HOSTILE_URL, FINDINGS, REF, CONTINUE),
    "warn-no-continue": lambda: warn_page(HOSTILE_URL, FINDINGS, REF, None),
}


def _html(page: Page) -> str:
    return page.body.decode("utf-8")


class MarkupError(ValueError):
    """The page is not strictly well-formed HTML."""


class Element(NamedTuple):
    """An element of a page: its tag and its attributes (values unescaped)."""

    tag: str
    attrs: dict[str, str]


_DOCTYPE = "<!doctype html>"
_ATTR = re.compile(r"""\s+([a-z][a-z-]*)(?:=(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_TAG = re.compile(r"""<(/?)([a-z][a-z0-9]*)"""
                  r"""((?:\s+[a-z][a-z-]*(?:=(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*)\s*>""")
# Text and attribute values as the pages escape them: no raw < or >, every & starts a reference.
_ESCAPED = re.compile(r"(?:[^<>&]|&(?:[a-z]+|#[0-9]+|#x[0-9a-f]+);)*")
_VOID = {"meta", "br", "hr", "img", "input", "link"}
_RAW_TEXT = {"style", "script"}  # their text ends only at their own end tag
# What a <p> may hold: a browser closes the paragraph before anything else, breaking the nesting.
_PHRASING = {"a", "b", "code", "em", "i", "small", "span", "strong"}


def strict_elements(html: str) -> list[Element]:
    """The elements of a page, or MarkupError: one root, every tag closed in order, all text escaped."""
    if not html.startswith(_DOCTYPE):
        raise MarkupError("the page does not start with <!doctype html>")
    elements: list[Element] = []
    stack: list[str] = []
    pos = len(_DOCTYPE)
    while pos < len(html):
        if elements and not stack:
            raise MarkupError(f"content after the root element at {pos}: {html[pos:pos + 40]!r}")
        if html[pos] != "<":
            end = html.find("<", pos)
            end = len(html) if end < 0 else end
            if not (stack and stack[-1] in _RAW_TEXT) and not _ESCAPED.fullmatch(html[pos:end]):
                raise MarkupError(f"unescaped text at {pos}: {html[pos:end][:60]!r}")
            pos = end
            continue
        tag = _TAG.match(html, pos)
        if tag is None:
            raise MarkupError(f"not a tag at {pos}: {html[pos:pos + 40]!r}")
        closing, name, attributes = tag.groups()
        if stack and stack[-1] in _RAW_TEXT and (not closing or name != stack[-1]):
            raise MarkupError(f"<{name}> inside <{stack[-1]}>, which holds text only")
        if closing:
            if attributes.strip():
                raise MarkupError(f"attributes on the end tag </{name}>")
            if not stack or stack[-1] != name:
                raise MarkupError(f"</{name}> closes {'<' + stack[-1] + '>' if stack else 'nothing'}")
            stack.pop()
        else:
            if not elements and name != "html":
                raise MarkupError(f"the root element is <{name}>, not <html>")
            if stack and stack[-1] == "p" and name not in _PHRASING:
                raise MarkupError(f"<{name}> inside <p>")
            attrs: dict[str, str] = {}
            for attr in _ATTR.finditer(attributes):
                value = next((v for v in attr.groups()[1:] if v is not None), "")
                if attr[1] in attrs:
                    raise MarkupError(f"<{name}> has the attribute {attr[1]} twice")
                if not _ESCAPED.fullmatch(value):
                    raise MarkupError(f"unescaped value of {attr[1]} on <{name}>: {value!r}")
                attrs[attr[1]] = unescape(value)
            elements.append(Element(name, attrs))
            if name not in _VOID:
                stack.append(name)
        pos = tag.end()
    if stack or not elements:
        raise MarkupError(f"not closed at the end: {', '.join(f'<{t}>' for t in stack) or 'no element'}")
    return elements


GOOD = (_DOCTYPE + '<html lang=en><head><meta charset=utf-8><title>a &amp; b</title><style>p>a{x:"&"}</style>'
        '</head><body><p class="x" id=\'y\'>t <a href="/?a=1&amp;b=2">l</a></p><ul><li>x<div>y</div></li>'
        "</ul></body></html>")


def test_strict_check_accepts_a_well_formed_page() -> None:
    elements = strict_elements(GOOD)
    assert [e.tag for e in elements] == ["html", "head", "meta", "title", "style", "body", "p", "a", "ul",
                                         "li", "div"]
    assert elements[6].attrs == {"class": "x", "id": "y"}
    assert elements[7].attrs == {"href": "/?a=1&b=2"}


@pytest.mark.parametrize(("broken", "error"), [
    (GOOD.replace("<!doctype html>", ""), "does not start with <!doctype html>"),
    (GOOD.replace("</li>", ""), "</ul> closes <li>"),
    (GOOD.replace("</a></p>", "</p></a>"), "</p> closes <a>"),
    (GOOD.replace("</body></html>", "</body></html></p>"), "content after the root element"),
    (GOOD.replace("t <a", "t < <a"), "not a tag at"),
    (GOOD.replace("t <a", "t > <a"), "unescaped text"),
    (GOOD.replace("a &amp; b", "a & b"), "unescaped text"),
    (GOOD.replace("1&amp;b=2", "1&b=2"), "unescaped value of href on <a>"),
    (GOOD.replace('class="x"', 'class="x" class=z'), "<p> has the attribute class twice"),
    (GOOD.replace('href="/?', 'href="/?"'), "not a tag"),
    (GOOD.replace("l</a></p><ul>", "l</a><ul>").replace("</ul></body>", "</ul></p></body>"),
     "<ul> inside <p>"),
    (GOOD.replace("p>a", "p<b>a"), "<b> inside <style>"),
    (GOOD.replace("</li>", "</li class=x>"), "attributes on the end tag </li>"),
    (GOOD.replace("</body></html>", ""), "not closed at the end: <html>, <body>"),
    (_DOCTYPE + "<body></body>", "the root element is <body>"),
])
def test_strict_check_refuses_broken_markup(broken: str, error: str) -> None:
    with pytest.raises(MarkupError, match=re.escape(error)):
        strict_elements(broken)


@pytest.mark.parametrize("name", PAGES)
def test_pages_are_well_formed(name: str) -> None:
    elements = strict_elements(_html(PAGES[name]()))
    assert [e.tag for e in elements[:5]] == ["html", "head", "meta", "meta", "title"]


@pytest.mark.parametrize("name", PAGES)
def test_escapes_url_and_details(name: str) -> None:
    html = _html(PAGES[name]())
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "example &amp; co" in html
    assert "&#34;x&#34;" in html  # Jinja2's autoescape (markupsafe) writes quotes as numeric references


@pytest.mark.parametrize(("name", "action"), [("block", "block"), ("warn", "warn"),
                                               ("warn-no-continue", "warn")])
def test_headers(name: str, action: str) -> None:
    page = PAGES[name]()
    assert page.headers["X-Clickguard-Action"] == action
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Clickguard-Ref"] == REF
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.status == 403


@pytest.mark.parametrize("name", PAGES)
def test_reference_in_body(name: str) -> None:
    assert f'<strong id="ref">{REF}</strong>' in _html(PAGES[name]())


_URL_ATTRIBUTES = {"src", "href", "action", "srcset", "poster", "data", "formaction"}


@pytest.mark.parametrize("name", PAGES)
def test_no_external_resources(name: str) -> None:
    html = _html(PAGES[name]())
    elements = strict_elements(html)
    urls = [value for e in elements for attr, value in e.attrs.items() if attr in _URL_ATTRIBUTES]
    assert urls == ([CONTINUE] if name == "warn" else [])  # only the continue link
    assert not {"script", "iframe", "link", "img", "object", "embed", "form"} & {e.tag for e in elements}
    assert "url(" not in html and "@import" not in html  # nothing loaded from the inline style
    assert HOSTILE_URL not in urls  # the target is never a link


@pytest.mark.parametrize(("continue_url", "has_link"), [(CONTINUE, True), (None, False)])
def test_warn_continue_link(continue_url: str | None, has_link: bool) -> None:
    html = _html(warn_page(HOSTILE_URL, FINDINGS, REF, continue_url))
    assert ('id="continue"' in html) is has_link
    assert ("Continue to the page anyway" in html) is has_link
    if not has_link:
        assert "does not offer to continue" in html


# The plain words for each code, as a reviewer checks them against DESIGN.md's table of codes.
TEXTS = {
    "landing.thingbot": "The site is on a list of infected devices (Thingbots: routers, cameras, DVRs and "
                        "other appliances taken over by botnets) or of servers that spread malware.",
    "origin.thingbot": "The e-mail this link came from was sent through a device known to be infected.",
    "origin.home_line": "The e-mail this link came from was sent straight from a home Internet line, "
                        "the way hijacked routers, cameras and PCs send spam.",
    "origin.unknown_landing": "That infected sender's link leads to a site your organisation does not know.",
    "landing.appliance": "The page is served by a home or office appliance (router, camera, DVR, NAS, TV…), "
                         "not by an ordinary web server.",
    "response.redirect": "The page tries to send your browser somewhere else.",
    "response.drive_by": "The page tries to make your computer download a program.",
    "link.bad_signature": "The protected link has been altered, so where it leads cannot be trusted.",
    "policy.deny": "Your organisation's policy does not allow this site.",
    "check.incomplete": "The site could not be checked completely, and your organisation's policy is to "
                        "stop what cannot be checked.",
    # IT's own feed categories, and a code nothing knows.
    "landing.phishing": "The site is on a reputation list of the category “phishing”.",
    "made.up": "clickguard found: made.up.",
}


@pytest.mark.parametrize(("code", "expected"), TEXTS.items())
def test_reason_text(code: str, expected: str) -> None:
    assert reasons.text(code) == expected


def test_every_known_code_has_its_text_here() -> None:
    assert set(reasons.REASONS) <= TEXTS.keys()


@pytest.mark.parametrize(("code", "expected"), TEXTS.items())
def test_pages_show_each_reason_in_plain_words(code: str, expected: str) -> None:
    html = _html(block_page("http://x.example/", [Finding(code, "the evidence")], REF))
    item = f'<span class="code">{code}</span> {escape(expected)}<div class="detail">the evidence</div>'
    assert f"<li>{item}</li>" in html


def test_every_finding_shown_with_its_reason() -> None:
    html = _html(block_page("http://x.example/", FINDINGS, REF))
    for finding in FINDINGS:
        assert f'<span class="code">{finding.code}</span>' in html
    assert "category “phishing”" in html


# -- languages, branding, IT's templates (policy `pages`) ------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    (None, "en"),
    ("", "en"),
    ("de", "de"),
    ("de-CH, fr;q=0.5", "de"),  # RFC 4647 lookup: de-CH falls back to de
    ("fr;q=0.5, es;q=0.8", "es"),  # the highest q wins, wherever it is written
    ("fr;q=0.5, es;q=0.5", "fr"),  # a tie: the header's order
    ("ja, zh-Hant;q=0.9, *;q=0.1", "en"),  # nothing offered: the default
    ("en;q=0, de;q=0.1", "de"),  # q=0 refuses English
    ("de-AT;q=0, de;q=0.2", "de"),
    ("DE-de", "de"),  # ranges are case-insensitive
    ("fr;Q=0.9, es", "es"),
    ("de;q=1.5, es", "es"),  # a malformed q-value drops that member
    ("de;q=0.1234, es;q=0.1", "es"),  # at most three decimals
    ("<script>, de", "de"),  # not a language range
    ("de ; q = 0.5 , fr ; q=0.4", "de"),  # whitespace around the parts
    ("es-419,es;q=0.9", "es"),
    (",".join(["ja"] * 40) + ",de", "en"),  # only the first 32 members are read
    ("x" * 100_000 + ",de", "en"),  # only the first 4 KiB
])
def test_accept_language_chooses_the_page_language(header: str | None, expected: str) -> None:
    assert choose_language(header, LANGUAGES, "en") == expected


def test_the_default_language_is_the_policys() -> None:
    assert choose_language("ja", LANGUAGES, "fr") == "fr"
    assert accepted_ranges("a;q=0.2, b, c;q=0.5") == [("b", 1.0), ("c", 0.5), ("a", 0.2)]


def test_every_catalog_has_every_string() -> None:
    english = catalogs()["en"]
    folder = REPO / "clickguard" / "web" / "locales"
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(LANGUAGES)
    for language in LANGUAGES:
        raw = read_catalog(folder / f"{language}.json")
        assert raw["page"].keys() == english.page.keys(), language
        assert raw["messages"].keys() == english.messages.keys(), language
        assert all(text.strip() for section in raw.values() for text in section.values()), language
        if language == "en":
            assert raw["reasons"] == {}  # English reason texts are reasons.py's own
            continue
        assert raw["reasons"].keys() == {*reasons.REASONS, "landing.*", "*"}, language
        assert "{name}" in raw["reasons"]["landing.*"] and "{code}" in raw["reasons"]["*"]
        # Really translated: no page string, message or reason left in English.
        assert not {k for k, v in raw["page"].items() if v == english.page[k]}, language
        assert not {k for k, v in raw["messages"].items() if v == k}, language
        assert not {c for c, v in raw["reasons"].items() if c in reasons.REASONS and v == reasons.text(c)}


def _german() -> Viewer:
    return viewer(PagesConfig(), {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})


def test_a_german_block_page() -> None:
    page = block_page(HOSTILE_URL, FINDINGS, REF, _german())
    html = _html(page)
    elements = strict_elements(html)
    assert elements[0] == Element("html", {"lang": "de"})
    assert page.headers["Content-Language"] == "de"
    assert "<title>Von clickguard blockiert</title>" in html
    assert "<h1>Diese Seite wurde blockiert</h1>" in html
    assert "Die Website steht auf einer Liste infizierter Geräte" in html
    assert "Die Website steht auf einer Reputationsliste der Kategorie „phishing“." in html
    assert f'Referenz: <strong id="ref">{REF}</strong>' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html  # the evidence stays as found, escaped


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_in_every_language_is_well_formed(language: str) -> None:
    shown = viewer(PagesConfig(), {"Accept-Language": language})
    pages = [block_page(HOSTILE_URL, FINDINGS, REF, shown), not_recorded_page(HOSTILE_URL, REF, shown),
             warn_page(HOSTILE_URL, FINDINGS, REF, CONTINUE, shown),
             warn_page(HOSTILE_URL, FINDINGS, REF, None, shown)]
    message = message_page("Not found", "clickguard has no page at this address.", REF, viewer=shown)
    for page in [*pages, message]:
        html = _html(page)
        assert strict_elements(html)[0] == Element("html", {"lang": language})
        assert page.headers["Content-Language"] == language
        assert "<script" not in html
        assert (page is message) or "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pages_keep_their_status_and_headers_in_every_language() -> None:
    shown = _german()
    unrecorded = not_recorded_page(HOSTILE_URL, REF, shown)
    assert (unrecorded.status, unrecorded.headers["Retry-After"]) == (503, "60")
    assert "Dieser Besuch konnte nicht protokolliert werden" in _html(unrecorded)
    warn = warn_page(HOSTILE_URL, FINDINGS, REF, CONTINUE, shown)
    assert warn.status == 403 and warn.headers["X-Clickguard-Action"] == "warn"
    assert re.search(r'id="continue" href="([^"]+)"', _html(warn))[1] == escape(CONTINUE)  # type: ignore[index]
    assert ">Trotzdem zur Seite gehen</a>" in _html(warn)
    message = message_page("Not found", "clickguard has no page at this address.", REF, viewer=shown)
    assert "<h1>Nicht gefunden</h1>" in _html(message)
    untranslated = message_page("A new message", "Not in any catalog yet.", REF, viewer=shown)
    assert "<h1>A new message</h1>" in _html(untranslated)  # English until a catalog has it
    for page in (unrecorded, warn, message):
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Content-Security-Policy"] == (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
            "frame-ancestors 'none'")


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND"
       b"\xaeB`\x82")
HOSTILE_NAME = "<script>alert('org')</script> & \"Sons\""


def _load(tmp_path: Path, pages: str, files: dict[str, bytes | str] | None = None) -> Policy:
    """A policy with this `pages:` section (YAML, indented under it) and files beside it."""
    for name, content in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return load_policy(write_policy(tmp_path, "pages:\n" + textwrap.indent(pages, "  "))).policy


def _problems(tmp_path: Path, pages: str, files: dict[str, bytes | str] | None = None) -> str:
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path, pages, files)
    return str(caught.value)


def test_branding_organisation_help_desk_and_logo(tmp_path: Path) -> None:
    policy = _load(tmp_path, f"""\
organisation: {json.dumps(HOSTILE_NAME)}
help_desk: {{email: IT-Help@Example.COM, phone: "+49 (30) 1234-567", url: "https://help.example.com/a?b=1&c=2"}}
logo: logo.png
""", {"logo.png": PNG})
    html = _html(block_page(HOSTILE_URL, FINDINGS, REF, viewer(policy.pages, {})))
    elements = strict_elements(html)
    [img] = [e for e in elements if e.tag == "img"]
    logo = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert img.attrs == {"src": logo, "alt": HOSTILE_NAME}
    links = [(e.attrs["class"], e.attrs["href"]) for e in elements if e.tag == "a"]
    assert links == [("email", "mailto:IT-Help@example.com"), ("phone", "tel:+49301234567"),
                     ("web", "https://help.example.com/a?b=1&c=2")]
    # The organisation's name is IT's text, and still escaped wherever it goes.
    assert "<script>alert" not in html
    assert "<span>&lt;script&gt;alert(&#39;org&#39;)&lt;/script&gt; &amp; &#34;Sons&#34;</span>" in html
    assert policy.pages.watched() == [tmp_path / "logo.png"]


@pytest.mark.parametrize(("pages", "files", "message"), [
    ("help_desk: {url: 'javascript:alert(1)'}", {}, "help_desk.url: must be an http:// or https:// URL"),
    ("help_desk: {url: 'https://user:pw@help.example/'}", {}, "help_desk.url: must be an http:// or https://"),
    ('help_desk: {url: "https://help.example/\\u0000x"}', {}, "help_desk.url: must be an http:// or https://"),
    ("help_desk: {url: 'https://help.example/a b'}", {}, "help_desk.url: must be an http:// or https://"),
    ("help_desk: {email: 'it help@example.com'}", {}, "help_desk.email: must be an e-mail address"),
    ("help_desk: {email: 'it@exa mple.com'}", {}, "help_desk.email: not a valid host name"),
    ("help_desk: {email: 'a@b\"><script>'}", {}, "help_desk.email:"),
    ("help_desk: {phone: 'call us'}", {}, "help_desk.phone: must be a phone number"),
    ("help_desk: {fax: '123'}", {}, "help_desk.fax:"),
    ("organisation: \"two\\nlines\"", {}, "organisation: the organisation's name must be one line"),
    ("logo: logo.svg", {"logo.svg": '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">'
                                    "<script>alert(1)</script></svg>"},
     "logo: SVG is refused (it can carry script)"),
    ("logo: logo.png", {"logo.png": b"GIF87a" + b"\0" * (64 * 1024)}, "logo: the logo"),
    ("logo: logo.png", {"logo.png": b"<html>no image</html>"}, "logo: not a PNG, JPEG, GIF or WebP image"),
    ("logo: missing.png", {}, "logo: cannot read the logo"),
    ("templates: nowhere", {}, "templates: not a folder"),
    ("default_language: nl", {}, "default_language:"),
])
def test_branding_mistakes_are_policy_problems_with_their_line(tmp_path, pages, files, message) -> None:
    problems = _problems(tmp_path, "organisation: Example\n" + pages + "\n", files)
    assert f"policy.yaml:3: pages.{message}" in problems


def test_logo_types_by_their_bytes(tmp_path: Path) -> None:
    assert image_type(PNG) == "image/png"
    assert image_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert image_type(b"GIF89a...") == "image/gif"
    assert image_type(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    policy = _load(tmp_path, "logo: logo.svg.png\n", {"logo.svg.png": b"\xff\xd8\xff\xe0jpeg"})
    assert "src=\"data:image/jpeg;base64," in _html(block_page("http://x.example/", [], REF,
                                                                viewer(policy.pages, {})))


IT_BLOCK = """\
{% extends "base.html" %}
{% block title %}{{ org }}: {{ t.block_title }}{% endblock %}
{% block content %}
<h1>{{ t.block_heading }}</h1>
<p class="it">Call the Example desk. {{ url }}</p>
{% include "findings.html" %}
{% endblock %}
"""


def test_it_templates_replace_the_shipped_ones_by_name(tmp_path: Path) -> None:
    policy = _load(tmp_path, "templates: pages\norganisation: Example\n", {"pages/block.html": IT_BLOCK})
    german = viewer(policy.pages, {"Accept-Language": "de"})
    html = _html(block_page(HOSTILE_URL, FINDINGS, REF, german))
    assert strict_elements(html)[0] == Element("html", {"lang": "de"})
    assert "<title>Example: Von clickguard blockiert</title>" in html
    assert '<p class="it">Call the Example desk. http://203.0.113.9/&lt;script&gt;' in html  # still escaped
    assert "landing.thingbot" in html
    warn = _html(warn_page(HOSTILE_URL, FINDINGS, REF, CONTINUE, german))
    assert "Call the Example desk" not in warn and "Warnung: Diese Seite" in warn  # the shipped warn page
    assert policy.pages.watched() == [tmp_path / "pages", tmp_path / "pages" / "block.html"]


@pytest.mark.parametrize(("template", "message"), [
    ("{% extends 'base.html' %}\n{% block content %}\n{% if %}\n{% endblock %}\n",
     "pages/block.html:3: Expected an expression"),
    ("{% extends 'base.html' %}\n{% block content %}\n<p>\n{{ t.blok_heading }}</p>\n{% endblock %}\n",
     "pages/block.html:4: 'dict object' has no attribute 'blok_heading'"),
    ("{% extends 'base.html' %}\n{% block content %}{{ organisation }}{% endblock %}\n",
     "pages/block.html:2: 'organisation' is undefined"),
    ("{% extends 'base.html' %}\n{% block content %}\n{% include 'footer.html' %}{% endblock %}\n",
     "pages/block.html:3: no template named 'footer.html'"),
    ("{% extends 'base.html' %}\n{% block content %}{{ 1 // 0 }}{% endblock %}\n",
     "pages/block.html:2: integer division or modulo by zero"),
    # The sandbox: a template reaches its values, not Python's internals.
    ("{% extends 'base.html' %}\n{% block content %}{{ url.__class__.__mro__ }}{% endblock %}\n",
     "pages/block.html:2: "),
    ("{% extends 'base.html' %}\n{% block content %}{{ t.update(x=1) }}{% endblock %}\n",
     "pages/block.html:2: "),
])
def test_template_errors_are_policy_problems_with_the_template_line(tmp_path: Path, template: str,
                                                                    message: str) -> None:
    problems = _problems(tmp_path, "templates: pages\n", {"pages/block.html": template})
    assert "policy.yaml:2: pages.templates: template error: " in problems
    assert str(tmp_path / message) in problems


def test_autoescape_stays_on_for_it_templates(tmp_path: Path) -> None:
    # A template that puts the URL in an attribute or a script-looking place still gets it escaped.
    template = ('{% extends "base.html" %}\n{% block content %}<p title="{{ url }}">{{ url }}</p>'
                "{% include 'findings.html' %}{% endblock %}\n")
    policy = _load(tmp_path, "templates: pages\n", {"pages/block.html": template})
    hostile = 'http://x.example/"onmouseover="alert(1)'
    html = _html(block_page(hostile, FINDINGS, REF, viewer(policy.pages, {})))
    [p] = [e for e in strict_elements(html) if e.tag == "p" and "title" in e.attrs]
    assert p.attrs == {"title": 'http://x.example/"onmouseover="alert(1)'}


PROXY_POLICY = """\
feeds:
  - {name: thingbots, format: ip, path: thingbots.txt}
pages:
  templates: pages
  organisation: Example
"""
NAVIGATE = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


def _it_block(text: str) -> str:
    return IT_BLOCK.replace("Call the Example desk.", text)


@pytest.mark.slow
def test_proxy_serves_it_templates_in_the_browsers_language_and_keeps_the_last_good(
        proxy_factory: ProxyPool, tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    template = tmp_path / "pages" / "block.html"
    template.write_text(_it_block("First version."))
    proxy = proxy_factory(PROXY_POLICY, files={"thingbots.txt": "127.0.0.3\n"})
    french = {**NAVIGATE, "Accept-Language": "fr-CA, de;q=0.5"}
    with upstream("127.0.0.3") as listed:
        def page() -> Response:
            return proxy.get(f"{listed.base}/<b>?q=\"x\"", french)

        first = page()
        assert (first.status, first.headers["x-clickguard-action"]) == (403, "block")
        assert first.headers["content-language"] == "fr"
        html = first.text
        assert strict_elements(html)[0] == Element("html", {"lang": "fr"})
        assert "<title>Example: Bloqué par clickguard</title>" in html and "First version." in html
        assert "Le site figure sur une liste d’appareils infectés" in html
        assert "/%3Cb%3E?q=%22x%22" in html  # the URL as the proxy normalised it (escaping: see above)
        assert "img-src data:" in first.headers["content-security-policy"]

        # A broken template: reported with its file and line, the last good pages keep serving.
        template.write_text(_it_block("Second version.").replace("{% endblock %}\n", "{% endblok %}\n", 1))
        proxy.wait_for_log("policy not applied, the last good one keeps serving")
        assert f"pages.templates: template error: {template}:2:" in proxy.log()
        assert "First version." in page().text

        template.write_text(_it_block("Third version."))
        wait_until(lambda: "Third version." in page().text, what="the fixed template in use")
        assert listed.requests == []
