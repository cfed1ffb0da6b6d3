"""Response inspection: what answered (an appliance?) and what it serves (a redirect? a payload?).

Facts from one response (status, headers, the first part of its body) become
findings:

- ``landing.appliance``: the server fingerprints as a router, camera, DVR, …
  (`fingerprint`). A fingerprint of embedded server *software* (lighttpd, Boa,
  GoAhead…) counts only together with an address hint: a bare IP host, a device
  port (TR-069's 7547, 8080, 81, …) or a residential-looking host name. Hints
  alone never make a finding. A server no fingerprint names is an appliance
  when the generic evidence of an embedded device is strong enough
  (`device_evidence`: where it is, what it says it is, how it answers; the
  proxy adds what it saw of the connection as `ServerFacts`).
- ``response.redirect``: the response sends the browser, by itself, to another
  site (`navigation`): a 30x, a Refresh, a meta refresh, script, an
  auto-submitted form, a hidden iframe. Navigations within the same site (a
  camera's ``/`` answering 302 to ``/index.asp``, a page refreshing itself)
  are how devices work and are not findings. Each target found is judged
  against the feeds and the deny list before the page is delivered.
- ``response.drive_by``: an executable or auto-download (`payload`).

A server that is an appliance, a listed or learned Thingbot, or a bare address
handing out a bot binary is a *suspect*: its redirects and payloads get the
policy's ``inspect.appliance_redirect`` and ``inspect.appliance_drive_by``
actions (block by default) instead of the plain ``response.*`` ones.

Inspection is two steps, so the costly one can run in another process
(`clickguard.inspection.pool`): *reading* (`read_response`, `read_body`) decodes
the body, sniffs payloads, matches fingerprints, weighs device evidence and reads
the navigations, with no judge and nothing but picklable values in and out (a
`Reading`); *judging* (`judge_reading`) asks the judge what it knows of the host
and of each navigation's target, and makes the findings. `inspect_response` is
the two together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from clickguard import reasons
from clickguard.decision.judge import Judge
from clickguard.decision.verdict import Finding
from clickguard.errors import URLError
from clickguard.inspection.bodies import decode_body
from clickguard.inspection.device_evidence import (
    DeviceEvidence,
    ServerFacts,
    address_hint,
    device_evidence,
    port_hint,
)
from clickguard.inspection.fingerprints import EVIDENCE_LIMIT, DeviceMatch, FingerprintDB, traits_from
from clickguard.inspection.navigation import Navigation, Technique, decode_html, find_navigations
from clickguard.inspection.navigation.results import STEPS_PER_BYTE, Steps
from clickguard.inspection.payloads import DriveBy, find_drive_by
from clickguard.urls import NormalizedURL, normalize_url, registered_domain

__all__ = ["GENERIC", "Inspection", "OffSite", "Reading", "ServerFacts", "address_hint", "head_budget",
           "inspect_body", "inspect_response", "judge_reading", "port_hint", "read_body", "read_response"]

HEAD_STEPS_FLOOR = 16_384  # the step floor of a head read where nothing can wait (see head_budget)
MAX_REDIRECT_FINDINGS = 3  # a page with more off-site navigations is reported by its first three
GENERIC = "generic device evidence"  # the name a device recognised without a fingerprint goes by

# Techniques that take the whole tab somewhere (not a frame): where a click's next hop goes.
_TOP_LEVEL = frozenset({Technique.LOCATION, Technique.REFRESH_HEADER, Technique.META_REFRESH,
                        Technique.SCRIPT, Technique.SCRIPT_TIMER, Technique.OBFUSCATED_SCRIPT,
                        Technique.FORM_AUTOSUBMIT})
_WRITES_NAVIGATION = re.compile(r"iframe|frame|refresh", re.IGNORECASE)
_TEXT_TYPES = ("text/", "application/xhtml", "image/svg")


class Inspection(NamedTuple):
    """What one response showed, and the findings it makes."""

    device: DeviceMatch | None  # the best fingerprint match, appliance or not
    appliance: bool  # the device counts as an appliance (see the module docstring)
    hints: tuple[str, ...]  # port and address hints about the server
    navigations: tuple[Navigation, ...]  # automatic navigations off the site
    drive_by: DriveBy | None
    suspect: bool  # an appliance, a Thingbot, or a bare address handing out a bot binary
    findings: tuple[Finding, ...]
    hops: tuple[str, ...] = ()  # where the browser goes next by itself (any site): a click's next hops
    evidence: DeviceEvidence | None = None  # the generic device evidence, when no fingerprint decided

    def details(self) -> dict[str, object]:
        """What the audit record keeps: fingerprint, techniques, payload type and architecture."""
        out: dict[str, object] = {}
        if self.device is not None:
            out["fingerprint"] = {"name": self.device.name, "class": str(self.device.device_class),
                                  "strength": self.device.strength, "trait": self.device.trait,
                                  "evidence": self.device.evidence, "appliance": self.appliance}
        if self.hints:
            out["hints"] = list(self.hints)
        if self.navigations:
            out["navigations"] = [{"technique": str(n.technique), "target": n.target}
                                  | ({"incomplete": n.incomplete} if n.incomplete else {})
                                  for n in self.navigations]
        if self.drive_by is not None:
            payload = self.drive_by.payload
            out["payload"] = {"kind": payload.kind if payload else None,
                              "arch": payload.arch if payload else None,
                              "label": payload.label if payload else None,
                              "filename": self.drive_by.filename,
                              "declared_type": self.drive_by.declared_type,
                              "evidence": list(self.drive_by.evidence)}
        if self.evidence is not None and self.evidence.pieces:
            out["device_evidence"] = [{"evidence": p.label, "weight": p.weight} for p in self.evidence.pieces]
        if self.suspect:
            out["suspect"] = True
        return out


def _content_type(headers: Sequence[tuple[str, str]]) -> str | None:
    """The Content-Type header's value, if any."""
    for name, value in headers:
        if name.lower() == "content-type":
            return value
    return None


