"""The pages the proxy shows instead of a dangerous one: block, warn, not recorded, and short messages.

Each page is a Jinja2 template (clickguard/web/templates, or IT's: policy `pages`, see
clickguard/policy/pages.py) in the language the browser asks for (`Accept-Language`), with
the organisation's branding. Each is self-contained (inline style and logo, no script, no
external resource: the CSP says so), shows the URL escaped and never as a link, explains
each finding in plain words, and carries the reference id of its audit record.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from html import escape
from typing import NamedTuple

from clickguard.decision.verdict import Finding
from clickguard.policy.pages import (
    PagesConfig,
    PageSet,
    PageValues,
    Shown,
    TemplateProblem,
    shipped_pages,
    web_folder,
)

logger = logging.getLogger(__name__)


class Page(NamedTuple):
    """A generated response: status, headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Viewer(NamedTuple):
    """Whom a page is for: the policy's pages and the language chosen for the browser."""

    pages: PageSet
    language: str


# Accept-Language (RFC 9110 12.5.4): language ranges (RFC 4647 2.1) with optional q-values.
_RANGE = re.compile(r"\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_MAX_RANGES = 32  # a browser sends a handful; the rest of a longer header is not read
_MAX_HEADER = 4096


def accepted_ranges(header: str) -> list[tuple[str, float]]:
    """The language ranges of an Accept-Language value, most wanted first (ties: in header order).

    Malformed members are skipped, as RFC 9110 lets a server do; q=0 members are kept (refusals).
    """
    ranges: list[tuple[str, float]] = []
    for member in header[:_MAX_HEADER].split(",", _MAX_RANGES)[:_MAX_RANGES]:
        name, *params = (part.strip() for part in member.split(";"))
        if not _RANGE.fullmatch(name):
            continue
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                weight = float(value.strip()) if _QVALUE.fullmatch(value.strip()) else -1.0
        if weight >= 0:
            ranges.append((name.lower(), weight))
    ranges.sort(key=lambda item: -item[1])  # stable: equal weights keep the header's order
    return ranges


def choose_language(header: str | None, offered: Collection[str], default: str) -> str:
    """The offered language the browser wants most (RFC 4647 3.4 lookup: de-CH falls back to de)."""
    ranges = accepted_ranges(header or "")
    refused = {name for name, weight in ranges if weight == 0}
    for name, weight in ranges:
        tag = name
        while weight > 0 and tag and tag != "*":
            if tag in offered and tag not in refused:
                return tag
            tag = tag.rpartition("-")[0]
    return default


def viewer(config: PagesConfig, headers: Mapping[str, str]) -> Viewer:
    """The viewer of a request: the policy's pages in the language its Accept-Language header asks for."""
    pages = config.pages
    return Viewer(pages, choose_language(headers.get("Accept-Language"), pages.catalogs,
                                         pages.default_language))


def _english() -> Viewer:
    """The shipped pages in English: for callers that know no request."""
    return Viewer(shipped_pages(), "en")


def _render(viewer: Viewer, template: str, values: PageValues) -> str:
    """A page from the viewer's templates; one failing here (checked at load) falls back to the shipped."""
    try:
        return viewer.pages.render(template, viewer.language, values)
    except TemplateProblem as e:
        logger.error("clickguard: page template failed, the shipped one is used: %s", e)
        return shipped_pages().render(template, viewer.language, values)


def _shown(viewer: Viewer, findings: Iterable[Finding]) -> tuple[Shown, ...]:
    """The findings as a page lists them: code, its plain sentence in the page's language, the evidence."""
    catalog = viewer.pages.catalog(viewer.language)
    return tuple(Shown(f.code, catalog.reason(f.code), f.detail) for f in findings)


@functools.cache
def _style() -> str:
    """The pages' common style sheet (the shipped one; IT's templates may include their own)."""
    return (web_folder("templates") / "style.css").read_text(encoding="utf-8")


def document(title: str, accent: str, inner: str, *, style: str = "") -> str:
    """A whole HTML document in the proxy's look (inner is HTML; style is added to the common style).

    For the dashboard, which is English and not IT's to template.
    """
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_style()}{style}</style></head>"
        f'<body><main style="--accent:{accent}">{inner}</main></body></html>'
    )


# What the pages may load: nothing but their inline style and an inline (data:) logo image.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
       "form-action 'none'; frame-ancestors 'none'")


def _page(action: str, html: str, ref: str, viewer: Viewer, status: int = 403) -> Page:
    """A rendered page with the common headers."""
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "X-Clickguard-Action": action,
        "X-Clickguard-Ref": ref,
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Language": viewer.language,
    }
    return Page(status, headers, html.encode("utf-8"))


def block_page(url: str, findings: Iterable[Finding], ref: str, viewer: Viewer | None = None) -> Page:
    """The page shown instead of a blocked URL."""
    viewer = viewer or _english()
    html = _render(viewer, "block.html", PageValues(ref, url, _shown(viewer, findings)))
    return _page("block", html, ref, viewer)


def warn_page(url: str, findings: Iterable[Finding], ref: str, continue_url: str | None,
              viewer: Viewer | None = None) -> Page:
    """The page shown before a URL that policy only warns about; continue_url None hides 'continue'."""
    viewer = viewer or _english()
    html = _render(viewer, "warn.html", PageValues(ref, url, _shown(viewer, findings), continue_url))
    return _page("warn", html, ref, viewer)


def not_recorded_page(url: str, ref: str, viewer: Viewer | None = None) -> Page:
    """503 instead of a page whose decision could not be recorded (the policy's audit.on_failure: closed)."""
    viewer = viewer or _english()
    page = _page("block", _render(viewer, "unrecorded.html", PageValues(ref, url)), ref, viewer, 503)
    return page._replace(headers={**page.headers, "Retry-After": "60"})


def message_page(title: str, message: str, ref: str, *, action: str = "block",
                 viewer: Viewer | None = None) -> Page:
    """A short page for the proxy's own endpoints (an unknown path); English texts the catalogs translate."""
    viewer = viewer or _english()
    catalog = viewer.pages.catalog(viewer.language)
    values = PageValues(ref, heading=catalog.message(title), message=catalog.message(message))
    return _page(action, _render(viewer, "message.html", values), ref, viewer)
