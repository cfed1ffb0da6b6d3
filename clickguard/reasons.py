"""Every reason code clickguard reports, once: name, default action, plain words, whether it may be continued.

Findings carry these stable dotted codes; policies refer to them, the audit log,
reports and pages show them. The first six are fixed by DESIGN.md because other
tools read them; the rest are the project's own. IT's feed categories add codes of
the form ``landing.<category>`` and ``origin.<category>`` (`feed_code`, `origin_code`);
nothing else may invent one.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Literal, NamedTuple

type Action = Literal["allow", "warn", "block"]

# How strong an action is, to take the strongest of several findings.
SEVERITY: Mapping[Action, int] = types.MappingProxyType({"allow": 0, "warn": 1, "block": 2})


class Reason(NamedTuple):
    """One reason code and what belongs to it."""

    code: str
    action: Action  # what the code gets when the policy does not say
    text: str  # one plain sentence for the user, on block and warn pages and in reports
    continuable: bool = True  # whether a warn page for it may offer "continue"


LANDING_THINGBOT = "landing.thingbot"
ORIGIN_THINGBOT = "origin.thingbot"
ORIGIN_UNKNOWN_LANDING = "origin.unknown_landing"
ORIGIN_HOME_LINE = "origin.home_line"
LANDING_APPLIANCE = "landing.appliance"
RESPONSE_REDIRECT = "response.redirect"
RESPONSE_DRIVE_BY = "response.drive_by"
LINK_BAD_SIGNATURE = "link.bad_signature"
POLICY_DENY = "policy.deny"
CHECK_INCOMPLETE = "check.incomplete"

REASONS: Mapping[str, Reason] = types.MappingProxyType({r.code: r for r in (
    Reason(LANDING_THINGBOT, "block",
           "The site is on a list of infected devices (Thingbots: routers, cameras, DVRs and other "
           "appliances taken over by botnets) or of servers that spread malware."),
    Reason(ORIGIN_THINGBOT, "warn",
           "The e-mail this link came from was sent through a device known to be infected."),
    # No feed needed: the relay's Received: header shows a consumer line talking to our relay
    # directly, as hijacked routers and cameras do (clickguard.mail.home_line).
    Reason(ORIGIN_HOME_LINE, "warn",
           "The e-mail this link came from was sent straight from a home Internet line, "
           "the way hijacked routers, cameras and PCs send spam."),
    Reason(ORIGIN_UNKNOWN_LANDING, "warn",
           "That infected sender's link leads to a site your organisation does not know."),
    Reason(LANDING_APPLIANCE, "allow",
           "The page is served by a home or office appliance (router, camera, DVR, NAS, TV…), "
           "not by an ordinary web server."),
    Reason(RESPONSE_REDIRECT, "allow", "The page tries to send your browser somewhere else."),
    Reason(RESPONSE_DRIVE_BY, "warn", "The page tries to make your computer download a program."),
    # A tampered link's target cannot be trusted, so there is nothing to continue to.
    Reason(LINK_BAD_SIGNATURE, "block",
           "The protected link has been altered, so where it leads cannot be trusted.",
           continuable=False),
    Reason(POLICY_DENY, "block", "Your organisation's policy does not allow this site."),
    Reason(CHECK_INCOMPLETE, "block",
           "The site could not be checked completely, and your organisation's policy is to stop "
           "what cannot be checked."),
)})

# What each code gets when the policy does not say.
DEFAULT_ACTIONS: Mapping[str, Action] = types.MappingProxyType(
    {code: reason.action for code, reason in REASONS.items()})


def feed_code(category: str) -> str:
    """The code a landing's match in a feed of this category makes, e.g. ``landing.thingbot``."""
    return f"landing.{category}"


def origin_code(category: str) -> str:
    """The code an e-mail origin's match in a feed of this category makes, e.g. ``origin.thingbot``."""
    return f"origin.{category}"


def text(code: str) -> str:
    """One plain sentence for a reason code, including the codes of IT's own feed categories."""
    reason = REASONS.get(code)
    if reason is not None:
        return reason.text
    prefix, _, name = code.partition(".")
    if prefix == "landing":
        return f"The site is on a reputation list of the category “{name}”."
    return f"clickguard found: {code}."


def continuable(code: str) -> bool:
    """Whether a warning for this code may offer "continue" (IT's feed categories may)."""
    reason = REASONS.get(code)
    return reason.continuable if reason is not None else True
