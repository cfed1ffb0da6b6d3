"""What `find_navigations` reports: the techniques, one navigation found, and the step budget of a reading.

Reading a response costs steps (tokens lexed, tokens walked, operands evaluated, callers
followed); `Steps` counts them against a budget linear in the response's size. Past the
budget the reader stops with `StepsSpent`, which never leaves `find_navigations`: the
navigations found so far are kept, and one `Technique.UNREAD` navigation says that the
rest of the page was not read, so a caller never mistakes a stopped reading for "nothing
found".
"""

from __future__ import annotations

from contextvars import ContextVar
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
    UNREAD = "unread-script"  # the step budget ran out: what the rest of the page does is unknown


@dataclass(frozen=True, slots=True)
class Navigation:
    """One place a response sends the browser."""

    technique: Technique
    target: str | None  # absolute URL; None when it could not be recovered
    raw: str  # the source text that showed it, at most 200 characters
    automatic: bool  # happens without a user action
    delay: float | None = None  # seconds, for refreshes and timers when known
    # Why part of this answer is unknown (a budget or bound stopped the reading), else None.
    # An unknown "automatic" is reported as True: the caller treats it as suspicious.
    incomplete: str | None = None


def with_scheme(technique: Technique, target: str | None) -> Technique:
    """The technique, or DATA_URL / JAVASCRIPT_URL when the target has that scheme."""
    scheme = scheme_of(target)
    if scheme == "data":
        return Technique.DATA_URL
    if scheme == "javascript":
        return Technique.JAVASCRIPT_URL
    return technique


# Steps allowed per byte of the response, and a floor for small ones. Every part of the
# reader is linear in its input, so an ordinary page uses a small fraction of this.
STEPS_PER_BYTE = 8
STEPS_FLOOR = 200_000


class StepsSpent(Exception):
    """The step budget of one reading ran out."""


class Steps:
    """The step budget of reading one response: work counted as it is done, stopped past the limit."""

    __slots__ = ("limit", "spent")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def charge(self, steps: int = 1) -> None:
        """Count steps of work; past the limit, stop the reading (`StepsSpent`)."""
        self.spent += steps
        if self.spent > self.limit:
            raise StepsSpent(f"the step budget ({self.limit}) ran out")

    def poll(self) -> None:
        """Called as long work goes on between charges; a plain budget counts steps only (see inline.py)."""

    @property
    def exhausted(self) -> bool:
        """Whether the budget has run out."""
        return self.spent > self.limit


def budget_for(size: int) -> Steps:
    """The step budget for reading a response of size bytes."""
    return Steps(STEPS_PER_BYTE * size + STEPS_FLOOR)


# The budget of the reading in progress. A context variable rather than an argument passed
# through every layer: the page reader hands scripts over without knowing of steps, and
# each worker thread (or task) reading a response has its own.
ACTIVE_STEPS: ContextVar[Steps | None] = ContextVar("clickguard_navigation_steps", default=None)


def active_steps(size: int) -> Steps:
    """The budget of the reading in progress, or a new one for size bytes when none is."""
    steps = ACTIVE_STEPS.get()
    return steps if steps is not None else budget_for(size)
