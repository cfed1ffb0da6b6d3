"""Reports over the audit store: what was clicked, what was stopped and why, who is targeted.

``build_report`` runs one GROUP BY per figure against the store (clickguard.store),
each bounded by the time range and served by the store's indexes, so its cost
follows the rows in the range, never a Python loop over them. ``report_json``,
``report_html`` and ``report_text`` render one ``Report``; ``section_html``
renders one section for the dashboard (with ``REPORT_CSS``). ``drilldown`` lists
every record about one host or one click link.

A "user" is the proxy's authenticated user, else the click link's recipient
(a plain address or a 16-hex keyed hash), else the client address.

JSON (``report_json``; keys are stable, times are ISO 8601 UTC, counts integers)::

    {"report": 1,                          format version
     "generated_at": T, "since": T|null, "until": T|null,   the range asked for
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
import math
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from clickguard.audit.store import timestamp
from clickguard.inspection.fingerprints import DeviceClass
from clickguard.web.pages import reason_text

FORMAT_VERSION = 1
SECTIONS = ("totals", "reasons", "users", "thingbots", "continues")
HOUR, DAY = 3600, 86400
# Hourly buckets up to this span, daily beyond: a week of hours is too fine to read.
HOURLY_UP_TO = 3 * DAY



def _who_sql(table: str = "") -> str:
    """SQL for the user a decisions row is about: user, else recipient, else client."""
    return f"coalesce({table}user, {table}recipient, {table}client)"


def _kind_sql(table: str = "") -> str:
    """SQL for which of the three columns _who_sql took."""
    return (f"CASE WHEN {table}user IS NOT NULL THEN 'user' "
            f"WHEN {table}recipient IS NOT NULL THEN 'recipient' ELSE 'client' END")


type Link = Callable[[str, str], str | None]


@dataclass(frozen=True)
class Totals:
    """Counts over the whole range."""

    decisions: int
    clicks: int
    blocks: int
    warns: int
    continues: int


@dataclass(frozen=True)
class Bucket:
    """One hour or day of the timeline (start in Unix seconds)."""

    start: float
    decisions: int
    clicks: int
    blocks: int
    warns: int


@dataclass(frozen=True)
class Count:
    """A reason code, feed or tag and the decisions it appears in."""

    name: str
    decisions: int


@dataclass(frozen=True)
class TargetedUser:
    """A user with blocked or warned clicks and hops."""

    user: str
    kind: str
    blocked: int
    warned: int
    total: int


@dataclass(frozen=True)
class ThingbotTarget:
    """A user who clicked links in mail handed over by a Thingbot."""

    user: str
    kind: str
    clicks: int


@dataclass(frozen=True)
class ThingbotShare:
    """Clicks whose mail came from a Thingbot, over all clicks."""

    clicks: int
    thingbot_clicks: int

    @property
    def percent(self) -> float | None:
        """The share in percent, None without clicks."""
        return 100.0 * self.thingbot_clicks / self.clicks if self.clicks else None


@dataclass(frozen=True)
class ThingbotOrigin:
    """A Thingbot that handed over clicked mail, with the feeds and tags that list it."""

    origin_ip: str
    clicks: int
    feeds: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ApplianceClass:
    """Landings on one class of appliance."""

    device_class: str
    decisions: int
    hosts: int

    @property
    def label(self) -> str:
        """The class in plain words."""
        try:
            return DeviceClass(self.device_class).label
        except ValueError:
            return self.device_class


@dataclass(frozen=True)
class ApplianceHost:
    """One appliance that answered, how often, and when last."""

    host: str
    device_class: str
    decisions: int
    last: float


@dataclass(frozen=True)
class ContinueUser:
    """A user who went on past warnings."""

    user: str
    kind: str
    continues: int
    hosts: int
    last: float


@dataclass(frozen=True)
class Continue:
    """One "continue anyway" past a warning."""

    ts: float
    ref: str
    user: str
    kind: str
    client: str | None
    host: str | None
    url: str
    warn_ref: str | None
    click_id: str | None


@dataclass(frozen=True)
class Report:
    """Every figure of one report, as build_report found them."""

    since: float | None
    until: float | None
    generated_at: float
    first: float | None
    last: float | None
    bucket: int  # HOUR or DAY
    totals: Totals
    timeline: tuple[Bucket, ...]
    reasons: tuple[Count, ...]
    feeds: tuple[Count, ...]
    tags: tuple[Count, ...]
    targeted_users: int
    targeted: tuple[TargetedUser, ...]
    thingbot_users: int
    thingbot_targets: tuple[ThingbotTarget, ...]
    thingbot_share: ThingbotShare
    thingbot_origin_count: int
    thingbot_origins: tuple[ThingbotOrigin, ...]
    appliance_classes: tuple[ApplianceClass, ...]
    appliance_hosts: tuple[ApplianceHost, ...]
    continue_users: int
    continues_by_user: tuple[ContinueUser, ...]
    continues: tuple[Continue, ...]


# --- time ---------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": HOUR, "d": DAY, "w": 7 * DAY}


def parse_when(value: str, now: float | None = None) -> float:
    """ISO 8601 (naive means UTC) or a duration back from now (``90m``, ``24h``, ``7d``) as Unix seconds."""
    text = value.strip()
    match = _DURATION.fullmatch(text)
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _UNITS[match[2]]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected ISO 8601 or a duration such as 24h or 7d, got {value!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (seconds), None for None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _shown_time(ts: float | None, bucket: int = 0) -> str:
    """A time for people: to the minute, or the day alone for daily buckets."""
    if ts is None:
        return "–"
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%d") if bucket == DAY else when.strftime("%Y-%m-%d %H:%M UTC")


# --- queries --------------------------------------------------------------------------------

def _range(since: float | None, until: float | None, column: str = "ts") -> tuple[str, list[float]]:
    """A WHERE clause bounding a ts column (the indexes lead or end with ts), and its parameters."""
    clauses: list[str] = []
    params: list[float] = []
    if since is not None:
        clauses.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        clauses.append(f"{column} < ?")
        params.append(until)
    return " AND ".join(clauses) or "1", params


def _rows(connection: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[Any]:
    """All rows of a query (each query returns at most a report's limit, or one per bucket)."""
    return connection.execute(sql, params).fetchall()


def _names(value: str | None) -> tuple[str, ...]:
    """A JSON array of names (json_group_array) as a sorted tuple."""
    return tuple(sorted(str(v) for v in json.loads(value or "[]") if v is not None))


def build_report(connection: sqlite3.Connection, *, since: float | None = None, until: float | None = None,
                 limit: int = 20) -> Report:
    """Every figure of the report for decisions with since <= ts < until (None: unbounded)."""
    now = time.time()
    where, params = _range(since, until)
    # Two single-aggregate queries: SQLite answers each from one end of the ts index.
    first = connection.execute(f"SELECT min(ts) FROM decisions WHERE {where}", params).fetchone()[0]
    last = connection.execute(f"SELECT max(ts) FROM decisions WHERE {where}", params).fetchone()[0]
    low = since if since is not None else first
    if until is not None:
        high = until
    elif since is not None:  # "since a week ago" runs until now, quiet hours included
        high = max(last or now, now)
    else:
        high = last
    bucket = HOUR if low is None or high is None or high - low <= HOURLY_UP_TO else DAY
    totals, timeline = _counts(connection, since, until, first, last, low, high, bucket)

    # A finding with several tags is several findings rows: count decisions, not rows.
    fwhere, fparams = _range(since, until)
    reasons = tuple(Count(c, n) for c, n in _rows(connection, f"""
        SELECT code, count(DISTINCT decision_id) AS n FROM findings WHERE {fwhere}
        GROUP BY code ORDER BY n DESC, code LIMIT ?""", [*fparams, limit]))
    feeds = tuple(Count(f, n) for f, n in _rows(connection, f"""
        SELECT feed, count(DISTINCT decision_id) AS n FROM findings WHERE feed IS NOT NULL AND {fwhere}
        GROUP BY feed ORDER BY n DESC, feed LIMIT ?""", [*fparams, limit]))
    tags = tuple(Count(t, n) for t, n in _rows(connection, f"""
        SELECT tag, count(DISTINCT decision_id) AS n FROM findings WHERE tag IS NOT NULL AND {fwhere}
        GROUP BY tag ORDER BY n DESC, tag LIMIT ?""", [*fparams, limit]))

    # Windows over the grouped rows give the number of groups (and their sum) before LIMIT cuts.
    # action first: decisions_action finds the blocked and warned rows without a scan.
    rows = _rows(connection, f"""
        SELECT {_who_sql()} AS who, {_kind_sql()}, sum(action = 'block'), sum(action = 'warn'), count(*) AS n,
               count(*) OVER ()
        FROM decisions WHERE action IN ('block', 'warn') AND event IN ('click', 'hop') AND {where}
        GROUP BY who ORDER BY n DESC, who LIMIT ?""", [*params, limit])
    targeted = tuple(TargetedUser(*row[:5]) for row in rows)
    targeted_users = rows[0][5] if rows else 0

    # From the origin.thingbot findings (findings_report) to their decisions, not the other way
    # round: there are fewer Thingbot findings than clicks.
    dwhere, dparams = _range(since, until, "d.ts")
    rows = _rows(connection, f"""
        SELECT {_who_sql("d.")} AS who, {_kind_sql("d.")}, count(*) AS n,
               count(*) OVER (), sum(count(*)) OVER ()
        FROM (SELECT DISTINCT decision_id FROM findings WHERE code = 'origin.thingbot' AND {fwhere}) AS t
             CROSS JOIN decisions AS d ON d.id = t.decision_id
        WHERE d.event = 'click' AND {dwhere}
        GROUP BY who ORDER BY n DESC, who LIMIT ?""", [*fparams, *dparams, limit])
    thingbot_targets = tuple(ThingbotTarget(*row[:3]) for row in rows)
    thingbot_users, thingbot_clicks = (rows[0][3], rows[0][4]) if rows else (0, 0)
    share = ThingbotShare(totals.clicks, thingbot_clicks)

    jwhere, jparams = _range(since, until, "f.ts")
    rows = _rows(connection, f"""
        SELECT d.origin_ip AS ip, count(DISTINCT d.id) AS n,
               json_group_array(DISTINCT f.feed) FILTER (WHERE f.feed IS NOT NULL),
               json_group_array(DISTINCT f.tag) FILTER (WHERE f.tag IS NOT NULL), count(*) OVER ()
        FROM findings AS f CROSS JOIN decisions AS d ON d.id = f.decision_id
        WHERE f.code = 'origin.thingbot' AND {jwhere} AND d.event = 'click' AND d.origin_ip IS NOT NULL
              AND {dwhere}
        GROUP BY ip ORDER BY n DESC, ip LIMIT ?""", [*jparams, *dparams, limit])
    origins = tuple(ThingbotOrigin(ip, n, _names(fs), _names(ts)) for ip, n, fs, ts, _ in rows)
    origin_count = rows[0][4] if rows else 0

    # "device_class IS NOT NULL" lets SQLite use the partial index decisions_device; host is tested
    # after grouping, and grouped second, or SQLite would walk decisions_host for it instead.
    classes = tuple(ApplianceClass(*row) for row in _rows(connection, f"""
        SELECT device_class, count(*) AS n, count(DISTINCT host) FROM decisions
        WHERE device_class IS NOT NULL AND {where} GROUP BY device_class ORDER BY n DESC, device_class""",
        params))
    appliance_hosts = tuple(ApplianceHost(*row) for row in _rows(connection, f"""
        SELECT host, device_class, count(*) AS n, max(ts) FROM decisions
        WHERE device_class IS NOT NULL AND {where} GROUP BY device_class, host
        HAVING host IS NOT NULL ORDER BY n DESC, host LIMIT ?""", [*params, limit]))

    rows = _rows(connection, f"""
        SELECT {_who_sql()} AS who, {_kind_sql()}, count(*) AS n, count(DISTINCT host), max(ts),
               count(*) OVER ()
        FROM decisions WHERE event = 'continue' AND {where}
        GROUP BY who ORDER BY n DESC, who LIMIT ?""", [*params, limit])
    continues_by_user = tuple(ContinueUser(*row[:5]) for row in rows)
    continue_users = rows[0][5] if rows else 0
    continues = tuple(Continue(*row) for row in _rows(connection, f"""
        SELECT ts, ref, {_who_sql()}, {_kind_sql()}, client, host, url, record ->> '$.warn_ref', click_id
        FROM decisions WHERE event = 'continue' AND {where} ORDER BY ts DESC, id DESC LIMIT ?""",
        [*params, limit]))

    return Report(
        since=since, until=until, generated_at=now, first=first, last=last, bucket=bucket,
        totals=totals, timeline=timeline, reasons=reasons, feeds=feeds, tags=tags,
        targeted_users=targeted_users, targeted=targeted, thingbot_users=thingbot_users,
        thingbot_targets=thingbot_targets, thingbot_share=share, thingbot_origin_count=origin_count,
        thingbot_origins=origins, appliance_classes=classes, appliance_hosts=appliance_hosts,
        continue_users=continue_users, continues_by_user=continues_by_user, continues=continues)


# Each series counted over a ts range of its own index: decisions_ts, decisions_event (event, ts)
# and decisions_action (action, ts). A count over an index range never reads a row, where one
# GROUP BY over computed buckets would read and sort every row of the range.
_SERIES = ("", "event = 'click' AND ", "action = 'block' AND ", "action = 'warn' AND ",
           "event = 'continue' AND ")


def _counts(connection: sqlite3.Connection, since: float | None, until: float | None,
            first: float | None, last: float | None, low: float | None, high: float | None,
            bucket: int) -> tuple[Totals, tuple[Bucket, ...]]:
    """The totals over [since, until) and the timeline of buckets from low to high."""
    if first is None or last is None or low is None or high is None:
        return Totals(0, 0, 0, 0, 0), ()
    # The counted range, [lo, hi): the one asked for, or exactly the records there are.
    lo = since if since is not None else first
    hi = until if until is not None else math.nextafter(last, math.inf)
    named = {"lo": lo, "hi": hi}
    totals = Totals(*connection.execute(
        "SELECT " + ", ".join(f"(SELECT count(*) FROM decisions WHERE {s}ts >= :lo AND ts < :hi)"
                              for s in _SERIES), named).fetchone())
    origin = (low // bucket) * bucket  # whole UTC hours or days
    count = int((high - origin) // bucket) + 1
    if until is not None and origin + (count - 1) * bucket >= until:
        count -= 1  # until is exclusive: no bucket that starts there
    # Empty buckets count as zero: a quiet day is a figure too.
    rows = connection.execute(
        "WITH RECURSIVE bucket(i, start) AS (SELECT 0, :origin UNION ALL "
        "SELECT i + 1, start + :width FROM bucket WHERE i + 1 < :count) SELECT start, "
        + ", ".join(f"(SELECT count(*) FROM decisions WHERE {s}ts >= max(start, :lo) "
                    "AND ts < min(start + :width, :hi))" for s in _SERIES[:4])
        + " FROM bucket", {**named, "origin": origin, "width": bucket, "count": max(1, min(count, 10_000))})
    return totals, tuple(Bucket(*row) for row in rows)


def drilldown(connection: sqlite3.Connection, *, host: str | None = None, click_id: str | None = None,
              limit: int = 500) -> list[dict[str, object]]:
    """Every record about one host, or one click link (the click, its hops, continues), newest first."""
    if (host is None) == (click_id is None):
        raise ValueError("drill down by host or by click id, one of them")
    if host is not None:
        sql = "SELECT record FROM decisions WHERE host = ? ORDER BY ts DESC, id DESC LIMIT ?"
        key = host.strip().rstrip(".").lower()
    else:
        sql = "SELECT record FROM decisions WHERE click_id = ? ORDER BY ts DESC, id DESC LIMIT ?"
        key = str(click_id).strip()
    out: list[dict[str, object]] = []
    for (record,) in connection.execute(sql, (key, limit)):
        value = json.loads(record)
        if "\\ud" in record:  # a lone surrogate (bytes mitmproxy could not decode) cannot be printed
            value = _encodable(value)
        if isinstance(value, dict):
            out.append(value)
    return out


def _encodable(value: Any) -> Any:
    """A JSON value with every string encodable as UTF-8 (lone surrogates backslash-escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    return value


# --- JSON -------------------------------------------------------------------------------------

def report_dict(report: Report) -> dict[str, Any]:
    """The report as the JSON object the module docstring documents."""
    t = report.totals
    share = report.thingbot_share
    percent = share.percent
    return {
        "report": FORMAT_VERSION,
        "generated_at": iso(report.generated_at), "since": iso(report.since), "until": iso(report.until),
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

def _who(user: str, kind: str) -> str:
    """A user as the text report names them."""
    return user if kind == "user" else f"{user} ({kind})"


def report_text(report: Report) -> str:
    """A readable summary for the terminal."""
    t = report.totals
    share = report.thingbot_share
    lines = [f"clickguard report: {_range_text(report)}", "",
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
          [(_who(c.user, c.kind), f"{c.continues:,} times, {c.hosts:,} hosts, last {_shown_time(c.last)}")
           for c in report.continues_by_user])
    return "\n".join(lines) + "\n"


def _range_text(report: Report) -> str:
    """The time range of a report in words."""
    low = report.since if report.since is not None else report.first
    high = report.until if report.until is not None else report.last
    if low is None:
        return "no records"
    return f"{_shown_time(low)} to {_shown_time(high)}"


# --- HTML -------------------------------------------------------------------------------------

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
        when = _shown_time(b.start, report.bucket)
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
                   f"{escape(_shown_time(buckets[i].start, report.bucket))}</text>")
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
    return (f"<h2>What happened</h2><p class=\"cg-note\">{escape(_range_text(report))}. A decision is "
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
                           report.reasons, _BLOCKS, reason_text)
            + _counts_html("By feed", "Decisions with a finding from each reputation feed.",
                           report.feeds, _BAR)
            + _counts_html("By tag", "Decisions with a finding carrying each tag (malware family, "
                           "port, how many lists agree…).", report.tags, _BAR))


def _section_users(report: Report, link: Link | None) -> str:
    out = ["<h2>The most targeted people</h2><p class=\"cg-note\">A person is the signed-in proxy "
           "user, else the mail's recipient (an address, or a 16-digit code when links hide it), "
           "else the computer's address.</p>"]
    out.append(f"<h3>Blocked or warned clicks ({_n(report.targeted_users)} people)</h3>")
    if report.targeted:
        out.append(f'<p class="cg-note">Clicks and redirects that led to a block or a warning.'
                   f'{_key(_BLOCKS, "blocked")}{_key(_WARNS, "warned")}</p>')
        out.append(bar_chart([(u.user, [(u.blocked, _BLOCKS), (u.warned, _WARNS)]) for u in report.targeted],
                             title="blocked or warned clicks per person"))
        out.append(_table(["person", "identified by", "blocked", "warned", "total"],
                          [[escape(u.user), escape(u.kind), _n(u.blocked), _n(u.warned), _n(u.total)]
                           for u in report.targeted], numeric=(2, 3, 4)))
    else:
        out.append(_empty("Nobody in this period."))
    out.append(f"<h3>Clicked mail sent by Thingbots ({_n(report.thingbot_users)} people)</h3>")
    if report.thingbot_targets:
        out.append('<p class="cg-note">Clicks on links in mail whose sender is a known infected '
                   "device.</p>")
        out.append(bar_chart([(u.user, [(u.clicks, _THINGBOT)]) for u in report.thingbot_targets],
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
        rows = [[f"<code>{_cell(h.host, link, 'host')}</code>", escape(_class_label(h.device_class)),
                 _n(h.decisions), escape(_shown_time(h.last))] for h in report.appliance_hosts]
        out.append(_table(["host", "device", "responses", "last seen"], rows, numeric=(2,)))
    else:
        out.append(_empty("No appliance answered in this period."))
    return "".join(out)


def _class_label(device_class: str) -> str:
    """A device class in plain words."""
    return ApplianceClass(device_class, 0, 0).label


def _section_continues(report: Report, link: Link | None) -> str:
    out = [f"<h2>People who went on past a warning ({_n(report.continue_users)})</h2>"
           f"<p class=\"cg-note\">{_n(report.totals.continues)} times someone chose \u201ccontinue\u201d "
           "on a warning page. The warning's reference is the one the page showed.</p>"]
    if not report.continues_by_user:
        out.append(_empty("Nobody in this period."))
        return "".join(out)
    out.append(_table(["person", "identified by", "continued", "hosts", "last"],
                      [[escape(c.user), escape(c.kind), _n(c.continues), _n(c.hosts),
                        escape(_shown_time(c.last))] for c in report.continues_by_user], numeric=(2, 3)))
    out.append("<h3>Most recent</h3>")
    out.append(_table(["when", "person", "host", "address", "warning", "click"],
                      [[escape(_shown_time(c.ts)), escape(c.user), _cell(c.host, link, "host"),
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
    return _page(title, sections, generated=report.generated_at)


def _page(title: str, body: str, *, generated: float | None = None) -> str:
    """A whole HTML document around a body: the report's CSS inline, nothing else to fetch."""
    when = time.time() if generated is None else generated
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_PAGE_CSS}{REPORT_CSS}</style></head>"
            f'<body><main class="cg-report"><h1>{escape(title)}</h1>'
            f'<p class="cg-note">Generated {escape(_shown_time(when))} by clickguard.</p>'
            f"{body}</main></body></html>\n")


# --- drill-down -------------------------------------------------------------------------------

def _record_time(record: Mapping[str, object]) -> str:
    """A record's ts for people (it is ISO 8601 already, or Unix seconds)."""
    try:
        return _shown_time(timestamp(record.get("ts")))
    except ValueError:
        return str(record.get("ts"))


def _record_who(record: Mapping[str, object]) -> str:
    """Who a record is about: user, else recipient, else client."""
    for key in ("user", "recipient", "client"):
        value = record.get(key)
        if value:
            return str(value)
    return "–"


def _record_findings(record: Mapping[str, object]) -> list[tuple[str, str]]:
    """(code, detail) of a record's findings, or its bare reason codes."""
    details = record.get("details")
    if isinstance(details, list) and details:
        return [(str(d.get("code")), str(d.get("detail") or "")) for d in details if isinstance(d, dict)]
    reasons = record.get("reasons")
    return [(str(code), "") for code in reasons] if isinstance(reasons, list) else []


def _record_device(record: Mapping[str, object]) -> str:
    """The appliance and payload inspection found, in a few words, or ''."""
    inspection = record.get("inspection")
    if not isinstance(inspection, dict):
        return ""
    parts = []
    fingerprint = inspection.get("fingerprint")
    if isinstance(fingerprint, dict) and fingerprint.get("name"):
        parts.append(f"{fingerprint['name']} ({_class_label(str(fingerprint.get('class')))})")
    payload = inspection.get("payload")
    if isinstance(payload, dict) and payload.get("label"):
        parts.append(f"payload: {payload['label']}")
    return "; ".join(parts)


def drilldown_html(records: Sequence[Mapping[str, object]], *, link: Link | None = None) -> str:
    """The records drilldown() returned as an HTML table fragment (styled by REPORT_CSS)."""
    if not records:
        return f'<div class="cg-report">{_empty("No record in the audit store.")}</div>'
    rows = []
    for r in records:
        findings = "".join(f'<div><span class="code">{escape(code)}</span> {escape(detail)}</div>'
                           for code, detail in _record_findings(r))
        device = _record_device(r)
        hop = r.get("hop")
        event = str(r.get("event")) + (f" {hop}" if isinstance(hop, int) and r.get("event") == "hop" else "")
        if r.get("continued"):
            event += " (continued)"
        click = r.get("click_id")
        rows.append([
            escape(_record_time(r)), escape(event), escape(str(r.get("action"))), escape(_record_who(r)),
            f"<code>{escape(str(r.get('url')))}</code>"
            + (f"<div>{_cell(str(r['host']), link, 'host')}</div>" if r.get("host") else ""),
            findings + (f"<div>{escape(device)}</div>" if device else ""),
            escape(str(r.get("ref")))
            + (f"<div>click {_cell(str(click), link, 'click')}</div>" if click else ""),
        ])
    return ('<div class="cg-report">'
            + _table(["when", "event", "action", "person", "address", "why", "reference"], rows) + "</div>")


def drilldown_text(records: Sequence[Mapping[str, object]]) -> str:
    """The records drilldown() returned, one block per record, for the terminal."""
    if not records:
        return "no record in the audit store\n"
    lines = []
    for r in records:
        hop = r.get("hop")
        lines.append(f"{_record_time(r)}  {r.get('event')}{f' {hop}' if r.get('event') == 'hop' else ''}  "
                     f"{r.get('action')}  {_record_who(r)}  ref {r.get('ref')}"
                     + (f"  click {r.get('click_id')}" if r.get("click_id") else ""))
        lines.append(f"    {r.get('url')}")
        lines += [f"    {code}: {detail}" if detail else f"    {code}"
                  for code, detail in _record_findings(r)]
        device = _record_device(r)
        if device:
            lines.append(f"    {device}")
    return "\n".join(lines) + "\n"


def drilldown_page(records: Sequence[Mapping[str, object]], *, title: str) -> str:
    """A drill-down as one self-contained HTML file, like report_html."""
    return _page(title, drilldown_html(records))
