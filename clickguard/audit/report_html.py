"""A report as HTML: one self-contained file, or sections for the dashboard, with inline SVG charts.

``report_html`` writes the whole report as one file with inline CSS and SVG, no
script and nothing fetched, that opens from disk or as a mail attachment;
``section_html`` renders one section for the dashboard (styled by ``REPORT_CSS``),
optionally linking hosts and click ids to drill-down pages; ``drilldown_html``
and ``drilldown_page`` render the records ``queries.drilldown`` returned.
Every value from the store is escaped: records carry what the attacker wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from html import escape

from clickguard import reasons
from clickguard.audit.queries import HOUR, Count, Report, ThingbotShare, device_label
from clickguard.audit.wording import (
    range_text,
    record_device,
    record_findings,
    record_time,
    record_who,
    shown_time,
)

SECTIONS = ("totals", "reasons", "users", "thingbots", "continues")  # in the order a report shows them

# link(kind, value): the href of a drill-down page for a "host" or a "click" id, or None.
type Link = Callable[[str, str], str | None]

REPORT_CSS = """
.cg-report{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330}
.cg-report h1{font-size:1.6rem;margin:0 0 .2rem}
.cg-report h2{font-size:1.2rem;margin:0 0 .8rem}
.cg-report h3{font-size:1rem;margin:1.2rem 0 .4rem}
.cg-section{background:#fff;border-radius:8px;padding:1.4rem 1.8rem;margin:1.2rem 0;
box-shadow:0 1px 4px rgba(0,0,0,.12);border-top:6px solid #2f5d8a}
.cg-note{color:#4a5263;font-size:.9rem;margin:.2rem 0 .8rem}
.cg-stats{display:flex;flex-wrap:wrap;gap:.8rem;margin:0 0 1rem;padding:0;list-style:none}
.cg-stats li{background:#f0f1f4;border-radius:6px;padding:.5rem .9rem;min-width:7rem}
.cg-stats b{display:block;font-size:1.4rem}
.cg-report table{border-collapse:collapse;width:100%;font-size:.9rem}
.cg-report th,.cg-report td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e3e5ea;
vertical-align:top}
.cg-report td.n,.cg-report th.n{text-align:right;font-variant-numeric:tabular-nums}
.cg-report code{font:.85rem ui-monospace,monospace;word-break:break-all}
.cg-report .code{font:600 .8rem ui-monospace,monospace;background:#eef;border-radius:3px;padding:0 .3rem}
.cg-report svg{max-width:100%;height:auto;display:block;margin:.4rem 0}
.cg-report svg text{font:12px system-ui,sans-serif;fill:#1d2330}
.cg-key{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin:0 .3rem 0 .8rem;
vertical-align:-.05rem}
.cg-share{font-size:1.3rem;margin:.2rem 0}
.cg-empty{color:#4a5263;font-style:italic}
"""
_PAGE_CSS = "body{margin:0;background:#f4f5f7}main{max-width:64rem;margin:2rem auto;padding:0 1rem}"

_CLICKS, _BLOCKS, _WARNS, _BAR, _THINGBOT, _REST = (
    "#2f5d8a", "#b3261e", "#c77c00", "#5b7fa6", "#b3261e", "#d5d9e0")


# --- building blocks and charts ---------------------------------------------------------------

def _n(value: int) -> str:
    """A count with thousands separators."""
    return f"{value:,}"


def _empty(what: str) -> str:
    """The line shown instead of an empty table or chart."""
    return f'<p class="cg-empty">{escape(what)}</p>'


def _cell(text: str | None, link: Link | None = None, kind: str = "") -> str:
    """A table cell's content, escaped, linked to its drill-down when the caller offers one."""
    if text is None:
        return "–"
    shown = escape(text)
    href = link(kind, text) if link is not None and kind else None
    return f'<a href="{escape(href)}">{shown}</a>' if href else shown


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are already HTML, columns in ``numeric`` right-aligned."""
    def cls(i: int) -> str:
        return ' class="n"' if i in numeric else ""
    header = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _short(text: str, length: int) -> str:
    """Text cut to a chart label's room."""
    return text if len(text) <= length else text[:length - 1] + "…"


def bar_chart(items: Sequence[tuple[str, Sequence[tuple[int, str]]]], *, label_width: int = 230,
              width: int = 720, title: str = "") -> str:
    """Horizontal bars as inline SVG: one row per (label, [(value, colour), …] stacked)."""
    if not items:
        return ""
    row = 24
    top = max(sum(v for v, _ in parts) for _, parts in items) or 1
    room = width - label_width - 70
    out = [f'<svg viewBox="0 0 {width} {row * len(items) + 4}" width="{width}" role="img" '
           f'aria-label="{escape(title)}">']
    for i, (label, parts) in enumerate(items):
        y = i * row + 2
        total = sum(v for v, _ in parts)
        out.append(f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">'
                   f"<title>{escape(label)}</title>{escape(_short(label, label_width // 7))}</text>")
        x = float(label_width)
        for value, colour in parts:
            w = room * value / top
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 8}" '
                           f'fill="{colour}"><title>{escape(label)}: {_n(value)}</title></rect>')
            x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + 15}">{_n(total)}</text>')
    out.append("</svg>")
    return "".join(out)


def timeline_chart(report: Report, *, width: int = 720, height: int = 240) -> str:
    """Clicks (bars), blocks and warns (lines) per hour or day, as inline SVG."""
    buckets = report.timeline
    if not buckets:
        return ""
    left, right, top, bottom = 56, 12, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(b.clicks, b.blocks, b.warns) for b in buckets)
    peak = max(2, peak + peak % 2)  # even, so the middle gridline is a whole number too
    step = plot_w / len(buckets)

    def y(value: int) -> float:
        return top + plot_h - plot_h * value / peak

    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" role="img" '
           'aria-label="clicks, blocks and warns over time">']
    for fraction in (0.0, 0.5, 1.0):  # gridlines with their values
        gy = top + plot_h - plot_h * fraction
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="#e3e5ea"/>'
                   f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">'
                   f"{_n(round(peak * fraction))}</text>")
    for i, b in enumerate(buckets):
        bar_h = plot_h * b.clicks / peak
        when = shown_time(b.start, report.bucket)
        out.append(f'<rect x="{left + i * step + step * 0.1:.1f}" y="{top + plot_h - bar_h:.1f}" '
                   f'width="{max(step * 0.8, 0.5):.1f}" height="{bar_h:.1f}" fill="{_CLICKS}" '
                   f'fill-opacity="0.35"><title>{escape(when)}: {_n(b.clicks)} clicks, {_n(b.blocks)} '
                   f"blocked, {_n(b.warns)} warned</title></rect>")
    for attr, colour in (("blocks", _BLOCKS), ("warns", _WARNS)):
        points = " ".join(f"{left + (i + 0.5) * step:.1f},{y(getattr(b, attr)):.1f}"
                          for i, b in enumerate(buckets))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
    ticks = sorted({0, len(buckets) // 2, len(buckets) - 1})
    for i in ticks:
        anchor = "start" if i == 0 else "end" if i == len(buckets) - 1 else "middle"
        x = left if i == 0 else width - right if i == len(buckets) - 1 else left + (i + 0.5) * step
        out.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="{anchor}">'
                   f"{escape(shown_time(buckets[i].start, report.bucket))}</text>")
    out.append("</svg>")
    return "".join(out)


def share_chart(share: ThingbotShare, *, size: int = 120) -> str:
    """The Thingbot share of clicks as an inline SVG ring."""
    percent = share.percent or 0.0
    # r = 100 / 2π: the ring's length is 100, so the dash length is the percentage itself.
    return (f'<svg viewBox="0 0 42 42" width="{size}" role="img" aria-label="Thingbot share of clicks">'
            f'<circle cx="21" cy="21" r="15.915" fill="none" stroke="{_REST}" stroke-width="6"/>'
            f'<circle cx="21" cy="21" r="15.915" fill="none" stroke="{_THINGBOT}" stroke-width="6" '
            f'stroke-dasharray="{percent:.2f} {100 - percent:.2f}" stroke-dashoffset="25"/>'
            f'<text x="21" y="23.5" text-anchor="middle" style="font-size:7px;font-weight:600">'
            f"{percent:.0f}%</text></svg>")


# --- sections ---------------------------------------------------------------------------------

def _key(colour: str, label: str) -> str:
    """A legend entry."""
    return f'<span class="cg-key" style="background:{colour}"></span>{escape(label)}'


def _section_totals(report: Report, link: Link | None) -> str:
    t = report.totals
    stats = "".join(f"<li><b>{_n(v)}</b>{escape(k)}</li>" for k, v in (
        ("decisions", t.decisions), ("clicks on links", t.clicks), ("blocked", t.blocks),
        ("warned", t.warns), ("continued past a warning", t.continues)))
    per = "hour" if report.bucket == HOUR else "day"
    chart = timeline_chart(report)
    legend = (f'<p class="cg-note">Per {per} (UTC):{_key(_CLICKS, "clicks")}{_key(_BLOCKS, "blocked")}'
              f'{_key(_WARNS, "warned")}</p>') if chart else _empty("No records in this period.")
    return (f"<h2>What happened</h2><p class=\"cg-note\">{escape(range_text(report))}. A decision is "
            "every page request, click and redirect clickguard judged.</p>"
            f'<ul class="cg-stats">{stats}</ul>{legend}{chart}')


def _counts_html(title: str, note: str, counts: Sequence[Count], colour: str,
                 describe: Callable[[str], str] | None = None) -> str:
    """A titled bar chart with a table of counts (and what each name means)."""
    if not counts:
        return f"<h3>{escape(title)}</h3>" + _empty("None in this period.")
    chart = bar_chart([(c.name, [(c.decisions, colour)]) for c in counts], title=title)
    out = f"<h3>{escape(title)}</h3><p class=\"cg-note\">{escape(note)}</p>{chart}"
    if describe is None:  # the chart's labels and counts say it all
        return out
    rows = [[f'<span class="code">{escape(c.name)}</span>', _n(c.decisions), escape(describe(c.name))]
            for c in counts]
    return out + _table(["", "decisions", "what it means"], rows, numeric=(1,))


def _section_reasons(report: Report, link: Link | None) -> str:
    return ("<h2>Why clickguard stepped in</h2>"
            + _counts_html("By reason", "Decisions with each finding (one decision can have several).",
                           report.reasons, _BLOCKS, reasons.text)
            + _counts_html("By feed", "Decisions with a finding from each reputation feed.",
                           report.feeds, _BAR)
            + _counts_html("By tag", "Decisions with a finding carrying each tag (malware family, "
                           "port, how many lists agree…).", report.tags, _BAR))


def _person(user: str | None) -> str:
    """A user as shown; a record that named nobody (no user, recipient or client) reads as a dash."""
    return "–" if user is None else user


def _section_users(report: Report, link: Link | None) -> str:
    out = ["<h2>The most targeted people</h2><p class=\"cg-note\">A person is the signed-in proxy "
           "user, else the mail's recipient (an address, or a 16-digit code when links hide it), "
           "else the computer's address.</p>"]
    out.append(f"<h3>Blocked or warned clicks ({_n(report.targeted_users)} people)</h3>")
    if report.targeted:
        out.append(f'<p class="cg-note">Clicks and redirects that led to a block or a warning.'
                   f'{_key(_BLOCKS, "blocked")}{_key(_WARNS, "warned")}</p>')
        out.append(bar_chart([(_person(u.user), [(u.blocked, _BLOCKS), (u.warned, _WARNS)])
                              for u in report.targeted], title="blocked or warned clicks per person"))
        out.append(_table(["person", "identified by", "blocked", "warned", "total"],
                          [[escape(_person(u.user)), escape(u.kind), _n(u.blocked), _n(u.warned), _n(u.total)]
                           for u in report.targeted], numeric=(2, 3, 4)))
    else:
        out.append(_empty("Nobody in this period."))
    out.append(f"<h3>Clicked mail sent by Thingbots ({_n(report.thingbot_users)} people)</h3>")
    if report.thingbot_targets:
        out.append('<p class="cg-note">Clicks on links in mail whose sender is a known infected '
                   "device.</p>")
        out.append(bar_chart([(_person(u.user), [(u.clicks, _THINGBOT)]) for u in report.thingbot_targets],
                             title="clicks on mail from Thingbots per person"))
    else:
        out.append(_empty("Nobody in this period."))
    return "".join(out)


def _section_thingbots(report: Report, link: Link | None) -> str:
    share = report.thingbot_share
    out = ["<h2>Mail from Thingbots and landings on appliances</h2>"]
    if share.percent is None:
        out.append(_empty("No clicks in this period."))
    else:
        out.append(f'<div style="display:flex;gap:1.2rem;align-items:center">{share_chart(share)}<div>'
                   f'<p class="cg-share"><b>{share.percent:.1f}%</b> of clicked mail was handed over by a '
                   f"Thingbot</p><p class=\"cg-note\">{_n(share.thingbot_clicks)} of {_n(share.clicks)} "
                   "clicks came from mail whose sender is a known infected device (router, camera, "
                   "DVR…), by the reputation feeds.</p></div></div>")
    out.append(f"<h3>Thingbots that sent the mail ({_n(report.thingbot_origin_count)})</h3>")
    if report.thingbot_origins:
        out.append(_table(["sending address", "clicks", "listed by", "tags"],
                          [[f"<code>{escape(o.origin_ip)}</code>", _n(o.clicks), escape(", ".join(o.feeds)),
                            escape(", ".join(o.tags))] for o in report.thingbot_origins], numeric=(1,)))
    else:
        out.append(_empty("None in this period."))
    out.append("<h3>Pages served by appliances, by kind of device</h3>")
    if report.appliance_classes:
        out.append(bar_chart([(a.label, [(a.decisions, _BAR)]) for a in report.appliance_classes],
                             title="responses from appliances by device class"))
        out.append(_table(["device", "responses", "hosts"],
                          [[escape(a.label), _n(a.decisions), _n(a.hosts)] for a in report.appliance_classes],
                          numeric=(1, 2)))
        out.append("<h3>The appliances that answered most</h3>")
        rows = [[f"<code>{_cell(h.host, link, 'host')}</code>", escape(device_label(h.device_class)),
                 _n(h.decisions), escape(shown_time(h.last))] for h in report.appliance_hosts]
        out.append(_table(["host", "device", "responses", "last seen"], rows, numeric=(2,)))
    else:
        out.append(_empty("No appliance answered in this period."))
    return "".join(out)


def _section_continues(report: Report, link: Link | None) -> str:
    out = [f"<h2>People who went on past a warning ({_n(report.continue_users)})</h2>"
           f"<p class=\"cg-note\">{_n(report.totals.continues)} times someone chose \u201ccontinue\u201d "
           "on a warning page. The warning's reference is the one the page showed.</p>"]
    if not report.continues_by_user:
        out.append(_empty("Nobody in this period."))
        return "".join(out)
    out.append(_table(["person", "identified by", "continued", "hosts", "last"],
                      [[escape(_person(c.user)), escape(c.kind), _n(c.continues), _n(c.hosts),
                        escape(shown_time(c.last))] for c in report.continues_by_user], numeric=(2, 3)))
    out.append("<h3>Most recent</h3>")
    out.append(_table(["when", "person", "host", "address", "warning", "click"],
                      [[escape(shown_time(c.ts)), escape(_person(c.user)), _cell(c.host, link, "host"),
                        f"<code>{escape(c.url)}</code>", escape(c.warn_ref or "–"),
                        _cell(c.click_id, link, "click")] for c in report.continues]))
    return "".join(out)


_RENDERERS: dict[str, Callable[[Report, Link | None], str]] = {
    "totals": _section_totals, "reasons": _section_reasons, "users": _section_users,
    "thingbots": _section_thingbots, "continues": _section_continues,
}


def section_html(report: Report, name: str, *, link: Link | None = None) -> str:
    """One section (a name of ``SECTIONS``) as an HTML fragment styled by ``REPORT_CSS``.

    ``link(kind, value)``, when given, returns the href of a drill-down page for a
    ``host`` or a ``click`` id (or None); the standalone report links nowhere.
    """
    render = _RENDERERS.get(name)
    if render is None:
        raise ValueError(f"unknown report section {name!r} (known: {', '.join(SECTIONS)})")
    return f'<section class="cg-section cg-report" id="{name}">{render(report, link)}</section>'


def report_html(report: Report, *, title: str = "clickguard report") -> str:
    """The whole report as one self-contained HTML file: inline CSS and SVG, no script, nothing fetched."""
    sections = "".join(section_html(report, name) for name in SECTIONS)
    if report.group is not None:
        title = f"{title}: group {report.group}"  # escaped by _page
    return _page(title, sections, generated=report.generated_at)


def _page(title: str, body: str, *, generated: float | None = None) -> str:
    """A whole HTML document around a body: the report's CSS inline, nothing else to fetch."""
    when = time.time() if generated is None else generated
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_PAGE_CSS}{REPORT_CSS}</style></head>"
            f'<body><main class="cg-report"><h1>{escape(title)}</h1>'
            f'<p class="cg-note">Generated {escape(shown_time(when))} by clickguard.</p>'
            f"{body}</main></body></html>\n")


