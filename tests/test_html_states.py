"""Markup read as the browser's HTML parser reads it: the states that hide script and links, and fake them.

Each attack is a page whose navigation a browser performs (or a link it follows) although a
scanner that reads markup less exactly does not see it, or markup that looks like a
navigation to such a scanner although a browser never performs it. Pure-function tests on
`find_navigations` and `rewrite_html`, then the same pages from a camera through the proxy.
"""

from __future__ import annotations

import pytest
from pytest import param

from clickguard.inspection.navigation import Technique, find_navigations
from clickguard.inspection.navigation.markup_scan import MarkupScanner
from clickguard.inspection.navigation.results import StepsSpent
from clickguard.mail.links import click_context, decode
from clickguard.mail.rewrite import RewriteSettings, rewrite_html
from tests.appliances import Route, serve
from tests.harness import HTML, Proxy, ProxyPool

BASE = "http://cam.example/index.html"
EVIL = "http://evil.example/"


def _targets(body: str) -> list[tuple[str | None, bool]]:
    found = find_navigations(status=200, headers=[], body=body.encode(), base_url=BASE,
                             content_type="text/html")
    return [(n.target, n.automatic) for n in found]


def _go(n: int) -> str:
    return f"location.href='{EVIL}{n}'"


# Pages whose navigation runs in a browser; each one was missed by the regex scanner.
HIDDEN = [
    # The first "</script>" is inside a string: the script data double-escaped state keeps going.
    param(f'<script><!--\nvar s = "<script>", t = "</script>";\n{_go(1)}\n--></script>', 1,
          id="script-double-escaped"),
    param(f"<script><!--<script>x</script>--></script><script>{_go(2)}</script>", 2,
          id="script-escaped-then-back"),
    param(f"<svg><style><p><script>{_go(3)}</script>", 3, id="svg-style-is-not-raw-text-p-breaks-out"),
    param(f"<math><style><b><script>{_go(4)}</script></b>", 4, id="math-style-b-breaks-out"),
    param(f'<noscript><p title="</noscript><script>{_go(5)}</script>"></noscript>', 5,
          id="noscript-is-raw-text-with-scripting-on"),
    param(f"<noscript><!--</noscript><script>{_go(6)}</script>--></noscript>", 6,
          id="noscript-comment-is-text"),
    param(f"<svg><plaintext><script>{_go(7)}</script>", 7, id="svg-plaintext-is-no-plaintext"),
    param(f"<svg><title><script>{_go(8)}</script></title></svg>", 8,
          id="svg-title-is-an-html-integration-point"),
    param(f"<svg><script>location.href=&quot;{EVIL}9&quot;</script></svg>", 9, id="svg-script-entities"),
    param(f"<svg><script>location.href=<![CDATA['{EVIL}10']]></script></svg>", 10, id="svg-script-cdata"),
    param(f'</3<p title="><script>{_go(11)}</script>">', 11, id="bogus-comment-end-tag"),
    param(f"<script>/*</ſcript>*/{_go(12)}</script>", 12, id="long-s-is-no-s"),
    param(f"<select><style><script>{_go(13)}</script></style></select>", 13,
          id="select-ignores-style-in-older-browsers"),
    param(f'<svg><title><meta http-equiv="refresh" content="0;url={EVIL}14"></title></svg>', 14,
          id="meta-in-svg-title"),
    param(f"<template shadowrootmode=open><script>{_go(15)}</script></template>", 15,
          id="declarative-shadow-root-is-not-inert"),
    param(f"<div><svg></div><style><!--</style><script>{_go(16)}</script>-->", 16,
          id="end-tag-of-an-ancestor-leaves-svg"),
    param(f"<svg></p><style><!--</style><script>{_go(17)}</script>-->", 17, id="end-p-leaves-svg"),
    param(f"<math><mi><noscript><p title='</noscript><script>{_go(18)}</script>'>", 18,
          id="mathml-text-integration-point"),
]


@pytest.mark.parametrize(("body", "n"), HIDDEN)
def test_hidden_navigation_is_found(body: str, n: int) -> None:
    found = _targets(body)
    assert (f"{EVIL}{n}", True) in found, found


