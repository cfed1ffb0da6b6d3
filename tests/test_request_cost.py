"""The audit record made cheaper to build says what it said: its timestamp (formatted once a
millisecond) and its line (one JSON encoder for every record)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

from clickguard.audit.writer import _ENCODE, _timestamp, record
from clickguard.decision.verdict import Finding


def test_the_timestamp_is_nows_millisecond() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamps = [_timestamp() for _ in range(2000)]
    after = datetime.now(UTC)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s) for s in stamps)
    assert stamps == sorted(stamps)
    first, last = (datetime.fromisoformat(s.replace("Z", "+00:00")) for s in (stamps[0], stamps[-1]))
    assert before <= first <= last <= after
    time.sleep(0.002)
    assert _timestamp() > stamps[-1]  # a later millisecond gets its own text


def test_every_millisecond_is_formatted_exactly() -> None:
    # ms / 1000 is a float: each millisecond of a day must come back as itself, never the one before.
    start = 1_764_860_000_000
    for ms in range(start, start + 86_400_000, 997):
        assert datetime.fromtimestamp(ms / 1000, UTC).microsecond == (ms % 1000) * 1000


def test_a_records_line_is_what_json_dumps_wrote() -> None:
    entry = record(ref="abc", event="decision", client="127.0.0.1", user="Zoë", url="http://x.example/\udcff",
                   action="block", findings=[Finding("landing.thingbot", "listed \u2603")], host="x.example")
    assert _ENCODE(entry) == json.dumps(entry, separators=(",", ":"))
    assert _ENCODE(entry).isascii()
