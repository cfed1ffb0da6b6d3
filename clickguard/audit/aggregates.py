"""Hourly aggregates of the audit store, kept exact at insert and prune, so reports read hours, not records.

Every figure of a report (clickguard.audit.queries) is a count, a sum or a set
over the decisions in a time range, so it adds up over the UTC hours that make
up the range. Each table here holds one figure's partial answer per hour and
policy group; ``queries.build_report`` reads the whole hours of its range from
them and only the records of the part hours at its two ends from ``decisions``.

One ``Aggregate`` a table: its columns and the one SELECT over ``decisions``
(and ``findings``) that defines it. The same SELECT fills the table when a store
is migrated (``rebuild``), recomputes the one hour a prune cut into (``pruned``)
and reads the part hours at report time. A batch's new decisions are added in
the batch's own transaction (``Batch``), counted in Python from the rows just
inserted, as the SELECTs count them: cheaper on the click path, where the audit
writer commits a few records at a time.

Keys never hold NULL (SQLite's unique keys treat NULLs as distinct, so an upsert
would never find them): a missing group, user or host is the empty blob
``X''``, which equals no text; readers turn it back with ``nullif(…, X'')``.
Records with a time outside +-2**40 s (about 35,000 years) are left out of the
hours and always read from ``decisions``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # store imports this module
    from clickguard.audit.store import FindingRow, Row

HOUR = 3600
# Whole hours on both sides of 0; timestamps beyond are not aggregated (and read as records).
SPAN = (2**40 // HOUR) * HOUR
NONE = "X''"  # the key that stands for NULL
NULL = b""  # the same, bound from Python
THINGBOT_CODE = "origin.thingbot"

# The UTC hour a decision falls in, as an integer: CAST truncates toward zero and the
# division may round up to the next hour, both corrected by the comparison with ts itself.
_CUT = "CAST(d.ts / 3600 AS INTEGER) * 3600"
BUCKET = f"({_CUT} - 3600 * ({_CUT} > d.ts))"
_GROUP = f"ifnull(d.group_name, {NONE})"
# The user a decision is about (queries._who_sql), and which column named them.
_WHO = f"ifnull(coalesce(d.user, d.recipient, d.client), {NONE})"
_KIND = ("CASE WHEN d.user IS NOT NULL THEN 'user' "
         "WHEN d.recipient IS NOT NULL THEN 'recipient' ELSE 'client' END")
# "+f.code": not an index term, so SQLite looks the decision's few findings up (findings_decision)
# rather than walking every origin.thingbot finding (findings_report) for each decision.
_THINGBOT = "EXISTS (SELECT 1 FROM findings AS f WHERE f.decision_id = d.id AND +f.code = 'origin.thingbot')"


@dataclass(frozen=True)
class Aggregate:
    """One table: its key and value columns, and the SELECT over ``d`` (scoped by ``{scope}``) defining it."""

    table: str
    keys: tuple[str, ...]  # bucket and grp first
    sums: tuple[str, ...]  # added up
    latest: bool  # a last column: the newest ts, kept by max()
    select: str

    @property
    def columns(self) -> str:
        """The table's columns in order."""
        return ", ".join((*self.keys, *self.sums, *(("latest",) if self.latest else ())))

    @property
    def scopes(self) -> int:
        """How often the source names its scope (once a part of a UNION ALL): its parameters repeat."""
        return self.select.count("{scope}")

    def source(self, scope: str) -> str:
        """The defining SELECT over the decisions that ``scope`` (a condition on ``d``) picks."""
        return self.select.format(scope=scope)


TOTALS = Aggregate("agg_totals", ("bucket", "grp"), ("decisions", "clicks", "blocks", "warns", "continues"),
                   False, f"""
    SELECT {BUCKET}, {_GROUP}, count(*), sum(d.event = 'click'), sum(d.action = 'block'),
           sum(d.action = 'warn'), sum(d.event = 'continue')
    FROM decisions AS d WHERE {{scope}} GROUP BY 1, 2""")
# Decisions with a finding of a code (kind 0), from a feed (1), with a tag (2): a decision is in one
# hour, so the distinct decisions of each hour add up.
FINDINGS = Aggregate("agg_findings", ("bucket", "grp", "kind", "name"), ("decisions",), False,
                     " UNION ALL ".join(f"""
    SELECT {BUCKET}, {_GROUP}, {kind}, f.{column}, count(DISTINCT d.id)
    FROM decisions AS d CROSS JOIN findings AS f ON f.decision_id = d.id
    WHERE {{scope}}{extra} GROUP BY 1, 2, 4""" for kind, column, extra in (
        (0, "code", ""), (1, "feed", " AND f.feed IS NOT NULL"), (2, "tag", " AND f.tag IS NOT NULL"))))