# Markup that looks like a navigation, which a browser never performs.
FAKE = [
    param(f"<template><script>{_go(1)}</script></template>", id="template-contents-are-inert"),
    param(f'<template><meta http-equiv="refresh" content="0;url={EVIL}2"></template>', id="template-meta"),
    param(f"</3 <script>{_go(3)}</script>", id="bogus-comment-swallows-the-script-tag"),
    param(f"<svg><![CDATA[ ><script>{_go(4)}</script> ]]></svg>", id="cdata-in-svg-is-text"),
    param(f"<math><style><!--</style><script>{_go(5)}</script>--></math>", id="math-style-comment"),
    param(f'<title><meta http-equiv="refresh" content="0;url={EVIL}6"></title>', id="title-is-rcdata"),
    param(f"<noscript><script>{_go(7)}</script></noscript>", id="script-in-noscript-never-runs"),
    param(f"<xmp><script>{_go(8)}</script></xmp>", id="xmp"),
    param(f"<!-- --!x> <script>{_go(9)}</script> -->", id="comment-ends-only-at-bang-gt"),
    param(f"<script>x</script foo='><script>'>{_go(10)}</script>", id="end-tag-attributes"),
]


@pytest.mark.parametrize("body", FAKE)
def test_fake_navigation_is_not_reported(body: str) -> None:
    assert _targets(body) == []


def test_meta_refresh_in_noscript_still_counts_for_browsers_without_script() -> None:
    body = f'<noscript><meta http-equiv="refresh" content="0;url={EVIL}x"></noscript>'
    assert _targets(body) == [(f"{EVIL}x", True)]


@pytest.mark.parametrize(
    ("attrs", "target"),
    [
        param("http-equiv=refresh content=0;url=http://a.example/", "http://a.example/", id="unquoted"),
        param('http-equiv="refresh"/content="0;http://a.example/"', "http://a.example/",
              id="slash-separator"),
        param('content="0;url=http://a.example/" content="0;url=http://b.example/" http-equiv=refresh',
              "http://a.example/", id="first-duplicate-wins"),
        param('http-equiv="REFRESH"content="0;url=http://a.example/"', "http://a.example/",
              id="no-space-after-quote"),
        param('http-equiv=refresh content="0;url=http://a.example/&amp;x"', "http://a.example/&x",
              id="entity"),
    ],
)
def test_meta_refresh_attributes(attrs: str, target: str) -> None:
    assert _targets(f"<meta {attrs}>") == [(target, True)]


def test_scanner_is_linear_on_hostile_markup() -> None:
    """Steps, not time: every hostile shape costs a bounded number of steps per character."""
    shapes = [
        "<svg>" + "<g>" * 20_000 + "</x>" * 20_000,
        "<div>" * 20_000 + "<svg>" + "</span>" * 20_000,
        "<select>" + "<style>x</style>" * 10_000,
        "<noscript>" * 10_000 + "</noscript>" * 10_000,
        "<script><!--" + "<script></script>" * 10_000,
        "<template>" * 10_000 + "<svg><desc>" * 5_000 + "</desc>" * 10_000,
        "<svg><script>" + "&amp;<![CDATA[x]]>" * 10_000,
        '<p title="' * 20_000 + "<!--" + "<a" * 20_000,
        "<math><mi>" * 5_000 + "<noscript><p title='</noscript>'>" * 5_000,
    ]
    for text in shapes:
        scanner = MarkupScanner(text, frozenset({"meta", "a"}), auto_events=True, foreign_links=True)
        for _ in scanner:
            pass
        assert scanner.steps <= 4 * len(text), (text[:40], scanner.steps, len(text))


# -- the link rewriter --------------------------------------------------------------------

KEY = bytes(range(32))
SETTINGS = RewriteSettings(click_host="click.test", key=KEY)
CONTEXT = click_context(key=KEY, origin_ip=None, message_id=None, recipient=None, recipient_mode="none",
                        rewritten_at=1_700_000_000)


