"""Debian's Chromium, headless, driven by Playwright through the real proxy and trusting its CA.

The browser is the distribution's (`chromium` on PATH), never one Playwright downloads.
It trusts the proxy's CA the way a user's Chromium on Linux does: through an NSS
database in its HOME (`certutil`), not through any option that ignores certificate
errors. Each test gets a browser context of its own that talks to its own proxy, with
loopback addresses proxied too (Chromium bypasses proxies for them unless told not to).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.harness import REPO, Proxy, required_tool

SCREENSHOTS = REPO / "test-output" / "screenshots"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INSTALL_HINT = "apt-get install -y chromium libnss3-tools (.ci/run and `make test` do it)"
# Loopback only. Even with Playwright's switches, Chromium's own services call home: component
# updates and Google accounts directly, form-autofill queries through the page's proxy. No name
# resolves in the browser itself (a proxied request hands its name to the proxy), and the
# services' domains bypass the proxy, so they end there too instead of at clickguard, which
# would look them up and connect.
OFFLINE_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-pings",
]
SERVICE_DOMAINS = ["*.googleapis.com", "*.google.com", "*.gstatic.com", "*.gvt1.com", "*.gvt2.com",
                   "*.googleusercontent.com"]


def proxy_ca(certs: Path) -> Path:
    """The proxy's CA certificate in the certs directory, created by `clickguard ca` if needed."""
    done = subprocess.run([sys.executable, "-m", "clickguard.cli", "ca", "--certs", str(certs)],
                          capture_output=True, text=True, check=True, cwd=certs)
    return Path(done.stdout.strip())


def trusting_home(home: Path, ca_cert: Path) -> Path:
    """A HOME whose NSS database (where Chromium on Linux looks) trusts ca_cert for web sites."""
    certutil = required_tool("certutil", INSTALL_HINT)
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    db = f"sql:{nssdb}"
    subprocess.run([certutil, "-d", db, "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run([certutil, "-d", db, "-A", "-t", "C,,", "-n", "clickguard", "-i", str(ca_cert)],
                   check=True, capture_output=True)
    listed = subprocess.run([certutil, "-d", db, "-L"], check=True, capture_output=True, text=True)
    assert "clickguard" in listed.stdout, listed.stdout
    return home


@contextmanager
def chromium(home: Path) -> Iterator[Browser]:
    """Debian's Chromium, headless, with HOME (and so the NSS database) set to home."""
    executable = required_tool("chromium", INSTALL_HINT)
    env: dict[str, str | float | bool] = {**os.environ, "HOME": str(home),
                                          "XDG_CONFIG_HOME": str(home / ".config"),
                                          "XDG_CACHE_HOME": str(home / ".cache")}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, env=env, headless=True,
                                             args=OFFLINE_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def through(browser: Browser, proxy: Proxy, locale: str = "en-GB") -> BrowserContext:
    """A fresh browser context (own cookies and cache) whose every request goes through proxy.

    The per-context equivalent of `--proxy-server=http://127.0.0.1:PORT
    --proxy-bypass-list=<-loopback>`, so one browser serves proxies of different policies.
    """
    context = browser.new_context(
        proxy={"server": f"http://127.0.0.1:{proxy.port}",
               "bypass": ",".join(["<-loopback>", *SERVICE_DOMAINS])},
        viewport={"width": 1100, "height": 800}, locale=locale)
    context.set_default_timeout(15_000)
    return context


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG image; AssertionError when data is not one."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    assert data[12:16] == b"IHDR", "PNG without IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def screenshot(page: Page, name: str) -> Path:
    """The whole page as test-output/screenshots/<name>.png (overwritten each run), checked."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    path.unlink(missing_ok=True)
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    width, height = png_size(data)
    assert width >= 800 and height >= 400, (width, height)
    # A blank or nearly blank page compresses to a few KB; a rendered page with text does not.
    assert 15_000 < len(data) < 5_000_000, f"{path}: {len(data)} bytes"
    return path