def _is_text(content_type: str | None, drive_by: DriveBy | None) -> bool:
    """Whether the body is text worth decoding (not a sniffed payload, not a binary type)."""
    if drive_by is not None and drive_by.payload is not None:
        return False
    media = (content_type or "").split(";", 1)[0].strip().lower()
    # XML of any kind is a document a browser renders (and runs the script of) when it navigates to it.
    return not media or media.startswith(_TEXT_TYPES) or media == "application/xml" or media.endswith("+xml")


def _site(host: str) -> str:
    """What "the same site" compares: the registered domain, or the IP address itself."""
    return registered_domain(host) or host  # "" for IPs and public suffixes


def _off_site(navigation: Navigation, url: NormalizedURL) -> NormalizedURL | bool:
    """The target's URL when it leaves url's site; True when hidden, False when it stays."""
    if not navigation.automatic:
        return False
    if navigation.technique is Technique.DOCUMENT_WRITE and not _WRITES_NAVIGATION.search(navigation.raw):
        return False  # a written <script src>: a resource the page loads, not a place it goes
    if navigation.target is None:
        # A target the script hides, or a page the reader's budget stopped short of, is not harmless:
        # where it goes is unknown, so it counts as leaving the site.
        return (navigation.technique in (Technique.OBFUSCATED_SCRIPT, Technique.UNREAD)
                or navigation.incomplete is not None)
    if navigation.technique in (Technique.DATA_URL, Technique.JAVASCRIPT_URL):
        return True
    try:
        target = normalize_url(navigation.target)
    except URLError:
        return False  # a browser would not go there either
    return target if _site(target.host) != _site(url.host) else False


class OffSite(NamedTuple):
    """An automatic navigation that leaves the page's site, and where to."""

    navigation: Navigation
    target: NormalizedURL | None  # None: where it goes is hidden or was not read