def _wrapped(document: str) -> list[str | None]:
    """The targets of the click links in the rewritten document, in order."""
    rewritten, count = rewrite_html(document, CONTEXT, SETTINGS)
    targets = []
    start = 0
    while (at := rewritten.find("https://click.test/", start)) >= 0:
        end = min(i for i in (rewritten.find(c, at) for c in "\"' >") if i >= 0)
        targets.append(decode(rewritten[at:end].replace("&amp;", "&"), KEY, "click.test").target)
        start = end
    assert len(targets) == count
    return targets


@pytest.mark.parametrize(
    ("document", "targets"),
    [
        param(f'<svg><a xlink:href="{EVIL}1">x</a></svg>', [f"{EVIL}1"], id="svg-xlink-href"),
        param(f'<svg><a href="{EVIL}1" xlink:href="{EVIL}2">x</a></svg>', [f"{EVIL}1"], id="svg-href-wins"),
        param(f'<math><mrow href="{EVIL}3">x</mrow></math>', [f"{EVIL}3"], id="mathml-href"),
        param(f"<svg><style><a href={EVIL}4>x</a></style></svg>", [f"{EVIL}4"], id="svg-style-is-markup"),
        param(f"<svg><title><a href={EVIL}5>x</a></title></svg>", [f"{EVIL}5"], id="svg-title-is-markup"),
        param(f'<noscript><p title="</noscript><a href={EVIL}6>x</a>"></noscript>', [f"{EVIL}6"],
              id="noscript-with-scripting-on"),
        param(f"<noscript><a href={EVIL}7>x</a></noscript>", [f"{EVIL}7"], id="noscript-without-scripting"),
        param(f'<base href="{EVIL}"><a href="login">x</a>', [f"{EVIL}login"], id="base-href"),
        param(f'<a href="x/y">x</a><base href="{EVIL}d/">', [f"{EVIL}d/x/y"], id="base-after-the-link"),
        param('<a href="//evil.example/8">x</a>', ["https://evil.example/8"], id="scheme-relative"),
        param('<a href="/\\evil.example/9">x</a>', ["https://evil.example/9"], id="slash-backslash"),
        param(f"<template><a href={EVIL}10>x</a></template>", [f"{EVIL}10"], id="template-wrapped-too"),
        param(f"<select><noscript><a href={EVIL}11>x</a></noscript></select>", [f"{EVIL}11"],
              id="select-noscript"),
        param('<base href="//evil.example/b/"><a href="login">x</a>', ["https://evil.example/b/login"],
              id="scheme-relative-base"),
        param('<base href="/\\evil.example/c/"><a href="login">x</a>', ["https://evil.example/c/login"],
              id="slash-backslash-base"),
        param('<base href="https:evil.example/d/"><a href="login">x</a>', ["https://evil.example/d/login"],
              id="base-without-slashes-from-an-http-page"),
        param('<a href="http:evil.example/12">x</a>', ["http://evil.example/12"],
              id="link-without-slashes-from-an-https-page"),
        param(f'<base href="{EVIL}e/"><a href>x</a><a href class=y>y</a>', [f"{EVIL}e/", f"{EVIL}e/"],
              id="href-without-value-goes-to-the-base"),
        param(f'<base href="{EVIL}f/"><a href="http:/g">x</a>', [f"{EVIL}g"],
              id="same-scheme-without-slashes-is-relative-to-the-base"),
    ],
)
def test_links_browsers_follow_are_wrapped(document: str, targets: list[str]) -> None:
    assert _wrapped(document) == targets


@pytest.mark.parametrize(
    "document",
    [
        param(f"<script><!--<script></script><a href={EVIL}></script>", id="script-text"),
        param(f"<svg><![CDATA[ > <a href={EVIL}> ]]></svg>", id="cdata-text"),
        param(f"</3 <a href={EVIL}>", id="bogus-comment"),
        param(f"<svg><area href={EVIL}></svg>", id="svg-area-is-no-link"),
        param(f"<p><a xlink:href={EVIL}>html a has no xlink:href</a>", id="html-xlink"),
        param('<a href="inbox?id=1">', id="relative-without-base"),
        param(f"<textarea></ſcript><a href={EVIL}></textarea>", id="textarea"),
        param('<a href>x</a><a href="">y</a>', id="empty-href-without-base-is-the-document"),
        param('<base href="/inbox/"><a href="msg?id=1">x</a>', id="base-on-the-document-host"),
        param('<base href="http://ev<il.example/"><a href="x">y</a>', id="base-that-does-not-parse"),
    ],
)
def test_text_is_never_rewritten(document: str) -> None:
    assert rewrite_html(document, CONTEXT, SETTINGS) == (document, 0)


