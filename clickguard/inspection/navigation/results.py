"""What `find_navigations` reports: the techniques and one navigation found."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from clickguard.inspection.navigation.url_resolution import scheme_of

RAW_MAX = 200  # the longest source text a navigation keeps as evidence


class Technique(StrEnum):
    """How a response sends the browser somewhere."""

    LOCATION = "location-header"
    REFRESH_HEADER = "refresh-header"
    META_REFRESH = "meta-refresh"
    SCRIPT = "script"
    WINDOW_OPEN = "window-open"
    SCRIPT_TIMER = "script-timer"
    OBFUSCATED_SCRIPT = "obfuscated-script"
    DOCUMENT_WRITE = "document-write"
    FORM_AUTOSUBMIT = "form-autosubmit"
    HIDDEN_IFRAME = "hidden-iframe"
    DATA_URL = "data-url"
    JAVASCRIPT_URL = "javascript-url"


@dataclass(frozen=True, slots=True)
class Navigation:
    """One place a response sends the browser."""

    technique: Technique
    target: str | None  # absolute URL; None when it could not be recovered
    raw: str  # the source text that showed it, at most 200 characters
    automatic: bool  # happens without a user action
    delay: float | None = None  # seconds, for refreshes and timers when known


def with_scheme(technique: Technique, target: str | None) -> Technique:
    """The technique, or DATA_URL / JAVASCRIPT_URL when the target has that scheme."""
    scheme = scheme_of(target)
    if scheme == "data":
        return Technique.DATA_URL
    if scheme == "javascript":
        return Technique.JAVASCRIPT_URL
    return technique