class Reading(NamedTuple):
    """What one response is and does, read without the judge: plain, picklable values."""

    device: DeviceMatch | None  # the best fingerprint match (or the generic evidence's device)
    appliance: bool
    hints: tuple[str, ...]
    evidence: DeviceEvidence | None  # the generic device evidence, when no fingerprint decided
    drive_by: DriveBy | None
    bot_host: bool  # a bare address on an odd port handing out a bot binary
    off_site: tuple[OffSite, ...]  # the first MAX_REDIRECT_FINDINGS navigations off the site
    hops: tuple[str, ...]  # where the browser goes next by itself (any site)
    truncated: str | None = None  # why the reading saw less than the body (decoding caps), None: all


def read_response(fingerprints: FingerprintDB, *, url: NormalizedURL, status: int,
                  headers: Sequence[tuple[str, str]], body: bytes, server: ServerFacts | None = None,
                  steps: Steps | None = None) -> Reading:
    """Read one response (body: decoded, its first part only) served for url; the costly step.

    ``server``: what the proxy saw beyond headers and body, for the device evidence.
    ``steps``: the navigation reading's budget (by default one linear in the body's size).
    """
    content_type = _content_type(headers)
    drive_by = find_drive_by(url_path=url.path, headers=headers, head=body)
    text = decode_html(body, content_type) if body and _is_text(content_type, drive_by) else ""
    traits = traits_from(headers, text)
    device = fingerprints.match(traits)
    on_address, on_port = address_hint(url), port_hint(url)
    hints = tuple(h for h in (on_address, on_port) if h)
    appliance = device is not None and (device.strength == "device" or bool(hints))
    evidence: DeviceEvidence | None = None
    if not appliance:
        evidence = device_evidence(url=url, status=status, headers=headers, body=body,
                                   server_header=traits.server, authenticate=traits.realm,
                                   title=traits.title, server=server)
        if evidence.device:
            appliance = True
            device = DeviceMatch(GENERIC, evidence.device_class, "device", "generic evidence", "generic",
                                 evidence.summary()[:EVIDENCE_LIMIT])
    off_site: list[OffSite] = []
    hops: list[str] = []
    if text or 300 <= status < 400 or any(n.lower() == "refresh" for n, _ in headers):
        for navigation in find_navigations(status=status, headers=headers, body=body if text else b"",
                                           base_url=url.url, content_type=content_type, steps=steps):
            if navigation.automatic and navigation.target and navigation.technique in _TOP_LEVEL:
                hops.append(navigation.target)
            target = _off_site(navigation, url)
            if target is not False and len(off_site) < MAX_REDIRECT_FINDINGS:
                off_site.append(OffSite(navigation, target if isinstance(target, NormalizedURL) else None))
    bot_binary = drive_by is not None and (
        (drive_by.payload is not None and drive_by.payload.kind == "elf") or "bot-name" in drive_by.evidence)
    return Reading(device, appliance, hints, evidence, drive_by,
                   bot_binary and url.is_ip and on_port is not None, tuple(off_site),
                   tuple(dict.fromkeys(hops)))


def head_budget(size: int) -> Steps:
    """The navigation budget for a body's first bytes read where no worker can be waited for.

    Linear in the size like every budget, with a floor of 16 Ki steps instead of 200 k:
    an ordinary page spends about one step a byte, so only a hostile head runs out.
    """
    return Steps(STEPS_PER_BYTE * size + HEAD_STEPS_FLOOR)


def read_body(fingerprints: FingerprintDB, *, url: NormalizedURL, status: int,
              headers: Sequence[tuple[str, str]], raw: bytes, max_body: int,
              server: ServerFacts | None = None) -> Reading:
    """A held body read as the browser gets it: its Content-Encoding undone within the caps, then read.

    What did not decode, or lay beyond a cap, is not seen; the reading's ``truncated`` says why.
    """
    encoding = next((v for n, v in headers if n.lower() == "content-encoding"), None)
    body, truncated = decode_body(raw, encoding, max_decoded=max_body)
    reading = read_response(fingerprints, url=url, status=status, headers=headers, body=body, server=server)
    return reading._replace(truncated=truncated)


