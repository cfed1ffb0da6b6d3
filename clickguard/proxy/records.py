"""The audit record of everything the proxy decides, built in one place.

A record has the fields DESIGN.md fixes (``ts ref event client user url action
reasons origin_ip``, see `clickguard.audit.writer.record`), then what is known
of the target: ``host`` and the ``addresses`` judged; the click a navigation
continues: ``click_id``, ``hop``, ``recipient``; and an event's own context
(``navigation``, ``inspection``, ``continued``, ``allowed_by``, ``streamed``,
``warn_ref``); ``group``, the policy group whose rules applied (none: the top-level
policy's). A field that is not known is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from clickguard.audit import writer as audit
from clickguard.decision.check import Decision
from clickguard.decision.verdict import Finding
from clickguard.mail.clicks import ClickMark
from clickguard.reasons import Action

# decision: a request; click: a click link; hop: a navigation a click led to; continue: past a
# warn page; response: what a response showed; tunnel: a CONNECT not intercepted; connected: the
# address a connection actually reached.
type Event = Literal["decision", "click", "hop", "continue", "response", "tunnel", "connected"]


def audit_record(event: Event, client: str, user: str | None, url: str, action: Action,
                 findings: Iterable[Finding], *, decision: Decision | None = None, host: str | None = None,
                 mark: ClickMark | None = None, ref: str | None = None,
                 **extra: object) -> dict[str, object]:
    """One audit record: the decision's host and addresses, the click it continues, the event's extras.

    `ref` defaults to the click's id for the click itself (the click's own record
    is the one its id names), else to a new reference. A continue names the click
    it continues (id and origin) but is none of its hops.
    """
    if ref is None:
        ref = mark.click_id if mark is not None and mark.hop == 0 else audit.new_ref()
    as_hop = mark if event != "continue" else None
    return audit.record(
        ref=ref, event=event, client=client, user=user, url=url, action=action, findings=findings,
        origin_ip=mark.origin_ip if mark else None,
        host=decision.url.host if decision else host,
        addresses=list(decision.addresses) if decision and decision.addresses else None,
        click_id=mark.click_id if mark else None, hop=as_hop.hop if as_hop else None,
        recipient=as_hop.recipient if as_hop else None, **extra)
