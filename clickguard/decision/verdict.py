"""Findings and verdicts: what was found about a request, and what policy makes of it."""

from __future__ import annotations

from typing import NamedTuple

from clickguard import reasons
from clickguard.intel.index import Match
from clickguard.reasons import Action
from clickguard.vocab import Kind


class Finding(NamedTuple):
    """One reason code with its evidence, in words a user can read."""

    code: str  # one of `clickguard.reasons`, e.g. reasons.LANDING_THINGBOT
    detail: str
    feed: str | None = None
    tags: tuple[str, ...] = ()
    indicator: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form used by the CLI and the audit log."""
        out: dict[str, object] = {"code": self.code, "detail": self.detail}
        if self.feed is not None:
            out["feed"] = self.feed
        if self.tags:
            out["tags"] = list(self.tags)
        if self.indicator is not None:
            out["indicator"] = self.indicator
        return out


class Verdict(NamedTuple):
    """The action policy takes on a request, and why."""

    action: Action
    findings: tuple[Finding, ...] = ()
    allowed_by: str | None = None  # the allow-list entry that overrode the findings, if any

    @property
    def codes(self) -> list[str]:
        """Reason codes, de-duplicated, in order of appearance."""
        return list(dict.fromkeys(f.code for f in self.findings))


def _describe_tags(tags: tuple[str, ...]) -> str:
    """Tags as a reader wants them: counts spelled out, the rest listed."""
    words: list[str] = []
    rest: list[str] = []
    for tag in tags:
        name, _, value = tag.partition(":")
        if name == "count" and value:
            words.append(f"on {value} blocklists")
        elif name == "port" and value:
            words.append(f"port {value}")
        else:
            rest.append(tag)
    if rest:
        words.append("tags: " + ", ".join(rest))
    return f" ({'; '.join(words)})" if words else ""


def finding_from_match(match: Match, *, via: str | None = None) -> Finding:
    """Turn an index match into a `landing.<category>` finding with a plain-language detail."""
    a = match.attribution
    listed = f"{'which is ' if via else ''}listed by feed '{a.feed}'{_describe_tags(a.tags)}"
    if match.kind is Kind.CIDR:
        what = f"{match.subject} is in the network {match.indicator}, {listed}"
    elif match.kind is Kind.DOMAIN and match.indicator != match.subject:
        what = f"{match.subject} is under the domain {match.indicator}, {listed}"
    elif match.kind is Kind.URL:
        what = f"the address {match.indicator} is {listed}"
    elif match.kind is Kind.PATH:
        what = f"the path {match.indicator} is a known malware payload name, {listed}"
    elif via is not None:
        what = f"{match.subject}, {listed}"
    else:
        what = f"{match.subject} is {listed}"
    if via is not None:
        what = f"{via} resolves to {what}"
    return Finding(reasons.feed_code(a.category), what, a.feed, a.tags, match.indicator)
