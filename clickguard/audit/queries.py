"""The queries behind reports: the audit store (clickguard.audit.store) read into plain data.

``build_report`` runs one GROUP BY per figure against the store, each bounded by
the time range and served by the store's indexes, so its cost follows the rows
in the range, never a Python loop over them; it returns one ``Report``, which
clickguard.audit.report renders as text and JSON and clickguard.audit.report_html
as HTML. ``drilldown`` lists every record about one host or one click link.

A "user" is the proxy's authenticated user, else the click link's recipient
(a plain address or a 16-hex keyed hash), else the client address; ``kind`` says
which: ``user``, ``recipient`` or ``client``.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickguard.audit import aggregates, store
from clickguard.audit.store import has_groups
from clickguard.vocab import DeviceClass

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


def device_label(device_class: str) -> str:
    """A device class as the store holds it, in plain words (a class this version does not know as is)."""
    try:
        return DeviceClass(device_class).label
    except ValueError:
        return device_class


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

    user: str | None  # None: the records named nobody (no user, recipient or client)
    kind: str
    blocked: int
    warned: int
    total: int


@dataclass(frozen=True)
class ThingbotTarget:
    """A user who clicked links in mail handed over by a Thingbot."""

    user: str | None  # None: the records named nobody (no user, recipient or client)
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
        return device_label(self.device_class)


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

    user: str | None  # None: the records named nobody (no user, recipient or client)
    kind: str
    continues: int
    hosts: int
    last: float


@dataclass(frozen=True)
class Continue:
    """One "continue anyway" past a warning."""

    ts: float
    ref: str
    user: str | None  # None: the records named nobody (no user, recipient or client)
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
    group: str | None = None  # the policy group the report is about; None: everyone


# --- time -------------------------------------------------------------------------------------

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


# --- queries ----------------------------------------------------------------------------------

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


def _scope(since: float | None, until: float | None, group: str | None,
           table: str = "", grouped: bool = True) -> tuple[str, list[object]]:
    """A WHERE clause for decisions rows: the ts range and, when one is asked for, the policy group.

    ``grouped``: the store has the group_name column (a store older than groups, read only,
    has none: no decision of it is any group's).
    """
    where, params = _range(since, until, f"{table}ts")
    if group is None:
        return where, list(params)
    column = f"{table}group_name" if grouped else "NULL"
    return f"{column} = ? AND {where}", [group, *params]


def _findings_scope(since: float | None, until: float | None, group: str | None,
                    table: str = "", grouped: bool = True) -> tuple[str, list[object]]:
    """A WHERE clause for findings rows: the ts range and, with a group, only its decisions' findings."""
    where, params = _range(since, until, f"{table}ts")
    if group is None:
        return where, list(params)
    inner, inner_params = _scope(since, until, group, grouped=grouped)
    return (f"{where} AND {table}decision_id IN (SELECT id FROM decisions WHERE {inner})",
            [*params, *inner_params])


def _rows(connection: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[Any]:
    """All rows of a query (each query returns at most a report's limit, or one per bucket)."""
    return connection.execute(sql, params).fetchall()


def _names(value: str | None) -> tuple[str, ...]:
    """A JSON array of names (json_group_array) as a sorted tuple."""
    return tuple(sorted(str(v) for v in json.loads(value or "[]") if v is not None))


def build_report(connection: sqlite3.Connection, *, since: float | None = None, until: float | None = None,
                 limit: int = 20, group: str | None = None, scan: bool = False) -> Report:
    """Every figure of the report for decisions with since <= ts < until (None: unbounded).

    ``group``: only the decisions made under that policy group's rules (the store's group_name).
    The whole hours of the range are read from the store's aggregates (clickguard.audit.aggregates)
    and the rest from its records; ``scan`` reads every record instead, as a store without
    aggregates is read (one an older clickguard made, opened read-only), with the same answers.
    """
    now = time.time()
    grouped = group is None or has_groups(connection)
    where, params = _scope(since, until, group, grouped=grouped)
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
    hours = None if scan or not store.has_aggregates(connection) else aggregates.hours(since, until)
    if hours is None:
        figures = _scanned(connection, since, until, first, last, low, high, bucket, limit, group, grouped)
    else:
        figures = _hourly(connection, hours, since, until, first, last, low, high, bucket, limit, group)
    continues = tuple(Continue(*row) for row in _rows(connection, f"""
        SELECT ts, ref, {_who_sql()}, {_kind_sql()}, client, host, url, record ->> '$.warn_ref', click_id
        FROM decisions WHERE event = 'continue' AND {where} ORDER BY ts DESC, id DESC LIMIT ?""",
        [*params, limit]))
    return Report(since=since, until=until, generated_at=now, first=first, last=last, bucket=bucket,
                  continues=continues, group=group, **figures)


def _scanned(connection: sqlite3.Connection, since: float | None, until: float | None,
             first: float | None, last: float | None, low: float | None, high: float | None, bucket: int,
             limit: int, group: str | None, grouped: bool) -> dict[str, Any]:
    """The report's figures (but the recent continues) counted from the records in range."""
    where, params = _scope(since, until, group, grouped=grouped)
    totals, timeline = _counts(connection, since, until, first, last, low, high, bucket,
                               group if grouped else None)

    # A finding with several tags is several findings rows: count decisions, not rows.
    fwhere, fparams = _findings_scope(since, until, group, grouped=grouped)
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
    # max(kind): a name that is one record's user and another's client is shown as the most specific
    # ('user' > 'recipient' > 'client'), whichever rows SQLite meets first, as _hourly shows it too.
    # action first: decisions_action finds the blocked and warned rows without a scan.
    rows = _rows(connection, f"""
        SELECT {_who_sql()} AS who, max({_kind_sql()}), sum(action = 'block'), sum(action = 'warn'),
               count(*) AS n, count(*) OVER ()
        FROM decisions WHERE action IN ('block', 'warn') AND event IN ('click', 'hop') AND {where}
        GROUP BY who ORDER BY n DESC, who LIMIT ?""", [*params, limit])
    targeted = tuple(TargetedUser(*row[:5]) for row in rows)
    targeted_users = rows[0][5] if rows else 0

    # From the origin.thingbot findings (findings_report) to their decisions, not the other way
    # round: there are fewer Thingbot findings than clicks.
    dwhere, dparams = _scope(since, until, group, "d.", grouped)
    rows = _rows(connection, f"""
        SELECT {_who_sql("d.")} AS who, max({_kind_sql("d.")}), count(*) AS n,
               count(*) OVER (), sum(count(*)) OVER ()
        FROM (SELECT DISTINCT decision_id FROM findings WHERE code = 'origin.thingbot' AND {fwhere}) AS t
             CROSS JOIN decisions AS d ON d.id = t.decision_id
        WHERE d.event = 'click' AND {dwhere}
        GROUP BY who ORDER BY n DESC, who LIMIT ?""", [*fparams, *dparams, limit])
    thingbot_targets = tuple(ThingbotTarget(*row[:3]) for row in rows)
    thingbot_users, thingbot_clicks = (rows[0][3], rows[0][4]) if rows else (0, 0)

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
        HAVING host IS NOT NULL ORDER BY n DESC, host, device_class LIMIT ?""", [*params, limit]))

    rows = _rows(connection, f"""
        SELECT {_who_sql()} AS who, max({_kind_sql()}), count(*) AS n, count(DISTINCT host), max(ts),
               count(*) OVER ()
        FROM decisions WHERE event = 'continue' AND {where}
        GROUP BY who ORDER BY n DESC, who LIMIT ?""", [*params, limit])
    continues_by_user = tuple(ContinueUser(*row[:5]) for row in rows)
    continue_users = rows[0][5] if rows else 0
    return dict(
        totals=totals, timeline=timeline, reasons=reasons, feeds=feeds, tags=tags,
        targeted_users=targeted_users, targeted=targeted, thingbot_users=thingbot_users,
        thingbot_targets=thingbot_targets, thingbot_share=ThingbotShare(totals.clicks, thingbot_clicks),
        thingbot_origin_count=origin_count, thingbot_origins=origins, appliance_classes=classes,
        appliance_hosts=appliance_hosts, continue_users=continue_users, continues_by_user=continues_by_user)


# Each series counted over a ts range of its own index: decisions_ts, decisions_event (event, ts)
# and decisions_action (action, ts). A count over an index range never reads a row, where one
# GROUP BY over computed buckets would read and sort every row of the range.
_SERIES = ("", "event = 'click' AND ", "action = 'block' AND ", "action = 'warn' AND ",
           "event = 'continue' AND ")


def _counted_range(since: float | None, until: float | None, first: float,
                   last: float) -> tuple[float, float]:
    """The counted range, [lo, hi): the one asked for, or exactly the records there are."""
    return (since if since is not None else first,
            until if until is not None else math.nextafter(last, math.inf))


def _buckets(until: float | None, low: float, high: float, bucket: int) -> tuple[float, int]:
    """The timeline's first bucket start (a whole UTC hour or day) and how many buckets."""
    origin = (low // bucket) * bucket
    count = int((high - origin) // bucket) + 1
    if until is not None and origin + (count - 1) * bucket >= until:
        count -= 1  # until is exclusive: no bucket that starts there
    return origin, max(1, min(count, 10_000))


def _series(group: str | None) -> tuple[str, ...]:
    """The count conditions; with a group each also ranges over it (decisions_group serves the plain one)."""
    return _SERIES if group is None else tuple(f"group_name = :group AND {s}" for s in _SERIES)


def _range_totals(connection: sqlite3.Connection, lo: float, hi: float, group: str | None) -> tuple[int, ...]:
    """The five totals over [lo, hi)."""
    return tuple(connection.execute(
        "SELECT " + ", ".join(f"(SELECT count(*) FROM decisions WHERE {s}ts >= :lo AND ts < :hi)"
                              for s in _series(group)), {"lo": lo, "hi": hi, "group": group}).fetchone())


def _range_timeline(connection: sqlite3.Connection, lo: float, hi: float, origin: float, width: int,
                    count: int, group: str | None) -> list[tuple[Any, ...]]:
    """(start, decisions, clicks, blocks, warns) of each bucket, counting the records in [lo, hi) alone."""
    # Empty buckets count as zero: a quiet day is a figure too.
    return connection.execute(
        "WITH RECURSIVE bucket(i, start) AS (SELECT 0, :origin UNION ALL "
        "SELECT i + 1, start + :width FROM bucket WHERE i + 1 < :count) SELECT start, "
        + ", ".join(f"(SELECT count(*) FROM decisions WHERE {s}ts >= max(start, :lo) "
                    "AND ts < min(start + :width, :hi))" for s in _series(group)[:4])
        + " FROM bucket", {"lo": lo, "hi": hi, "group": group, "origin": origin, "width": width,
                           "count": count}).fetchall()


def _counts(connection: sqlite3.Connection, since: float | None, until: float | None,
            first: float | None, last: float | None, low: float | None, high: float | None,
            bucket: int, group: str | None = None) -> tuple[Totals, tuple[Bucket, ...]]:
    """The totals over [since, until) and the timeline of buckets from low to high (one group's, if given)."""
    if first is None or last is None or low is None or high is None:
        return Totals(0, 0, 0, 0, 0), ()
    lo, hi = _counted_range(since, until, first, last)
    origin, count = _buckets(until, low, high, bucket)
    return (Totals(*_range_totals(connection, lo, hi, group)),
            tuple(Bucket(*row) for row in _range_timeline(connection, lo, hi, origin, bucket, count, group)))


def _hourly_counts(connection: sqlite3.Connection, hours: tuple[int, int],
                   edges: Sequence[tuple[float, float]], since: float | None, until: float | None,
                   first: float | None, last: float | None, low: float | None, high: float | None,
                   bucket: int, group: str | None) -> tuple[Totals, tuple[Bucket, ...]]:
    """What _counts counts: whole hours from agg_totals, the edges counted as _counts counts them."""
    if first is None or last is None or low is None or high is None:
        return Totals(0, 0, 0, 0, 0), ()
    lo, hi = _counted_range(since, until, first, last)
    origin, count = _buckets(until, low, high, bucket)
    totals = [0] * 5
    starts: list[float] = []
    start = origin
    for _ in range(count):  # added up as _range_timeline's SQL adds them, for the same floats
        starts.append(start)
        start += bucket
    series = [[0] * 4 for _ in range(count)]
    for edge_lo, edge_hi in edges:
        edge_lo, edge_hi = max(edge_lo, lo), min(edge_hi, hi)
        if edge_lo >= edge_hi:
            continue
        for i, n in enumerate(_range_totals(connection, edge_lo, edge_hi, group)):
            totals[i] += n
        for row, counted in zip(series, _range_timeline(connection, edge_lo, edge_hi, origin, bucket, count,
                                                        group), strict=True):
            for i in range(4):
                row[i] += counted[i + 1]
    grp = "" if group is None else " AND grp = :group"
    for hour, *counts in connection.execute(
            "SELECT bucket, sum(decisions), sum(clicks), sum(blocks), sum(warns), sum(continues) "
            f"FROM agg_totals WHERE bucket >= :start AND bucket < :end{grp} GROUP BY bucket",
            {"start": hours[0], "end": hours[1], "group": group}):
        for i, n in enumerate(counts):
            totals[i] += n
        # An hour lies in one bucket: buckets are whole UTC hours or days, like the aggregates' hours.
        index = int((hour - origin) // bucket)
        if 0 <= index < count:
            row = series[index]
            for i in range(4):
                row[i] += counts[i]
    return Totals(*totals), tuple(Bucket(start, *row) for start, row in zip(starts, series, strict=True))


def _edges(hours: tuple[int, int], since: float | None, until: float | None) -> list[tuple[float, float]]:
    """The parts [lo, hi) of [since, until) outside the whole hours the aggregates answer for."""
    start, end = hours
    edges: list[tuple[float, float]] = []
    if since is None or since < start:
        edges.append((-math.inf if since is None else since, start))
    if until is None or until > end:
        edges.append((end, math.inf if until is None else until))
    return edges


def _hourly(connection: sqlite3.Connection, hours: tuple[int, int], since: float | None, until: float | None,
            first: float | None, last: float | None, low: float | None, high: float | None, bucket: int,
            limit: int, group: str | None) -> dict[str, Any]:
    """The figures _scanned counts, read from the aggregates' whole hours and the records at the two ends."""
    edges = _edges(hours, since, until)

    def source(aggregate: aggregates.Aggregate) -> tuple[str, list[object]]:
        """The aggregate's rows for the range: whole hours from its table, the ends from the records."""
        grp = "" if group is None else " AND grp = ?"
        parts = [f"SELECT {aggregate.columns} FROM {aggregate.table} WHERE bucket >= ? AND bucket < ?{grp}"]
        params: list[object] = [*hours, *([] if group is None else [group])]
        scope = "d.ts >= ? AND d.ts < ?" + ("" if group is None else " AND d.group_name = ?")
        for lo, hi in edges:
            parts.append(aggregate.source(scope))
            params += [lo, hi, *([] if group is None else [group])] * aggregate.scopes
        return " UNION ALL ".join(parts), params

    totals, timeline = _hourly_counts(connection, hours, edges, since, until, first, last, low, high, bucket,
                                      group)
    src, params = source(aggregates.FINDINGS)
    named = [tuple(Count(name, n) for name, n in _rows(connection, f"""
        SELECT name, sum(decisions) AS n FROM ({src}) WHERE kind = {kind}
        GROUP BY name ORDER BY n DESC, name LIMIT ?""", [*params, limit])) for kind in (0, 1, 2)]
    reasons, feeds, tags = named

    src, params = source(aggregates.TARGETED)
    rows = _rows(connection, f"""
        SELECT nullif(who, {aggregates.NONE}) AS w, max(kind), sum(blocks), sum(warns),
               sum(blocks) + sum(warns) AS n, count(*) OVER ()
        FROM ({src}) GROUP BY w ORDER BY n DESC, w LIMIT ?""", [*params, limit])
    targeted = tuple(TargetedUser(*row[:5]) for row in rows)
    targeted_users = rows[0][5] if rows else 0

    src, params = source(aggregates.THINGBOT)
    rows = _rows(connection, f"""
        SELECT nullif(who, {aggregates.NONE}) AS w, max(kind), sum(clicks) AS n, count(*) OVER (),
               sum(sum(clicks)) OVER ()
        FROM ({src}) GROUP BY w ORDER BY n DESC, w LIMIT ?""", [*params, limit])
    thingbot_targets = tuple(ThingbotTarget(*row[:3]) for row in rows)
    thingbot_users, thingbot_clicks = (rows[0][3], rows[0][4]) if rows else (0, 0)

    src, params = source(aggregates.ORIGINS)
    rows = _rows(connection, f"""
        SELECT origin_ip, sum(clicks) AS n, count(*) OVER () FROM ({src})
        GROUP BY origin_ip ORDER BY n DESC, origin_ip LIMIT ?""", [*params, limit])
    origin_count = rows[0][2] if rows else 0
    names: dict[tuple[str, int], set[str]] = {}
    if rows:
        src, params = source(aggregates.ORIGIN_NAMES)
        top = [ip for ip, _, _ in rows]
        for ip, kind, name in _rows(connection, f"""
            SELECT DISTINCT origin_ip, kind, name FROM ({src})
            WHERE origin_ip IN ({", ".join("?" * len(top))})""", [*params, *top]):
            names.setdefault((ip, kind), set()).add(str(name))
    origins = tuple(ThingbotOrigin(ip, n, tuple(sorted(names.get((ip, 1), ()))),
                                   tuple(sorted(names.get((ip, 2), ())))) for ip, n, _ in rows)

    src, params = source(aggregates.APPLIANCES)
    classes = tuple(ApplianceClass(*row) for row in _rows(connection, f"""
        SELECT device_class, sum(decisions) AS n, count(DISTINCT nullif(host, {aggregates.NONE})) FROM ({src})
        GROUP BY device_class ORDER BY n DESC, device_class""", params))
    appliance_hosts = tuple(ApplianceHost(*row) for row in _rows(connection, f"""
        SELECT nullif(host, {aggregates.NONE}) AS h, device_class, sum(decisions) AS n, max(latest)
        FROM ({src}) GROUP BY device_class, host
        HAVING h IS NOT NULL ORDER BY n DESC, h, device_class LIMIT ?""", [*params, limit]))

    src, params = source(aggregates.CONTINUES)
    rows = _rows(connection, f"""
        SELECT nullif(who, {aggregates.NONE}) AS w, max(kind), sum(continues) AS n,
               count(DISTINCT nullif(host, {aggregates.NONE})), max(latest), count(*) OVER ()
        FROM ({src}) GROUP BY w ORDER BY n DESC, w LIMIT ?""", [*params, limit])
    continues_by_user = tuple(ContinueUser(*row[:5]) for row in rows)
    continue_users = rows[0][5] if rows else 0
    return dict(
        totals=totals, timeline=timeline, reasons=reasons, feeds=feeds, tags=tags,
        targeted_users=targeted_users, targeted=targeted, thingbot_users=thingbot_users,
        thingbot_targets=thingbot_targets, thingbot_share=ThingbotShare(totals.clicks, thingbot_clicks),
        thingbot_origin_count=origin_count, thingbot_origins=origins, appliance_classes=classes,
        appliance_hosts=appliance_hosts, continue_users=continue_users, continues_by_user=continues_by_user)


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


# --- several stores (one per node) -------------------------------------------------------------

STORE_SUFFIX = ".sqlite"


def store_paths(names: Sequence[Path]) -> list[Path]:
    """The stores a report over nodes reads: each file named, and every ``*.sqlite`` in each directory named.

    sqlite3.OperationalError naming the first that is missing (or a directory holding none):
    read-only, a report never creates a store, and a node silently left out would be a wrong report.
    Each store once, in the order given (directories' stores sorted by name).
    """
    paths: list[Path] = []
    for name in names:
        if name.is_dir():
            found = sorted(p for p in name.glob(f"*{STORE_SUFFIX}") if p.is_file())
            if not found:
                raise sqlite3.OperationalError(f"no audit store (*{STORE_SUFFIX}) in {name}")
            paths.extend(found)
        elif name.is_file():
            paths.append(name)
        else:
            raise sqlite3.OperationalError(f"no audit store at {name}")
    unique: dict[Path, None] = {}
    for path in paths:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def report_stores(paths: Sequence[Path], *, since: float | None = None, until: float | None = None,
                  limit: int = 20, group: str | None = None) -> Report:
    """build_report over one store (read in place) or several (through union_store).

    sqlite3.Error naming the store that could not be read.
    """
    if len(paths) == 1:
        with _named(paths[0]):
            connection = store.connect(paths[0], readonly=True)
            try:
                return build_report(connection, since=since, until=until, limit=limit, group=group)
            finally:
                connection.close()
    connection = union_store(paths, since=since, until=until, group=group)
    try:
        return build_report(connection, since=since, until=until, limit=limit, group=group)
    finally:
        connection.close()


@contextmanager
def _named(path: Path) -> Iterator[None]:
    """sqlite3 errors while reading a store, re-raised with the store's path in front."""
    try:
        yield
    except sqlite3.Error as e:
        raise type(e)(f"{path}: {e}") from e


def union_store(paths: Sequence[Path], *, since: float | None = None, until: float | None = None,
                group: str | None = None) -> sqlite3.Connection:
    """One private temporary store holding the decisions in range of every store named, each record once.

    build_report and drilldown then read it as they read one node's store, so a report over
    nodes has the same figures, keys and order as one over a store holding every record.
    Each source is ATTACHed read-only (``mode=ro``) one at a time, so SQLite's limit on
    attached databases never applies, and only the rows in [since, until) (and the group)
    are copied: the cost follows the records reported on. A record in two stores (a node's
    store and an ``audit import`` copy of its log) counts once, as in the store of every
    record: its (ref, event) is unique there too, and the first store named keeps it. Only
    a continue's whole record is copied (its warn_ref is reported); the others' JSON, most
    of a store's size, stays behind.
    """
    connection = sqlite3.connect("", uri=True, check_same_thread=False, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=MEMORY")  # not OFF: _dedupe rolls back a failed index
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-65536")  # KiB: index builds sort in memory
        connection.executescript(store.SCHEMA)
        # Bulk loads go faster into bare tables: the indexes come after, and only those reports use.
        indexes = dict(connection.execute("SELECT name, sql FROM sqlite_master "
                                          "WHERE type = 'index' AND sql IS NOT NULL").fetchall())
        for name in indexes:
            connection.execute(f"DROP INDEX {name}")
        for path in paths:
            with _named(path):
                _copy_store(connection, path, since, until, group)
        _dedupe(connection, indexes["decisions_ref"])
        for name in _REPORT_INDEXES:
            connection.execute(indexes[name])
        connection.execute("PRAGMA analysis_limit=1000")
        connection.execute("ANALYZE")
    except BaseException:
        connection.close()
        raise
    return connection


# The indexes build_report reads (see its comments); the drill-down's are not built for the union.
_REPORT_INDEXES = ("decisions_ts", "decisions_event", "decisions_action", "decisions_group",
                   "decisions_device", "findings_report")


def _dedupe(connection: sqlite3.Connection, unique_index: str) -> None:
    """Keep one copy of each (ref, event), the first store's, and its findings alone; then index it unique.

    Building the unique index finds duplicates in one sort; only when it fails (some record
    is in two stores) are the later copies looked for and deleted.
    """
    try:
        connection.execute(unique_index)
        return
    except sqlite3.IntegrityError:
        pass
    connection.execute("BEGIN")
    connection.execute("DELETE FROM decisions WHERE id NOT IN "
                       "(SELECT min(id) FROM decisions GROUP BY ref, event)")
    connection.execute("DELETE FROM findings WHERE decision_id NOT IN (SELECT id FROM decisions)")
    connection.execute("COMMIT")
    connection.execute(unique_index)


_COLUMNS = ("ts, ref, event, client, user, group_name, recipient, url, host, action, origin_ip, "
            "click_id, hop, device_class")


def _copy_store(connection: sqlite3.Connection, path: Path, since: float | None, until: float | None,
                group: str | None) -> None:
    """Copy one store's decisions in scope and their findings into the union (ids shifted past its own)."""
    connection.execute("ATTACH ? AS src", (f"{path.absolute().as_uri()}?mode=ro",))
    try:
        columns = {row[1] for row in connection.execute("PRAGMA src.table_info(decisions)")}
        if not columns:
            raise sqlite3.DatabaseError("not an audit store (no decisions table)")
        grouped = "group_name" in columns  # a version 1 store has none: no decision of it is any group's
        where, params = _scope(since, until, group, grouped=grouped)
        connection.execute("BEGIN")  # one transaction a store: SQLite detaches none in the middle of one
        base = connection.execute("SELECT coalesce(max(id), 0) FROM main.decisions").fetchone()[0]
        selected = _COLUMNS if grouped else _COLUMNS.replace("group_name", "NULL")
        connection.execute(
            f"INSERT INTO main.decisions (id, {_COLUMNS}, record) "
            f"SELECT id + ?, {selected}, CASE WHEN event = 'continue' THEN record ELSE '{{}}' END "
            f"FROM src.decisions WHERE {where}", [base, *params])
        # A decision's findings share its ts; those of a decision out of the group have no row.
        fwhere, fparams = _range(since, until, "f.ts")
        connection.execute(
            "INSERT INTO main.findings (decision_id, ts, code, feed, tag) "
            "SELECT f.decision_id + ?, f.ts, f.code, f.feed, f.tag FROM src.findings AS f "
            f"WHERE {fwhere} AND EXISTS "
            "(SELECT 1 FROM main.decisions AS d WHERE d.id = f.decision_id + ?)",
            [base, *fparams, base])
        connection.execute("COMMIT")
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.execute("DETACH src")


def drilldown_stores(paths: Sequence[Path], *, host: str | None = None, click_id: str | None = None,
                     limit: int = 500) -> list[dict[str, object]]:
    """drilldown over several stores: each store's newest ``limit``, merged newest first, each record once."""
    found: list[tuple[float, int, dict[str, object]]] = []
    for number, path in enumerate(paths):
        with _named(path):
            connection = store.connect(path, readonly=True)
            try:
                records = drilldown(connection, host=host, click_id=click_id, limit=limit)
            finally:
                connection.close()
        if len(paths) == 1:
            return records
        found.extend((_record_ts(r), -number, r) for r in records)
    found.sort(key=lambda item: item[:2], reverse=True)
    seen: set[tuple[object, object]] = set()
    out: list[dict[str, object]] = []
    for _ts, _number, record in found:
        key = (record.get("ref"), record.get("event"))
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out[:limit]


def _record_ts(record: Mapping[str, object]) -> float:
    """A record's ts as Unix seconds for ordering (one without a usable ts sorts last)."""
    try:
        return store.timestamp(record.get("ts"))
    except ValueError:
        return -math.inf
