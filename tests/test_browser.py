"""The user-facing pages in a real browser: Debian's headless Chromium through the real proxy.

The tests run `clickguard run` on loopback (one shared by the tests of the plain
policy, one each for the others) and open a browser context each that uses it as
its proxy (loopback included) and trusts its CA through an NSS database, as a
user's Chromium would. What is checked is what the user sees: the rendered page's
visible text, where the browser ends up after a click, and screenshots of the pages
in test-output/screenshots/.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, proxy_ca, screenshot, through, trusting_home
from tests.harness import THINGBOT_ORIGIN, Proxy, ProxyPool, click_link, upstream

LISTED = "127.0.0.3"
expect.set_options(timeout=15_000)  # a loaded 2-core CI machine: generous, and never a sleep
POLICY = """\
feeds:
  - {name: thingbots, format: ip, path: thingbots.txt}
"""
FEED = {"thingbots.txt": f"{LISTED}\n{THINGBOT_ORIGIN}\n"}
# What the pages say about each reason, in the words a user reads.
LISTED_TEXT = ("The site is on a list of infected devices (Thingbots: routers, cameras, DVRs and other "
               "appliances taken over by botnets) or of servers that spread malware.")
ORIGIN_TEXT = "The e-mail this link came from was sent through a device known to be infected."


def html_page(title: str, text: str) -> tuple[int, dict[str, str], bytes]:
    """An upstream route serving a small HTML page (its icon inline: no /favicon.ico request)."""
    body = (f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
            f'<link rel="icon" href="data:,"></head><body><h1>{title}</h1><p>{text}</p></body></html>')
    return 200, {"Content-Type": "text/html; charset=utf-8"}, body.encode()


@pytest.fixture(scope="module")
def browser(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One Chromium for the module, trusting the session's proxy CA."""
    home = trusting_home(tmp_path_factory.mktemp("browser-home"), proxy_ca(certs))
    with chromium(home) as b:
        yield b


@pytest.fixture
def proxy_with(shared_proxy: ProxyPool) -> Callable[[str], Proxy]:
    """A proxy with a policy (its `ip` feed thingbots.txt lists 127.0.0.3 and the Thingbot origin).

    Tests of the same policy share it; each reads only the audit records of its own pages.
    """
    def start(policy: str) -> Proxy:
        return shared_proxy(policy, files=FEED)

    return start


@pytest.fixture
def page_via(browser: Browser) -> Iterator[Callable[[Proxy], Page]]:
    """A new page in a fresh browser context whose requests all go through the given proxy."""
    contexts = []

    def open_page(proxy: Proxy) -> Page:
        context = through(browser, proxy)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def test_https_block_page_as_the_user_sees_it(proxy_with, page_via) -> None:
    proxy = proxy_with(POLICY)
    page = page_via(proxy)
    response = page.goto(f"https://{LISTED}/")  # nothing listens there: blocked before connecting
    assert response is not None
    # The browser accepted the proxy's certificate through its NSS trust: no interstitial, a
    # page whose TLS certificate the proxy's CA issued.
    security = response.security_details()
    assert security is not None and security.get("issuer") == "mitmproxy", security
    assert page.url == f"https://{LISTED}/"
    assert response.status == 403 and response.headers["x-clickguard-action"] == "block"
    expect(page).to_have_title("Blocked by clickguard")
    expect(page.get_by_role("heading", level=1)).to_have_text("This page was blocked")
    text = page.inner_text("body")
    assert "landing.thingbot" in text
    assert LISTED_TEXT in text
    assert f"{LISTED} is listed by feed 'thingbots'" in text
    ref = response.headers["x-clickguard-ref"]
    assert f"Reference: {ref}" in text
    expect(page.locator("#ref")).to_be_visible()
    [record] = [a for a in proxy.audit() if a["ref"] == ref]
    assert (record["action"], record["url"], record["reasons"]) == (
        "block", f"https://{LISTED}/", ["landing.thingbot"])
    screenshot(page, "block")


