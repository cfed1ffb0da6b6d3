"""Block and warn pages: escaped, self-contained, marked with their action and reference."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

import pytest

from clickguard.decision.verdict import Finding
from clickguard.web.pages import REASONS, Page, block_page, reason_text, warn_page

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


class _Tags(HTMLParser):
    """The real tags of a page and their URL-valued attributes (not text that looks like them)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs
                      if name in ("src", "href", "action", "srcset", "poster", "data")]


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


@pytest.mark.parametrize("name", PAGES)
def test_no_external_resources(name: str) -> None:
    html = _html(PAGES[name]())
    parsed = _Tags(html)
    assert parsed.urls == ([CONTINUE] if name == "warn" else [])  # only the continue link
    assert not {"script", "iframe", "link", "img", "object", "embed", "form"} & set(parsed.tags)
    assert "url(" not in html and "@import" not in html  # nothing loaded from the inline style
    assert HOSTILE_URL not in parsed.urls  # the target is never a link


@pytest.mark.parametrize(("continue_url", "has_link"), [(CONTINUE, True), (None, False)])
def test_warn_continue_link(continue_url: str | None, has_link: bool) -> None:
    html = _html(warn_page(HOSTILE_URL, FINDINGS, REF, continue_url))
    assert ('id="continue"' in html) is has_link
    assert ("Continue to the page anyway" in html) is has_link
    if not has_link:
        assert "does not offer to continue" in html


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("landing.phishing", "The site is on a reputation list of the category “phishing”."),
        ("landing.thingbot", REASONS["landing.thingbot"]),
        ("policy.deny", "Your organisation's policy does not allow this site."),
        ("made.up", "clickguard found: made.up."),
    ],
)
def test_reason_text(code: str, expected: str) -> None:
    assert reason_text(code) == expected


def test_every_finding_shown_with_its_reason() -> None:
    html = _html(block_page("http://x.example/", FINDINGS, REF))
    for finding in FINDINGS:
        assert f'<span class="code">{finding.code}</span>' in html
    assert "category “phishing”" in html