TARGETED = Aggregate("agg_targeted", ("bucket", "grp", "who", "kind"), ("blocks", "warns"), False, f"""
    SELECT {BUCKET}, {_GROUP}, {_WHO}, {_KIND}, sum(d.action = 'block'), sum(d.action = 'warn')
    FROM decisions AS d WHERE d.action IN ('block', 'warn') AND d.event IN ('click', 'hop') AND {{scope}}
    GROUP BY 1, 2, 3, 4""")
THINGBOT = Aggregate("agg_thingbot", ("bucket", "grp", "who", "kind"), ("clicks",), False, f"""
    SELECT {BUCKET}, {_GROUP}, {_WHO}, {_KIND}, count(*)
    FROM decisions AS d WHERE d.event = 'click' AND {{scope}} AND {_THINGBOT} GROUP BY 1, 2, 3, 4""")
ORIGINS = Aggregate("agg_origins", ("bucket", "grp", "origin_ip"), ("clicks",), False, f"""
    SELECT {BUCKET}, {_GROUP}, d.origin_ip, count(*)
    FROM decisions AS d WHERE d.event = 'click' AND d.origin_ip IS NOT NULL AND {{scope}} AND {_THINGBOT}
    GROUP BY 1, 2, 3""")
# The feeds (kind 1) and tags (2) of the origin.thingbot findings of those clicks.
ORIGIN_NAMES = Aggregate("agg_origin_names", ("bucket", "grp", "origin_ip", "kind", "name"), ("findings",),
                         False, " UNION ALL ".join(f"""
    SELECT {BUCKET}, {_GROUP}, d.origin_ip, {kind}, f.{column}, count(*)
    FROM decisions AS d CROSS JOIN findings AS f ON f.decision_id = d.id
    WHERE +f.code = 'origin.thingbot' AND f.{column} IS NOT NULL AND d.event = 'click'
          AND d.origin_ip IS NOT NULL AND {{scope}} GROUP BY 1, 2, 3, 5"""
                                                   for kind, column in ((1, "feed"), (2, "tag"))))
APPLIANCES = Aggregate("agg_appliances", ("bucket", "grp", "device_class", "host"), ("decisions",), True, f"""
    SELECT {BUCKET}, {_GROUP}, d.device_class, ifnull(d.host, {NONE}), count(*), max(d.ts)
    FROM decisions AS d WHERE d.device_class IS NOT NULL AND {{scope}} GROUP BY 1, 2, 3, 4""")
CONTINUES = Aggregate("agg_continues", ("bucket", "grp", "who", "kind", "host"), ("continues",), True, f"""
    SELECT {BUCKET}, {_GROUP}, {_WHO}, {_KIND}, ifnull(d.host, {NONE}), count(*), max(d.ts)
    FROM decisions AS d WHERE d.event = 'continue' AND {{scope}} GROUP BY 1, 2, 3, 4, 5""")
AGGREGATES = (TOTALS, FINDINGS, TARGETED, THINGBOT, ORIGINS, ORIGIN_NAMES, APPLIANCES, CONTINUES)

# Untyped key columns: a text stays text and the NULL key X'' stays a blob.
SCHEMA = tuple(
    f"CREATE TABLE IF NOT EXISTS {a.table} ({', '.join(a.keys)}, "
    + "".join(f"{s} INTEGER NOT NULL, " for s in a.sums) + ("latest REAL NOT NULL, " if a.latest else "")
    + f"PRIMARY KEY ({', '.join(a.keys)})) WITHOUT ROWID" for a in AGGREGATES)


def _upsert(aggregate: Aggregate) -> str:
    """INSERT of one row that adds it to the row of its key already there."""
    updates = [f"{s} = {s} + excluded.{s}" for s in aggregate.sums]
    if aggregate.latest:
        updates.append("latest = max(latest, excluded.latest)")
    width = len(aggregate.keys) + len(aggregate.sums) + aggregate.latest
    return (f"INSERT INTO {aggregate.table} ({aggregate.columns}) VALUES ({', '.join('?' * width)}) "
            f"ON CONFLICT ({', '.join(aggregate.keys)}) DO UPDATE SET {', '.join(updates)}")


_UPSERT = {a.table: _upsert(a) for a in AGGREGATES}
_RECOMPUTE = tuple(f"INSERT INTO {a.table} ({a.columns}) {a.source('d.ts >= ? AND d.ts < ?')}"
                   for a in AGGREGATES)


def create(connection: sqlite3.Connection) -> None:
    """Create the tables (empty) where they are missing."""
    for statement in SCHEMA:
        connection.execute(statement)


def rebuild(connection: sqlite3.Connection) -> None:
    """Fill the tables from every record (inside the caller's transaction): a store that had none."""
    for aggregate, statement in zip(AGGREGATES, _RECOMPUTE, strict=True):
        connection.execute(f"DELETE FROM {aggregate.table}")
        connection.execute(statement, (-SPAN, SPAN) * aggregate.scopes)


type Key = tuple[object, ...]


