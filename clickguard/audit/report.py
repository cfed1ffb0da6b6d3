"""Reports over the audit store: what was clicked, what was stopped and why, who is targeted.

Three modules, one concern each, and every public name of them importable from here:

- clickguard.audit.queries reads the store into one ``Report`` (``build_report``)
  and lists the records about a host or a click link (``drilldown``); over several
  nodes' stores, ``report_stores`` and ``drilldown_stores`` give the same, each record once;
- this module renders them as JSON (``report_json``, keys below) and as text for
  the terminal (``report_text``, ``drilldown_text``);
- clickguard.audit.report_html renders them as self-contained HTML with inline SVG
  charts (``report_html``, ``drilldown_page``) and as fragments for the dashboard
  (``section_html`` styled by ``REPORT_CSS``, ``drilldown_html``).

A "user" is the proxy's authenticated user, else the click link's recipient
(a plain address or a 16-hex keyed hash), else the client address.

JSON (``report_json``; keys are stable, times are ISO 8601 UTC, counts integers)::

    {"report": 1,                          format version
     "generated_at": T, "since": T|null, "until": T|null,   the range asked for
     "group": NAME,                        only with --group: the policy group reported on
     "first": T|null, "last": T|null,      the oldest and newest record in it
     "totals": {"decisions", "clicks", "blocks", "warns", "continues",
                "bucket": "hour"|"day",
                "timeline": [{"start": T, "decisions", "clicks", "blocks", "warns"}]},
     "reasons": {"codes": [{"code", "decisions"}],       decisions with a finding of the code
                 "feeds": [{"feed", "decisions"}],       decisions with a finding from the feed
                 "tags":  [{"tag", "decisions"}]},       decisions with a finding with the tag
     "users": {"blocked_or_warned": {"users": N,         people with a blocked or warned click or hop
                                     "top": [{"user", "kind", "blocked", "warned", "total"}]},
               "thingbot_mail": {"users": N,             people who clicked mail sent by a Thingbot
                                 "top": [{"user", "kind", "clicks"}]}},
     "thingbots": {"share": {"clicks", "thingbot_clicks", "percent"},   percent null without clicks
                   "origins": {"count": N,
                               "top": [{"origin_ip", "clicks", "feeds": [..], "tags": [..]}]},
                   "appliances": {"classes": [{"device_class", "label", "decisions", "hosts"}],
                                  "hosts": [{"host", "device_class", "decisions", "last"}]}},
     "continues": {"count": N, "users": N,
                   "by_user": [{"user", "kind", "continues", "hosts", "last"}],
                   "recent": [{"ts", "ref", "user", "kind", "client", "host", "url",
                               "warn_ref", "click_id"}]}}

``kind`` says what identifies a user: ``user``, ``recipient`` or ``client``.
Lists are ordered by their count, largest first, and cut at the report's limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from clickguard.audit import wording
from clickguard.audit.queries import (
    DAY,
    HOUR,
    HOURLY_UP_TO,
    ApplianceClass,
    ApplianceHost,
    Bucket,
    Continue,
    ContinueUser,
    Count,
    Report,
    TargetedUser,
    ThingbotOrigin,
    ThingbotShare,
    ThingbotTarget,
    Totals,
    build_report,
    drilldown,
    drilldown_stores,
    parse_when,
    report_stores,
    store_paths,
    union_store,
)
from clickguard.audit.report_html import (
    REPORT_CSS,
    SECTIONS,
    Link,
    bar_chart,
    drilldown_html,
    drilldown_page,
    report_html,
    section_html,
    share_chart,
    timeline_chart,
)

__all__ = [
    "DAY", "FORMAT_VERSION", "HOUR", "HOURLY_UP_TO", "REPORT_CSS", "SECTIONS",
    "ApplianceClass", "ApplianceHost", "Bucket", "Continue", "ContinueUser", "Count", "Link", "Report",
    "TargetedUser", "ThingbotOrigin", "ThingbotShare", "ThingbotTarget", "Totals",
    "bar_chart", "build_report", "drilldown", "drilldown_html", "drilldown_page", "drilldown_stores",
    "drilldown_text", "iso", "parse_when", "report_dict", "report_html", "report_json", "report_stores",
    "report_text", "section_html", "share_chart", "store_paths", "timeline_chart", "union_store",
]

FORMAT_VERSION = 1


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (seconds), None for None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- JSON -------------------------------------------------------------------------------------

def report_dict(report: Report) -> dict[str, Any]:
    """The report as the JSON object the module docstring documents."""
    t = report.totals
    share = report.thingbot_share
    percent = share.percent
    return {
        "report": FORMAT_VERSION,
        "generated_at": iso(report.generated_at), "since": iso(report.since), "until": iso(report.until),
        **({"group": report.group} if report.group is not None else {}),
        "first": iso(report.first), "last": iso(report.last),
        "totals": {
            "decisions": t.decisions, "clicks": t.clicks, "blocks": t.blocks, "warns": t.warns,
            "continues": t.continues, "bucket": "hour" if report.bucket == HOUR else "day",
            "timeline": [{"start": iso(b.start), "decisions": b.decisions, "clicks": b.clicks,
                          "blocks": b.blocks, "warns": b.warns} for b in report.timeline],
        },
        "reasons": {
            "codes": [{"code": c.name, "decisions": c.decisions} for c in report.reasons],
            "feeds": [{"feed": c.name, "decisions": c.decisions} for c in report.feeds],
            "tags": [{"tag": c.name, "decisions": c.decisions} for c in report.tags],
        },
        "users": {
            "blocked_or_warned": {"users": report.targeted_users, "top": [
                {"user": u.user, "kind": u.kind, "blocked": u.blocked, "warned": u.warned, "total": u.total}
                for u in report.targeted]},
            "thingbot_mail": {"users": report.thingbot_users, "top": [
                {"user": u.user, "kind": u.kind, "clicks": u.clicks} for u in report.thingbot_targets]},
        },
        "thingbots": {
            "share": {"clicks": share.clicks, "thingbot_clicks": share.thingbot_clicks,
                      "percent": None if percent is None else round(percent, 2)},
            "origins": {"count": report.thingbot_origin_count, "top": [
                {"origin_ip": o.origin_ip, "clicks": o.clicks, "feeds": list(o.feeds), "tags": list(o.tags)}
                for o in report.thingbot_origins]},
            "appliances": {
                "classes": [{"device_class": a.device_class, "label": a.label, "decisions": a.decisions,
                             "hosts": a.hosts} for a in report.appliance_classes],
                "hosts": [{"host": h.host, "device_class": h.device_class, "decisions": h.decisions,
                           "last": iso(h.last)} for h in report.appliance_hosts]},
        },
        "continues": {
            "count": t.continues, "users": report.continue_users,
            "by_user": [{"user": c.user, "kind": c.kind, "continues": c.continues, "hosts": c.hosts,
                         "last": iso(c.last)} for c in report.continues_by_user],
            "recent": [{"ts": iso(c.ts), "ref": c.ref, "user": c.user, "kind": c.kind, "client": c.client,
                        "host": c.host, "url": c.url, "warn_ref": c.warn_ref, "click_id": c.click_id}
                       for c in report.continues],
        },
    }


def report_json(report: Report) -> str:
    """The report as one JSON object (keys in the module docstring)."""
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False)


# --- text -------------------------------------------------------------------------------------

def _who(user: str | None, kind: str) -> str:
    """A user as the text report names them (a record that named nobody as a dash)."""
    shown = "–" if user is None else user
    return shown if kind == "user" else f"{shown} ({kind})"


def report_text(report: Report) -> str:
    """A readable summary for the terminal."""
    t = report.totals
    share = report.thingbot_share
    group = f", group {report.group}" if report.group is not None else ""
    lines = [f"clickguard report: {wording.range_text(report)}{group}", "",
             f"decisions {t.decisions:,}   clicks {t.clicks:,}   blocked {t.blocks:,}   "
             f"warned {t.warns:,}   continued past a warning {t.continues:,}"]
    if share.percent is not None:
        lines.append(f"clicked mail sent by Thingbots: {share.percent:.1f}% "
                     f"({share.thingbot_clicks:,} of {share.clicks:,} clicks)")

    def table(title: str, rows: list[tuple[str, str]]) -> None:
        if rows:
            width = min(max(len(k) for k, _ in rows), 60)
            lines.extend(["", title] + [f"  {k[:width]:<{width}}  {v}" for k, v in rows])

    table("Reasons", [(c.name, f"{c.decisions:,}") for c in report.reasons])
    table("Feeds", [(c.name, f"{c.decisions:,}") for c in report.feeds])
    table("Tags", [(c.name, f"{c.decisions:,}") for c in report.tags])
    table(f"Most targeted: blocked or warned clicks ({report.targeted_users:,} users)",
          [(_who(u.user, u.kind), f"{u.total:,} ({u.blocked:,} blocked, {u.warned:,} warned)")
           for u in report.targeted])
    table(f"Clicked mail sent by Thingbots ({report.thingbot_users:,} users)",
          [(_who(u.user, u.kind), f"{u.clicks:,}") for u in report.thingbot_targets])
    table(f"Thingbot origins ({report.thingbot_origin_count:,})",
          [(o.origin_ip, f"{o.clicks:,} clicks; {', '.join(o.feeds)}"
            + (f"; tags {', '.join(o.tags)}" if o.tags else "")) for o in report.thingbot_origins])
    table("Landings on appliances", [(a.label, f"{a.decisions:,} responses from {a.hosts:,} hosts")
                                     for a in report.appliance_classes])
    table(f"Continued past a warning ({report.continue_users:,} users)",
          [(_who(c.user, c.kind),
            f"{c.continues:,} times, {c.hosts:,} hosts, last {wording.shown_time(c.last)}")
           for c in report.continues_by_user])
    return "\n".join(lines) + "\n"


# --- drill-down -------------------------------------------------------------------------------

def drilldown_text(records: Sequence[Mapping[str, object]]) -> str:
    """The records drilldown() returned, one block per record, for the terminal."""
    if not records:
        return "no record in the audit store\n"
    lines = []
    for r in records:
        event = f"{r.get('event')} {r.get('hop')}" if r.get("event") == "hop" else str(r.get("event"))
        lines.append(f"{wording.record_time(r)}  {event}  "
                     f"{r.get('action')}  {wording.record_who(r)}  ref {r.get('ref')}"
                     + (f"  click {r.get('click_id')}" if r.get("click_id") else ""))
        lines.append(f"    {r.get('url')}")
        lines += [f"    {code}: {detail}" if detail else f"    {code}"
                  for code, detail in wording.record_findings(r)]
        device = wording.record_device(r)
        if device:
            lines.append(f"    {device}")
    return "\n".join(lines) + "\n"

