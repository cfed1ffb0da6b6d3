"""The pages the proxy shows instead of a dangerous one: block and warn.

Each page is self-contained (inline style, no script, no external resource),
shows the URL escaped and never as a link, explains each finding in plain
words, and carries the reference id of its audit record.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import NamedTuple

from clickguard import reasons
from clickguard.decision.verdict import Finding


class Page(NamedTuple):
    """A generated response: status, headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:46rem;margin:3rem auto;background:#fff;border-radius:8px;padding:2rem 2.5rem;
box-shadow:0 1px 4px rgba(0,0,0,.12);border-top:8px solid var(--accent)}
h1{margin:0 0 .5rem;font-size:1.6rem}
code.url{display:block;padding:.6rem .8rem;background:#f0f1f4;border-radius:4px;word-break:break-all;
font-size:.95rem}
ul{padding-left:1.2rem}li{margin:.5rem 0}.detail{color:#4a5263;font-size:.92rem}
.code{font:600 .8rem ui-monospace,monospace;background:#eef;border-radius:3px;padding:0 .3rem}
.ref{color:#4a5263;font-size:.9rem;margin-top:1.5rem}
a.continue{display:inline-block;margin-top:1rem;padding:.55rem 1rem;border:1px solid #8a6d00;
border-radius:4px;color:#5c4800;text-decoration:none;background:#fff8e1}
"""


def _findings_html(findings: Iterable[Finding]) -> str:
    """The list of findings: a plain sentence per reason, with the evidence under it."""
    items = []
    for f in findings:
        items.append(
            f'<li><span class="code">{escape(f.code)}</span> {escape(reasons.text(f.code))}'
            f'<div class="detail">{escape(f.detail)}</div></li>'
        )
    return "<ul>" + "".join(items) + "</ul>" if items else ""


def document(title: str, accent: str, inner: str, *, style: str = "") -> str:
    """A whole HTML document in the proxy's look (inner is HTML; style is added to the common style)."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}{style}</style></head>"
        f'<body><main style="--accent:{accent}">{inner}</main></body></html>'
    )


def _page(action: str, title: str, accent: str, inner: str, ref: str) -> Page:
    """Wrap a page body in the common frame and headers."""
    html = document(title, accent, (
        f'{inner}<p class="ref">Reference: <strong id="ref">{escape(ref)}</strong>. If you think this is '
        "wrong, contact your IT help desk and quote this reference.</p>"
        "<p class=ref>Protected by clickguard.</p>"))
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "X-Clickguard-Action": action,
        "X-Clickguard-Ref": ref,
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "form-action 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return Page(403, headers, html.encode("utf-8"))


def block_page(url: str, findings: Iterable[Finding], ref: str) -> Page:
    """The page shown instead of a blocked URL."""
    inner = (
        "<h1>This page was blocked</h1>"
        "<p>clickguard stopped your browser from opening:</p>"
        f'<code class="url">{escape(url)}</code>'
        "<p>Why:</p>" + _findings_html(findings)
    )
    return _page("block", "Blocked by clickguard", "#b3261e", inner, ref)


def warn_page(url: str, findings: Iterable[Finding], ref: str, continue_url: str | None) -> Page:
    """The page shown before a URL that policy only warns about; continue_url None hides 'continue'."""
    if continue_url is not None:
        action = (f'<p>If you know this page and trust it, you can go on. The decision is '
                  f'recorded.</p><a class="continue" id="continue" href="{escape(continue_url)}">'
                  "Continue to the page anyway</a>")
    else:
        action = "<p>Your organisation's policy does not offer to continue to this page.</p>"
    inner = (
        "<h1>Warning: this page may be dangerous</h1>"
        "<p>You asked to open:</p>"
        f'<code class="url">{escape(url)}</code>'
        "<p>Why clickguard warns you:</p>" + _findings_html(findings) + action
    )
    return _page("warn", "Warning from clickguard", "#c77c00", inner, ref)


def not_recorded_page(url: str, ref: str) -> Page:
    """503 instead of a page whose decision could not be recorded (the policy's audit.on_failure: closed)."""
    inner = (
        "<h1>Not opened: this visit could not be recorded</h1>"
        "<p>You asked to open:</p>"
        f'<code class="url">{escape(url)}</code>'
        "<p>Your organisation records every visit clickguard lets through, and its record cannot "
        "be written right now, so the page was not opened. Try again in a few minutes; if this "
        "keeps happening, contact your IT help desk.</p>"
    )
    page = _page("block", "Not opened by clickguard", "#b3261e", inner, ref)
    return page._replace(status=503, headers={**page.headers, "Retry-After": "60"})


def message_page(title: str, message: str, ref: str, *, action: str = "block") -> Page:
    """A short page for the proxy's own endpoints (an expired continue link, an unknown path)."""
    inner = f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"
    return _page(action, title, "#b3261e", inner, ref)
