"""Checking one target: its URL, host and addresses against the judge, with resolution when asked."""

from __future__ import annotations

import functools
from typing import NamedTuple

from clickguard.decision.judge import Judge
from clickguard.decision.verdict import Finding, Verdict
from clickguard.intel.resolver import ResolveError, Resolver
from clickguard.urls import NormalizedURL

_new_tuple = tuple.__new__


class Decision(NamedTuple):
    """A verdict with the facts it was reached on."""

    url: NormalizedURL
    verdict: Verdict
    addresses: tuple[str, ...]  # what the host resolved to; the host itself for an IP literal


def _already_blocked(judge: Judge, findings: list[Finding]) -> bool:
    """True when the findings so far block whatever the addresses turn out to be."""
    return any(judge.policy.action_for(f.code) == "block" for f in findings)


def check_offline(judge: Judge, url: NormalizedURL) -> Decision:
    """Judge a URL without resolving its host name (the CLI's default)."""
    findings = judge.url_findings(url)
    addresses = (url.host,) if url.is_ip else ()
    incomplete = _unloaded(judge)
    verdict = judge.decide(findings, allowed_by=judge.allowed_by(url, addresses), incomplete=incomplete)
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (`check -` makes one per line).
    return _new_tuple(Decision, (url, verdict, addresses))


async def check(judge: Judge, url: NormalizedURL, resolver: Resolver) -> Decision:
    """Judge a URL, its host and every address the host resolves to."""
    findings = judge.url_findings(url)
    incomplete = _unloaded(judge)
    addresses: tuple[str, ...] = (url.host,) if url.is_ip else ()
    if not url.is_ip and not _already_blocked(judge, findings):
        try:
            addresses = await resolver.resolve(url.host)
        except ResolveError as e:
            incomplete = incomplete or str(e)
        else:
            findings += judge.address_findings(addresses, host=url.host)
    verdict = judge.decide(findings, allowed_by=judge.allowed_by(url, addresses), incomplete=incomplete)
    return Decision(url, verdict, addresses)


def with_origin(judge: Judge, decision: Decision, origin_ip: str, *,
                home_line: str | None = None) -> Decision:
    """The decision with the e-mail origin's findings (origin.thingbot, origin.home_line…) added.

    ``home_line`` is the evidence in words that the origin is a home line, when the mail's
    Received: header showed one (the click link carries it).
    """
    findings = judge.origin_findings(origin_ip, decision.url.host, home_line=home_line)
    if not findings:
        return decision
    verdict = judge.decide([*decision.verdict.findings, *findings],
                           allowed_by=decision.verdict.allowed_by)
    return decision._replace(verdict=verdict)


def _unloaded(judge: Judge) -> str | None:
    """Why a check is incomplete when some feed has never loaded, else None."""
    return _unloaded_words(judge.unloaded_feeds) if judge.unloaded_feeds else None


@functools.lru_cache(maxsize=16)
def _unloaded_words(feeds: tuple[str, ...]) -> str:
    """The words of _unloaded, built once per set of feeds (every URL checked asks)."""
    return "feeds not loaded yet: " + ", ".join(feeds)
