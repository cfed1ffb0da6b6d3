"""Reports read from the hourly aggregates (clickguard.audit.aggregates) equal those counted from records.

Every comparison is against ``build_report(..., scan=True)``, which reads the
records alone, over random records (seeded) and random ranges, groups and
limits: after inserts in batches of every size, prunes that cut hours in two,
more inserts, and the migration of stores older clickguards made.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from clickguard.audit import aggregates, queries, report, store

HOUR, DAY = 3600, 86400
BASE = float(1_780_000_000 // HOUR * HOUR)  # a whole UTC hour, some months before the test runs
GROUPS = (None, None, "lab", "office")
# Names shared between users, recipients and clients: one person shown under the most specific kind.
USERS = ("alice", "bob", "carol", "10.0.0.1")
RECIPIENTS = ("alice", "bob@corp.example", "0123456789abcdef", "erin@corp.example")
CLIENTS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "alice", None)
EVENTS = ("decision", "click", "click", "hop", "continue", "response", "tunnel", "connected")
ACTIONS = ("allow", "allow", "warn", "block")
HOSTS = (None, "evil.example", "192.0.2.66", "news.example.com", "198.51.100.7")
ORIGINS = (None, "203.0.113.5", "203.0.113.9", "198.51.100.20")
CODES = ("origin.thingbot", "origin.thingbot", "origin.unknown_landing", "landing.thingbot",
         "landing.appliance", "policy.deny")
FEEDS = (None, "elf_mirai", "urlhaus", "ipsum")
TAGS = ("mirai", "port:23", "elf", "mozi", "count:3")
CLASSES = (None, None, None, None, "router", "camera", "nas", "a-class-this-version-does-not-know")


def _ts(rng: random.Random) -> float:
    """A time over a week, often on an hour's start or a hair either side of it."""
    boundary = BASE + rng.randrange(-24, 6 * 24) * HOUR
    pick = rng.random()
    if pick < 0.1:
        return boundary
    if pick < 0.15:
        return math.nextafter(boundary, -math.inf)
    if pick < 0.2:
        return math.nextafter(boundary, math.inf)
    return BASE + rng.uniform(-DAY, 6 * DAY)


def _findings(rng: random.Random) -> list[dict[str, Any]]:
    """0-3 findings, some of one code twice, some tags repeated, some without feed or tags."""
    out: list[dict[str, Any]] = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        finding: dict[str, Any] = {"code": rng.choice(CODES), "detail": "found"}
        if feed := rng.choice(FEEDS):
            finding["feed"] = feed
        if rng.random() < 0.6:
            finding["tags"] = [rng.choice(TAGS) for _ in range(rng.randint(1, 3))]
        out.append(finding)
    return out


def _record(rng: random.Random, ref: str, ts: float | None = None) -> dict[str, Any]:
    """One record shaped as audit.record shapes it, its fields drawn at random."""
    host = rng.choice(HOSTS)
    findings = _findings(rng)
    record: dict[str, Any] = {
        "ts": _ts(rng) if ts is None else ts, "ref": ref, "event": rng.choice(EVENTS),
        "action": rng.choice(ACTIONS), "client": rng.choice(CLIENTS),
        "url": f"http://{host}/x" if host else "about:blank",  # no host at all
        "origin_ip": rng.choice(ORIGINS), "click_id": ref,
    }
    if rng.random() < 0.4:
        record["user"] = rng.choice(USERS)
    if rng.random() < 0.4:
        record["recipient"] = rng.choice(RECIPIENTS)
    if group := rng.choice(GROUPS):
        record["group"] = group
    if rng.random() < 0.2:  # a record that kept only its codes
        record["reasons"] = [f["code"] for f in findings]
    else:
        record["details"] = findings
    if device := rng.choice(CLASSES):
        record["inspection"] = {"fingerprint": {"class": device, "appliance": True}}
    if record["event"] == "continue":
        record["warn_ref"] = f"w{ref}"
    return record


def _records(rng: random.Random, count: int, prefix: str) -> list[dict[str, Any]]:
    """count random records, refs prefix0, prefix1, ..."""
    return [_record(rng, f"{prefix}{n}") for n in range(count)]


def _insert(connection: sqlite3.Connection, rng: random.Random, records: Sequence[dict[str, Any]]) -> None:
    """Insert in batches of 1 to 500 records, as the audit writer and `audit import` do."""
    at = 0
    while at < len(records):
        size = rng.choice((1, 1, 7, 100, 500))
        store.insert(connection, records[at:at + size])
        at += size