class Batch:
    """A batch's new decisions added up in Python as the SELECTs above count them, then upserted.

    On the click path the audit writer commits a record or a few at a time: one upsert
    per table a decision touches (a plain allowed one touches agg_totals alone) costs
    less than running eight SELECTs over the new rows. tests/test_report_aggregates.py
    holds the two to the same answers (reports from these tables equal those from records).
    """

    def __init__(self) -> None:
        """No decision yet."""
        self.sums: dict[str, dict[Key, list[float]]] = {a.table: {} for a in AGGREGATES}

    def _add(self, table: str, key: Key, *values: float, latest: float | None = None) -> None:
        """Add values to the key's sums (and keep the newest ts)."""
        sums = self.sums[table].get(key)
        if sums is None:
            self.sums[table][key] = [*values, *(() if latest is None else (latest,))]
            return
        for i, value in enumerate(values):
            sums[i] += value
        if latest is not None:
            sums[-1] = max(sums[-1], latest)

    def decision(self, row: Row, findings: Sequence[FindingRow]) -> None:
        """Count one new decision and its findings (a time beyond the span is not aggregated)."""
        if not -SPAN <= row.ts < SPAN:
            return
        key: Key = (_floor_hour(row.ts), NULL if row.group_name is None else row.group_name)
        click, action = row.event == "click", row.action
        self._add("agg_totals", key, 1, click, action == "block", action == "warn", row.event == "continue")
        named: tuple[set[str | None], ...] = ({f[0] for f in findings}, {f[1] for f in findings} - {None},
                                              {f[2] for f in findings} - {None})
        for kind, names in enumerate(named):  # distinct: a decision counts once a name
            for name in names:
                self._add("agg_findings", (*key, kind, name), 1)
        who, who_kind = _who(row)
        if action in ("block", "warn") and row.event in ("click", "hop"):
            self._add("agg_targeted", (*key, who, who_kind), action == "block", action == "warn")
        thingbot = [f for f in findings if f[0] == THINGBOT_CODE]
        if click and thingbot:
            self._add("agg_thingbot", (*key, who, who_kind), 1)
            if row.origin_ip is not None:
                self._add("agg_origins", (*key, row.origin_ip), 1)
                for _, feed, tag in thingbot:  # one a findings row, as count(*) counts
                    for kind, name in ((1, feed), (2, tag)):
                        if name is not None:
                            self._add("agg_origin_names", (*key, row.origin_ip, kind, name), 1)
        host = NULL if row.host is None else row.host
        if row.device_class is not None:
            self._add("agg_appliances", (*key, row.device_class, host), 1, latest=row.ts)
        if row.event == "continue":
            self._add("agg_continues", (*key, who, who_kind, host), 1, latest=row.ts)

    def write(self, connection: sqlite3.Connection | sqlite3.Cursor) -> None:
        """Upsert the sums into the tables, in the inserting transaction."""
        for table, sums in self.sums.items():
            if sums:
                connection.executemany(_UPSERT[table], [(*key, *values) for key, values in sums.items()])


def _who(row: Row) -> tuple[object, str]:
    """The user a decision is about and which column named them (_WHO, _KIND)."""
    if row.user is not None:
        return row.user, "user"
    if row.recipient is not None:
        return row.recipient, "recipient"
    return (NULL if row.client is None else row.client), "client"


def pruned(connection: sqlite3.Connection | sqlite3.Cursor, newest: float) -> None:
    """Take out what a prune deleted, in its transaction: every decision before ``newest`` and some at it.

    The hours before newest's lost all their decisions; newest's own hour is recomputed
    from the decisions it kept (a newest ts, a distinct host, cannot be subtracted).
    """
    if newest < -SPAN:
        return
    if newest >= SPAN:
        for aggregate in AGGREGATES:
            connection.execute(f"DELETE FROM {aggregate.table}")
        return
    hour = connection.execute(f"SELECT {BUCKET} FROM (SELECT ? AS ts) AS d", (newest,)).fetchone()[0]
    for aggregate, statement in zip(AGGREGATES, _RECOMPUTE, strict=True):
        connection.execute(f"DELETE FROM {aggregate.table} WHERE bucket <= ?", (hour,))
        connection.execute(statement, (hour, hour + HOUR) * aggregate.scopes)


def hours(since: float | None, until: float | None) -> tuple[int, int] | None:
    """The whole hours [start, end) of [since, until) the tables answer for; None when there is none."""
    start = -SPAN if since is None or since <= -SPAN else SPAN if since >= SPAN else _ceil_hour(since)
    end = SPAN if until is None or until >= SPAN else -SPAN if until <= -SPAN else _floor_hour(until)
    return (start, end) if start < end else None


def _floor_hour(ts: float) -> int:
    """The start of the hour ts is in (|ts| < SPAN)."""
    hour = int(ts // HOUR) * HOUR
    while hour > ts:
        hour -= HOUR
    while hour + HOUR <= ts:
        hour += HOUR
    return hour


def _ceil_hour(ts: float) -> int:
    """The first hour start at or after ts (|ts| < SPAN)."""
    hour = _floor_hour(ts)
    return hour if hour == ts else hour + HOUR