def test_warn_page_continue_lands_on_the_page(proxy_with, page_via) -> None:
    proxy = proxy_with(POLICY + "actions: {landing.thingbot: warn}\n")
    routes = {"/report": html_page("Quarterly report", "Revenue went up in every region.")}
    with upstream(LISTED, routes) as site:
        page = page_via(proxy)
        target = f"{site.base}/report"
        response = page.goto(target)
        assert response is not None and response.headers["x-clickguard-action"] == "warn"
        expect(page.get_by_role("heading", level=1)).to_have_text("Warning: this page may be dangerous")
        text = page.inner_text("body")
        assert "landing.thingbot" in text and LISTED_TEXT in text
        warn_ref = response.headers["x-clickguard-ref"]
        assert f"Reference: {warn_ref}" in text
        assert site.requests == []
        screenshot(page, "warn")

        page.get_by_role("link", name="Continue to the page anyway").click()
        page.wait_for_url(target)
        expect(page.get_by_role("heading", level=1)).to_have_text("Quarterly report")
        expect(page.locator("body")).to_contain_text("Revenue went up in every region.")
        assert site.requests == ["/report"]
    [record] = [a for a in proxy.audit_of(site.base) if a["event"] == "continue"]
    assert (record["action"], record["url"], record["warn_ref"]) == ("allow", target, warn_ref)
    assert record["reasons"] == ["landing.thingbot"]


def test_click_link_from_thingbot_mail_warns(proxy_with, page_via, certs: Path) -> None:
    proxy = proxy_with(POLICY)
    with upstream("127.0.0.2", {"/invoice": html_page("Invoice", "Amount due: 12 EUR")}) as site:
        page = page_via(proxy)
        link = click_link(certs, f"{site.base}/invoice", THINGBOT_ORIGIN)
        assert link.startswith("https://clickguard.local/v1/")
        response = page.goto(link)  # the click host, served by the proxy itself over TLS
        assert response is not None and response.headers["x-clickguard-action"] == "warn"
        security = response.security_details()
        assert security is not None and security.get("issuer") == "mitmproxy", security
        expect(page.get_by_role("heading", level=1)).to_have_text("Warning: this page may be dangerous")
        text = page.inner_text("body")
        assert "origin.thingbot" in text and ORIGIN_TEXT in text
        assert THINGBOT_ORIGIN in text and f"{site.base}/invoice" in text
        assert site.requests == []  # judged, never fetched
    [record] = [a for a in proxy.audit_of(site.base) if a["event"] == "click"]
    assert record["action"] == "warn" and "origin.thingbot" in record["reasons"]
    assert record["origin_ip"] == THINGBOT_ORIGIN


def test_clean_click_link_lands_on_its_target(proxy_with, page_via, certs: Path) -> None:
    proxy = proxy_with(POLICY)
    routes = {"/reset-password?token=one-time": html_page("Reset your password", "Choose a new one.")}
    with upstream("127.0.0.2", routes) as site:
        page = page_via(proxy)
        target = f"{site.base}/reset-password?token=one-time"
        response = page.goto(click_link(certs, target, "192.0.2.10"))
        assert response is not None and response.status == 200
        assert page.url == target
        expect(page.get_by_role("heading", level=1)).to_have_text("Reset your password")
        assert site.requests == ["/reset-password?token=one-time"]  # once: the user's own request
    click, hop = [a for a in proxy.audit_of(site.base) if a["event"] in ("click", "hop")]
    assert (click["action"], hop["action"], hop["hop"], hop["click_id"]) == (
        "allow", "allow", 1, click["ref"])
    assert click["origin_ip"] == hop["origin_ip"] == "192.0.2.10"


PASSWORD = "correct horse battery staple"