def _bound(rng: random.Random, times: Sequence[float]) -> float | None:
    """A since or until: none, an hour's start or a hair off it, a record's own time, anywhere."""
    boundary = BASE + rng.randrange(-30, 7 * 24) * HOUR
    return rng.choice((
        None, boundary, math.nextafter(boundary, -math.inf), math.nextafter(boundary, math.inf),
        rng.choice(times), math.nextafter(rng.choice(times), math.inf), BASE + rng.uniform(-2 * DAY, 7 * DAY),
        boundary + rng.choice((1, 59, 1799, 3599)), boundary + rng.uniform(0, 4 * DAY)))


def _times(connection: sqlite3.Connection) -> list[float]:
    """Every record's time."""
    return [ts for (ts,) in connection.execute("SELECT ts FROM decisions")]


def _same(connection: sqlite3.Connection, **kwargs: Any) -> queries.Report:
    """The report from the aggregates, asserted equal to the one counted from the records."""
    fast = queries.build_report(connection, scan=False, **kwargs)
    slow = queries.build_report(connection, scan=True, **kwargs)
    assert dataclasses.replace(fast, generated_at=0) == dataclasses.replace(slow, generated_at=0), kwargs
    return fast


def _same_everywhere(connection: sqlite3.Connection, rng: random.Random, rounds: int) -> int:
    """_same for random ranges, groups and limits; how many of the reports had decisions."""
    times = _times(connection)
    found = 0
    for _ in range(rounds):
        since, until = _bound(rng, times), _bound(rng, times)
        if rng.random() < 0.8 and since is not None and until is not None and since > until:
            since, until = until, since
        group = rng.choice((None, None, "lab", "office", "x"))
        built = _same(connection, since=since, until=until, group=group, limit=rng.choice((1, 3, 1000)))
        found += built.totals.decisions > 0
    return found


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A store its writer has just created."""
    connection = store.connect(tmp_path / "audit.sqlite")
    yield connection
    connection.close()


def test_a_store_keeps_aggregates_from_its_first_insert(writer: sqlite3.Connection) -> None:
    """A new store is of this version, its aggregate tables there and filled as records come."""
    assert writer.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert store.has_aggregates(writer)
    rng = random.Random(1)
    _insert(writer, rng, _records(rng, 300, "r"))
    for aggregate in aggregates.AGGREGATES:
        assert writer.execute(f"SELECT count(*) FROM {aggregate.table}").fetchone()[0] > 0, aggregate.table
    assert writer.execute("SELECT sum(decisions) FROM agg_totals").fetchone()[0] == 300


def test_reports_from_aggregates_equal_reports_from_records(writer: sqlite3.Connection) -> None:
    """Thousands of random records, hundreds of random ranges: the same report, hourly and daily timelines."""
    rng = random.Random(14)
    _insert(writer, rng, _records(rng, 3000, "r"))
    assert _same_everywhere(writer, rng, 250) > 150
    # Both kinds of timeline, everything and each group.
    assert _same(writer).bucket == DAY
    assert _same(writer, since=BASE + 1000.5, until=BASE + 2 * DAY - 0.25).bucket == HOUR
    for group in ("lab", "office"):
        assert _same(writer, group=group, limit=1000).totals.decisions > 0
    # Ranges within one hour, none whole: the records alone.
    assert _same(writer, since=BASE + 10, until=BASE + HOUR - 10).totals.decisions > 0
    assert _same(writer, since=BASE + 2 * HOUR, until=BASE + HOUR).totals.decisions == 0


def test_the_comparison_sees_a_wrong_aggregate(writer: sqlite3.Connection) -> None:
    """The reports compared are really read from the aggregates: one count off shows (the test can fail)."""
    rng = random.Random(3)
    _insert(writer, rng, _records(rng, 500, "r"))
    _same(writer)
    oldest = "bucket = (SELECT min(bucket) FROM agg_totals)"
    writer.execute(f"UPDATE agg_totals SET clicks = clicks + 1 WHERE {oldest}")
    with pytest.raises(AssertionError):
        _same(writer)
    writer.execute(f"UPDATE agg_totals SET clicks = clicks - 1 WHERE {oldest}")
    _same(writer)
    writer.execute("UPDATE agg_findings SET decisions = decisions + 5 WHERE kind = 2")
    with pytest.raises(AssertionError):
        _same(writer, limit=1000)


def test_prunes_and_later_inserts_keep_aggregates_exact(writer: sqlite3.Connection) -> None:
    """Prunes cut hours in two (by time and by count); records come after, old and new, some twice."""
    rng = random.Random(15)
    first = _records(rng, 2000, "r")
    _insert(writer, rng, first)
    for _ in range(6):
        before = rng.choice((BASE + rng.uniform(-DAY, 2 * DAY), rng.choice(_times(writer))))
        store.prune(writer, before, rng.choice((None, 1, 37, 150)))
        _same_everywhere(writer, rng, 15)
    left = writer.execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert 0 < left < 2000
    # More records, some into hours a prune emptied, some already there (ignored).
    more = _records(rng, 800, "s") + rng.sample(first, 100) + [
        {**_record(rng, "late", BASE - DAY + 5), "event": "admin_login"}]  # kept in the log alone
    rng.shuffle(more)
    _insert(writer, rng, more)
    assert writer.execute("SELECT count(*) FROM decisions").fetchone()[0] > left + 800
    assert _same_everywhere(writer, rng, 80) > 40
    store.prune(writer, BASE + 10 * DAY)  # everything
    assert writer.execute("SELECT count(*) FROM agg_totals").fetchone()[0] == 0
    assert _same(writer).totals.decisions == 0


def test_times_beyond_the_aggregated_span_are_read_from_records(writer: sqlite3.Connection) -> None:
    """Records tens of millennia away, and before 1970, count as any other."""
    rng = random.Random(16)
    span = float(aggregates.SPAN)
    odd = (-1e300, -span - 0.5, -span, -1.5, 0.0, span - 1, span, 1e15, 1e300)
    _insert(writer, rng, [_record(rng, f"o{n}", ts) for n, ts in enumerate(odd)] + _records(rng, 200, "r"))
    assert _same(writer, limit=1000).totals.decisions == 209
    for since, until in ((None, 0.0), (-1e16, None), (-2.0, 3600.0), (1e14, 1e301), (-HOUR, None),
                         (float(aggregates.SPAN) - HOUR, None), (None, -float(aggregates.SPAN) + HOUR)):
        _same(writer, since=since, until=until, limit=1000)
    store.prune(writer, -1.0)
    _same(writer, limit=1000)


def _to_version(path: Path, version: int) -> None:
    """Make a store what an older clickguard left: no aggregates (2), no group_name either (1)."""
    with sqlite3.connect(path) as connection:
        for aggregate in aggregates.AGGREGATES:
            connection.execute(f"DROP TABLE {aggregate.table}")
        if version < 2:
            connection.execute("DROP INDEX decisions_group")
            connection.execute("ALTER TABLE decisions DROP COLUMN group_name")
        connection.execute(f"PRAGMA user_version={version}")
    connection.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_is_scanned_until_a_writer_migrates_it(tmp_path: Path, version: int) -> None:
    """Read-only, an older store is counted from its records; its next writer builds the aggregates."""
    rng = random.Random(17)
    records = _records(rng, 2000, "r")
    path = tmp_path / "audit.sqlite"
    writer = store.connect(path)
    _insert(writer, rng, records)
    store.close(writer)
    _to_version(path, version)
    reader = store.connect(path, readonly=True)
    assert not store.has_aggregates(reader)
    assert reader.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'agg%'").fetchone()[0] == 0
    old = [queries.build_report(reader, since=since, until=until, group=group, limit=1000)
           for since, until, group in _RANGES]
    reader.close()

    writer = store.connect(path)
    assert store.has_aggregates(writer) and store.has_groups(writer)
    assert writer.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert writer.execute("SELECT sum(decisions) FROM agg_totals").fetchone()[0] == 2000
    for (since, until, group), before in zip(_RANGES, old, strict=True):
        after = _same(writer, since=since, until=until, group=group, limit=1000)
        assert dataclasses.replace(after, generated_at=0) == dataclasses.replace(before, generated_at=0)
    _same_everywhere(writer, rng, 40)
    _insert(writer, rng, _records(rng, 300, "s"))  # and kept up from then on
    _same_everywhere(writer, rng, 40)
    writer.close()
    again = store.connect(path)  # a second writer finds it done: nothing rebuilt, nothing lost
    assert again.execute("SELECT sum(decisions) FROM agg_totals").fetchone()[0] == 2300
    again.close()


_RANGES = ((None, None, None), (BASE, BASE + 2 * DAY, None), (BASE + 0.5, None, None),
           (BASE - 1.25, BASE + 3 * DAY + 7, "lab"), (None, BASE + 4 * HOUR + 1, "office"))


def test_the_rendered_report_is_the_same(writer: sqlite3.Connection) -> None:
    """JSON and HTML of a report from the aggregates are those of the report from the records."""
    rng = random.Random(18)
    _insert(writer, rng, _records(rng, 1000, "r"))
    for since, until, group in _RANGES:
        fast = queries.build_report(writer, since=since, until=until, group=group, scan=False)
        slow = queries.build_report(writer, since=since, until=until, group=group, scan=True)
        slow = dataclasses.replace(slow, generated_at=fast.generated_at)
        assert report.report_json(fast) == report.report_json(slow)
        assert report.report_html(fast) == report.report_html(slow)