def judge_reading(judge: Judge, reading: Reading, *, url: NormalizedURL,
                  thingbot: bool = False) -> Inspection:
    """The findings a reading makes, with what the judge knows of the host and the targets; cheap.

    ``thingbot``: the request already matched a feed (the user continued past a warning).
    """
    device, evidence = reading.device, reading.evidence
    findings: list[Finding] = []
    if reading.appliance and device is not None and evidence is not None:
        findings.append(Finding(
            reasons.LANDING_APPLIANCE,
            f"{url.host} answers as an appliance, {device.device_class.label} "
            f"({GENERIC}: {evidence.summary()})",
            indicator=GENERIC, tags=(str(device.device_class),)))
    elif reading.appliance and device is not None:
        because = f"; {', '.join(reading.hints)}" if reading.hints else ""
        findings.append(Finding(
            reasons.LANDING_APPLIANCE,
            f"{url.host} answers as an appliance, {device.device_class.label} ({device.name}: "
            f"{device.trait} {device.evidence!r}{because})",
            indicator=device.name, tags=(str(device.device_class),)))
    for off_site in reading.off_site:
        findings += _redirect_findings(judge, off_site.navigation, off_site.target)
    drive_by = reading.drive_by
    if drive_by is not None:
        findings.append(Finding(reasons.RESPONSE_DRIVE_BY, drive_by.detail,
                                tags=tuple(drive_by.evidence),
                                indicator=drive_by.filename))
    learned = judge.learned_entry(url.host) is not None
    suspect = reading.appliance or thingbot or learned or reading.bot_host
    return Inspection(device, reading.appliance, reading.hints, tuple(o.navigation for o in reading.off_site),
                      drive_by, suspect, tuple(findings), reading.hops, evidence)


def inspect_response(judge: Judge, fingerprints: FingerprintDB, *, url: NormalizedURL, status: int,
                     headers: Sequence[tuple[str, str]], body: bytes,
                     thingbot: bool = False, server: ServerFacts | None = None) -> Inspection:
    """Inspect one response (body: its first part only) served for url: read it, then judge it.

    ``thingbot``: the request already matched a feed (the user continued past a warning).
    ``server``: what the proxy saw beyond headers and body (status line version, header
    names as received, the TLS certificate), for the generic device evidence.
    """
    reading = read_response(fingerprints, url=url, status=status, headers=headers, body=body, server=server)
    return judge_reading(judge, reading, url=url, thingbot=thingbot)


def inspect_body(judge: Judge, fingerprints: FingerprintDB, *, url: NormalizedURL, status: int,
                 headers: Sequence[tuple[str, str]], raw: bytes, max_body: int,
                 thingbot: bool = False, server: ServerFacts | None = None) -> tuple[Inspection, str | None]:
    """A held body inspected as the browser gets it, in this process: (inspection, why it saw less)."""
    reading = read_body(fingerprints, url=url, status=status, headers=headers, raw=raw, max_body=max_body,
                        server=server)
    return judge_reading(judge, reading, url=url, thingbot=thingbot), reading.truncated


def _redirect_findings(judge: Judge, navigation: Navigation,
                       target: NormalizedURL | None) -> list[Finding]:
    """response.redirect for an off-site navigation, and what the feeds say of its target."""
    how = str(navigation.technique)
    if navigation.delay:
        how += f", after {navigation.delay:g} s"
    if target is None:
        if navigation.target:
            shown = navigation.target[:200]
        elif navigation.incomplete or navigation.technique is Technique.UNREAD:
            shown = f"an address not read ({navigation.incomplete or 'the reading stopped'})"
        else:
            shown = "an address its script hides"
        return [Finding(reasons.RESPONSE_REDIRECT, f"the page sends the browser to {shown} ({how})",
                        tags=(str(navigation.technique),), indicator=navigation.target)]
    found = [Finding(reasons.RESPONSE_REDIRECT, f"the page sends the browser to {target.url[:200]} ({how})",
                     tags=(str(navigation.technique),), indicator=target.url)]
    for finding in judge.url_findings(target):
        found.append(finding._replace(detail=f"the page sends the browser to {target.host}: "
                                             f"{finding.detail}"))
    return found
