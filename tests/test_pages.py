"""Block and warn pages: escaped, self-contained, marked with their action and reference."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape, unescape
from typing import NamedTuple

import pytest

from clickguard import reasons
from clickguard.decision.verdict import Finding
from clickguard.web.pages import Page, block_page, warn_page

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
    assert "&quot;x&quot;" in html


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