# -- through the proxy --------------------------------------------------------------------

CAMERA = [("Server", "Hikvision-Webs"), ("Content-Type", "text/html; charset=utf-8")]


@pytest.fixture
def proxy(shared_proxy: ProxyPool) -> Proxy:
    return shared_proxy("feeds: []\n")


@pytest.mark.parametrize(
    ("host", "body"),
    [
        param("127.0.0.80", b'<html><body><script><!--\nvar s = "<script>", t = "</script>";\n'
                            b"location.href='http://127.0.0.99/x'\n--></script></body></html>",
              id="escaped-script"),
        param("127.0.0.81", b"<html><body><svg><style><p><script>location.href='http://127.0.0.99/x'"
                            b"</script></body></html>", id="svg-breakout"),
        param("127.0.0.82", b'<html><body><noscript><p title="</noscript><script>'
                            b"location.href='http://127.0.0.99/x'</script>\"></noscript></body></html>",
              id="noscript"),
        param("127.0.0.83", b'<html><body><svg><title><meta http-equiv="refresh" '
                            b'content="0;url=http://127.0.0.99/x"></title></svg></body></html>',
              id="meta-in-svg-title"),
    ],
)
def test_camera_page_with_hidden_navigation_is_blocked(proxy: Proxy, host: str, body: bytes) -> None:
    with serve(host, {"/": Route(headers=CAMERA, body=body)}) as camera:
        r = proxy.get(f"{camera.base}/", HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert {"landing.appliance", "response.redirect"} <= set(record["reasons"])
        assert any("127.0.0.99" in str(n["target"]) for n in record["inspection"]["navigations"])


def test_camera_page_with_fake_navigation_passes(proxy: Proxy) -> None:
    """Inert and text-only navigations on a device page are no redirect: the page is delivered."""
    body = (b"<html><body><template><script>location.href='http://127.0.0.99/x'</script></template>"
            b"<svg><![CDATA[ ><script>location.href='http://127.0.0.99/y'</script> ]]></svg></body></html>")
    with serve("127.0.0.84", {"/": Route(headers=CAMERA, body=body)}) as camera:
        r = proxy.get(f"{camera.base}/", HTML)
        assert r.status == 200 and r.body == body


def test_technique_of_svg_script_is_script() -> None:
    found = find_navigations(status=200, headers=[], body=f"<svg><script>{_go(1)}</script></svg>".encode(),
                             base_url=BASE, content_type="text/html")
    assert [(n.technique, n.target) for n in found] == [(Technique.SCRIPT, f"{EVIL}1")]


# -- XHTML and SVG: read by the browser's XML parser ------------------------------------------

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
SVG = 'xmlns="http://www.w3.org/2000/svg"'


def _xml_targets(body: str | bytes, content_type: str | None) -> list[tuple[str | None, bool]]:
    data = body.encode() if isinstance(body, str) else body
    found = find_navigations(status=200, headers=[], body=data, base_url=BASE, content_type=content_type)
    return [(n.target, n.automatic) for n in found]


# Documents whose navigation an XML parser runs, which reading them as HTML misses.
XHTML_TYPE, SVG_TYPE = "application/xhtml+xml", "image/svg+xml"
XML_HIDDEN = [
    param(SVG_TYPE, f"<svg {SVG}><script><![CDATA[location='{EVIL}1']]></script></svg>", 1,
          id="svg-script-cdata"),
    param(XHTML_TYPE, f"<html {XHTML}><body><script>&#108;ocation.href='{EVIL}2'</script></body></html>", 2,
          id="xhtml-script-character-reference"),
    param(XHTML_TYPE, f"<html {XHTML}><head><title><script>{_go(3)}</script></title></head></html>", 3,
          id="xhtml-title-is-no-rcdata"),
    param(XHTML_TYPE, f"<html {XHTML}><body><noscript><script>{_go(4)}</script></noscript></body></html>", 4,
          id="xhtml-noscript-is-nothing-special"),
    param(XHTML_TYPE, f'<html {XHTML}><textarea><meta http-equiv="refresh" content="0;url={EVIL}5"/>'
                      "</textarea></html>", 5, id="xhtml-textarea-is-no-rcdata"),
    param(XHTML_TYPE, f"<!DOCTYPE html [<!ENTITY go \"location='{EVIL}6'\">]>"
                      f"<html {XHTML}><script>&go;</script></html>", 6, id="xhtml-internal-entity"),
    param(XHTML_TYPE, f"<!DOCTYPE html [<!ENTITY s \"&#60;script>location='{EVIL}7'&#60;/script>\">]>"
                      f"<html {XHTML}>&s;</html>", 7, id="xhtml-entity-holding-markup"),
    param(SVG_TYPE, f'<!DOCTYPE svg [<!ENTITY % d "<!ENTITY u \'{EVIL}8\'>"> %d;]>'
                    f"<svg {SVG}><script>location='&u;'</script></svg>", 8,
          id="svg-parameter-entity-declares"),
    param(SVG_TYPE, '<!DOCTYPE svg [<!ATTLIST svg xmlns CDATA #FIXED "http://www.w3.org/2000/svg">]>'
                    f"<svg><script>{_go(9)}</script></svg>", 9, id="svg-namespace-from-the-dtd"),
    param(SVG_TYPE, f'<svg {SVG} xmlns:h="http://www.w3.org/1999/xhtml"><h:script>{_go(10)}</h:script>'
                    "</svg>", 10, id="svg-prefixed-xhtml-script"),
    param(SVG_TYPE, f"<svg {SVG} onload=\"&#108;ocation='{EVIL}11'\"/>", 11,
          id="svg-onload-character-reference"),
    param("text/xml", f"<!--{'x' * 5000}--><root><h:script xmlns:h=\"http://www.w3.org/1999/xhtml\">"
                      f"{_go(12)}</h:script></root>", 12, id="xml-namespace-after-4-kib"),
    param("application/vnd.x+xml", f"<html {XHTML}><script>{_go(13)}</script></html>", 13,
          id="any-plus-xml-type"),
    param(None, f"<?xml version=\"1.0\"?><svg {SVG}><script>location=&apos;{EVIL}14&apos;</script></svg>", 14,
          id="sniffed-xml"),
    param(XHTML_TYPE, f"<html {XHTML}><script><x>a</x>location<!-- -->.href='{EVIL}15'</script></html>", 15,
          id="xhtml-script-text-around-elements-and-comments"),
]


@pytest.mark.parametrize(("content_type", "body", "n"), XML_HIDDEN)
def test_xml_navigation_is_found(content_type: str | None, body: str, n: int) -> None:
    assert (f"{EVIL}{n}", True) in _xml_targets(body, content_type)


def test_xml_in_utf_16_without_bom_is_read() -> None:
    body = f"<?xml version='1.0'?><svg {SVG}><script>{_go(1)}</script></svg>".encode("utf-16-le")
    assert _xml_targets(body, SVG_TYPE) == [(f"{EVIL}1", True)]


# Markup that an HTML reading takes for a navigation, which an XML parser never runs.
XML_FAKE = [
    param(XHTML_TYPE, f"<html><body><script>{_go(1)}</script></body></html>", id="no-namespace"),
    param(XHTML_TYPE, f"<html {XHTML}><SCRIPT>{_go(2)}</SCRIPT></html>", id="names-are-case-sensitive"),
    param(XHTML_TYPE, f"<html {XHTML}><template><script>{_go(3)}</script></template></html>",
          id="template-contents-are-inert"),
    param(XHTML_TYPE, f"<html {XHTML}><script><!--\n{_go(4)}\n--></script></html>",
          id="comment-in-script-is-no-text"),
    param(SVG_TYPE, f"<svg {SVG}><![CDATA[<script>{_go(5)}</script>]]></svg>", id="cdata-is-text"),
    param(XHTML_TYPE, f'<html {XHTML}><meta HTTP-EQUIV="refresh" content="0;url={EVIL}6"/></html>',
          id="attribute-names-are-case-sensitive"),
    param(SVG_TYPE, f'<svg {SVG}><foo:script xmlns:foo="urn:x">{_go(7)}</foo:script></svg>',
          id="script-of-another-namespace"),
]


@pytest.mark.parametrize(("content_type", "body"), XML_FAKE)
def test_xml_fake_navigation_is_not_reported(content_type: str, body: str) -> None:
    assert _xml_targets(body, content_type) == []


def test_html_script_does_not_decode_references() -> None:
    """The converse: in HTML a script's text is raw, so "&#108;ocation" is no location (a syntax error)."""
    body = f"<html><body><script>&#108;ocation.href='{EVIL}1'</script></body></html>"
    assert _xml_targets(body, "text/html") == []
    xhtml = body.replace("<html>", f"<html {XHTML}>")
    assert _xml_targets(xhtml, XHTML_TYPE) == [(f"{EVIL}1", True)]


def test_entity_bomb_is_bounded_and_unread() -> None:
    """A billion laughs stops the reading within the budget, and says so: never silent."""
    declarations = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{k} "{f"&a{k - 1};" * 10}">' for k in range(1, 10))
    body = f"<!DOCTYPE svg [{declarations}]><svg {SVG}><script>&a9;{_go(1)}</script></svg>"
    found = find_navigations(status=200, headers=[], body=body.encode(), base_url=BASE,
                             content_type=SVG_TYPE)
    assert [n.technique for n in found] == [Technique.UNREAD]
    assert "entities" in (found[0].incomplete or "")


def test_xml_scanner_is_linear_on_hostile_markup() -> None:
    shapes = [
        f"<svg {SVG}>" + "<g>" * 20_000 + "</x>" * 20_000,
        f"<svg {SVG}>" + "<a xmlns:p='urn:x'>" * 20_000,
        "<!DOCTYPE x [" + '<!ATTLIST g a CDATA "1">' * 2_000 + f"]><svg {SVG}>" + "<g/>" * 2_000,
        f"<html {XHTML}><script>" + "&amp;<![CDATA[x]]><!---->" * 10_000,
        "<!DOCTYPE x [" + "<!ENTITY % p '<!ENTITY x \"y\">'>%p;" * 5_000 + "]>",
        "<![CDATA[" * 20_000 + "<" * 20_000,
    ]
    for text in shapes:
        scanner = MarkupScanner(text, frozenset({"meta"}), auto_events=True, foreign_links=True, xml=True)
        try:
            for _ in scanner:
                pass
        except StepsSpent:
            pass  # stopped by the expansion bound: the bound is linear too
        assert scanner.steps <= 4 * len(text), (text[:40], scanner.steps, len(text))


XML_PAGES = [
    param("127.0.0.85", "image/svg+xml",
          b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script><![CDATA['
          b"location='http://127.0.0.99/x']]></script></svg>", id="svg-document-cdata-script"),
    param("127.0.0.86", "application/xhtml+xml",
          b'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Login</title></head><body>'
          b"<script>&#108;ocation.href='http://127.0.0.99/x'</script></body></html>",
          id="xhtml-script-character-reference"),
]


@pytest.mark.parametrize(("host", "content_type", "body"), XML_PAGES)
def test_camera_xml_document_with_navigation_is_blocked(proxy: Proxy, host: str, content_type: str,
                                                        body: bytes) -> None:
    headers = [("Server", "Hikvision-Webs"), ("Content-Type", content_type)]
    with serve(host, {"/": Route(headers=headers, body=body)}) as camera:
        r = proxy.get(f"{camera.base}/", HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "block"
        [record] = proxy.audit_of_ref(r.headers["x-clickguard-ref"])
        assert {"landing.appliance", "response.redirect"} <= set(record["reasons"])
        assert any("127.0.0.99" in str(n["target"]) for n in record["inspection"]["navigations"])