# --- drill-down -------------------------------------------------------------------------------

def drilldown_html(records: Sequence[Mapping[str, object]], *, link: Link | None = None) -> str:
    """The records drilldown() returned as an HTML table fragment (styled by REPORT_CSS)."""
    if not records:
        return f'<div class="cg-report">{_empty("No record in the audit store.")}</div>'
    rows = []
    for r in records:
        findings = "".join(f'<div><span class="code">{escape(code)}</span> {escape(detail)}</div>'
                           for code, detail in record_findings(r))
        device = record_device(r)
        hop = r.get("hop")
        event = str(r.get("event")) + (f" {hop}" if isinstance(hop, int) and r.get("event") == "hop" else "")
        if r.get("continued"):
            event += " (continued)"
        click = r.get("click_id")
        rows.append([
            escape(record_time(r)), escape(event), escape(str(r.get("action"))), escape(record_who(r)),
            f"<code>{escape(str(r.get('url')))}</code>"
            + (f"<div>{_cell(str(r['host']), link, 'host')}</div>" if r.get("host") else ""),
            findings + (f"<div>{escape(device)}</div>" if device else ""),
            escape(str(r.get("ref")))
            + (f"<div>click {_cell(str(click), link, 'click')}</div>" if click else ""),
        ])
    return ('<div class="cg-report">'
            + _table(["when", "event", "action", "person", "address", "why", "reference"], rows) + "</div>")


def drilldown_page(records: Sequence[Mapping[str, object]], *, title: str) -> str:
    """A drill-down as one self-contained HTML file, like report_html."""
    return _page(title, drilldown_html(records))
