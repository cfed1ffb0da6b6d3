"""How report figures and audit records read for people, in the text and the HTML renderings alike."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from clickguard.audit.queries import DAY, Report, device_label
from clickguard.audit.store import timestamp


def shown_time(ts: float | None, bucket: int = 0) -> str:
    """A time for people: to the minute, or the day alone for daily buckets."""
    if ts is None:
        return "–"
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%d") if bucket == DAY else when.strftime("%Y-%m-%d %H:%M UTC")


def range_text(report: Report) -> str:
    """The time range of a report in words."""
    low = report.since if report.since is not None else report.first
    high = report.until if report.until is not None else report.last
    if low is None:
        return "no records"
    return f"{shown_time(low)} to {shown_time(high)}"


def record_time(record: Mapping[str, object]) -> str:
    """A record's ts for people (it is ISO 8601 already, or Unix seconds)."""
    try:
        return shown_time(timestamp(record.get("ts")))
    except ValueError:
        return str(record.get("ts"))


def record_who(record: Mapping[str, object]) -> str:
    """Who a record is about: user, else recipient, else client."""
    for key in ("user", "recipient", "client"):
        value = record.get(key)
        if value:
            return str(value)
    return "–"


def record_findings(record: Mapping[str, object]) -> list[tuple[str, str]]:
    """(code, detail) of a record's findings, or its bare reason codes."""
    details = record.get("details")
    if isinstance(details, list) and details:
        return [(str(d.get("code")), str(d.get("detail") or "")) for d in details if isinstance(d, dict)]
    reasons = record.get("reasons")
    return [(str(code), "") for code in reasons] if isinstance(reasons, list) else []


def record_device(record: Mapping[str, object]) -> str:
    """The appliance and payload inspection found, in a few words, or ''."""
    inspection = record.get("inspection")
    if not isinstance(inspection, dict):
        return ""
    parts = []
    fingerprint = inspection.get("fingerprint")
    if isinstance(fingerprint, dict) and fingerprint.get("name"):
        parts.append(f"{fingerprint['name']} ({device_label(str(fingerprint.get('class')))})")
    payload = inspection.get("payload")
    if isinstance(payload, dict) and payload.get("label"):
        parts.append(f"payload: {payload['label']}")
    return "; ".join(parts)