def admin_hash(password: str) -> str:
    """A dashboard password hash as IT makes one: `clickguard admin hash-password`, password on stdin."""
    done = subprocess.run([sys.executable, "-m", "clickguard.cli", "admin", "hash-password"],
                          input=password + "\n", capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_dashboard_shows_the_click_just_made_with_charts(proxy_with, page_via, certs: Path) -> None:
    proxy = proxy_with(POLICY + f"admin:\n  users:\n    admin: {admin_hash(PASSWORD)}\n")
    page = page_via(proxy)
    with upstream("127.0.0.2") as site:
        response = page.goto(click_link(certs, f"{site.base}/invoice", THINGBOT_ORIGIN))
        assert response is not None and response.headers["x-clickguard-action"] == "warn"
    [click] = [a for a in proxy.audit_of(site.base) if a["event"] == "click"]

    page.goto("http://clickguard.local/admin")
    page.wait_for_url("https://clickguard.local/admin/login?next=*")  # to https, not logged in yet
    page.get_by_label("User", exact=True).fill("admin")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    assert page.url == "https://clickguard.local/admin", f"login refused: {page.inner_text('main')}"
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # The click just made: the Thingbot that handed the mail over, and the mail's recipient.
    main = page.locator("main")
    expect(main).to_contain_text(THINGBOT_ORIGIN)
    expect(main).to_contain_text(click["recipient"])

    # Charts: inline SVG, rendered with a size.
    charts = page.locator("main svg")
    expect(charts.first).to_be_visible()
    boxes = [charts.nth(i).bounding_box() for i in range(charts.count())]
    assert boxes and all(b is not None and b["width"] > 0 and b["height"] > 0 for b in boxes), boxes
    assert max(b["width"] * b["height"] for b in boxes if b) > 300 * 100, boxes
    screenshot(page, "dashboard")


def test_block_page_in_the_browsers_language(proxy_with, browser: Browser) -> None:
    """A German browser (its locale de-DE, as Chromium's --lang=de) gets the block page in German, lang=de."""
    proxy = proxy_with(POLICY)
    context = through(browser, proxy, locale="de-DE")  # Chromium sends Accept-Language from it
    try:
        _german_block_page(proxy, context.new_page())
    finally:
        context.close()


def _german_block_page(proxy: Proxy, page: Page) -> None:
    """What a German user sees instead of a listed host."""
    assert page.evaluate("navigator.language") == "de-DE"
    response = page.goto(f"https://{LISTED}/rechnung")
    assert response is not None and response.status == 403
    assert response.headers["x-clickguard-action"] == "block"
    assert response.headers["content-language"] == "de"
    expect(page).to_have_title("Von clickguard blockiert")
    expect(page.get_by_role("heading", level=1)).to_have_text("Diese Seite wurde blockiert")
    assert page.evaluate("document.documentElement.lang") == "de"
    text = page.inner_text("body")
    assert "Die Website steht auf einer Liste infizierter Geräte (Thingbots" in text
    assert f"{LISTED} is listed by feed 'thingbots'" in text  # the evidence, as recorded
    ref = response.headers["x-clickguard-ref"]
    assert f"Referenz: {ref}" in text
    assert LISTED_TEXT not in text and "blocked" not in text
    [record] = [a for a in proxy.audit() if a["ref"] == ref]
    assert (record["action"], record["url"]) == ("block", f"https://{LISTED}/rechnung")
    screenshot(page, "block-de")


# A 2x2 red PNG: the logo a branded page embeds as a data: URI.
LOGO = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a730000001049444154"
                     "789c63f8cfc000440c100a001fee03fd8b5f14d40000000049454e44ae426082")


def test_branded_page_shows_its_inline_logo(proxy_with, page_via, tmp_path: Path) -> None:
    """The logo is embedded as data: and the page's CSP lets the browser show it (img-src data:)."""
    (tmp_path / "logo.png").write_bytes(LOGO)
    proxy = proxy_with(POLICY + f"pages: {{organisation: Example AG, logo: {tmp_path / 'logo.png'},\n"
                                "        help_desk: {email: it@example.com}}\n")
    page = page_via(proxy)
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    response = page.goto(f"https://{LISTED}/")
    assert response is not None and response.status == 403
    logo = page.locator(".brand img")
    expect(logo).to_be_visible()
    assert logo.evaluate("img => img.complete && img.naturalWidth") == 2  # decoded, not blocked
    expect(page.locator(".brand")).to_have_text("Example AG")
    expect(page.get_by_role("link", name="it@example.com")).to_have_attribute("href", "mailto:it@example.com")
    assert not [m for m in messages if "Content Security Policy" in m], messages
