"""The signed token behind a warn page's "continue" link: what it carries, by name, with a version.

The payload, signed by `clickguard.tokens.sign` (which adds ``exp``)::

    {"v": 2,                                  this layout's version
     "u": URL,                                the (normalised) URL warned about
     "c": CLIENT, "usr": USER or null,        who was warned: only they may continue
     "ref": REF,                              the warn page's audit record
     "codes": [CODE, ...],                    the reasons warned about
     "click": {"id": ID, "origin": IP or null, "recipient": R or null, "hop": N,
               "home": SIGNS (only when the origin is a home line)}}
                                              the click the navigation continues; absent if none

Version 1, before this one, had no ``v`` and the click as a list in `ClickMark`'s
field order ``[id, origin, recipient, hop]``. A continue link lives for
``warn.token_minutes`` (at most 120) and may sit in a browser while clickguard is
upgraded, so version 1 is read by that order. A version this code does not know
is refused with a `TokenError` saying so: it may carry context this code would drop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from clickguard.errors import TokenError
from clickguard.mail.clicks import ClickMark
from clickguard.tokens import sign, verify

VERSION = 2
_LEGACY = 1  # the version of a payload without "v"


class Continuation(NamedTuple):
    """What a continue link grants, and to whom."""

    url: str
    client: str
    user: str | None
    ref: str  # the warn page's audit record
    codes: tuple[str, ...]
    click: ClickMark | None


def continue_token(grant: Continuation, key: bytes, *, expires: float) -> str:
    """The signed token of a continue link, valid until Unix time `expires`."""
    payload: dict[str, object] = {"v": VERSION, "u": grant.url, "c": grant.client, "usr": grant.user,
                                  "ref": grant.ref, "codes": list(grant.codes)}
    if grant.click is not None:
        payload["click"] = grant.click.as_dict()
    return sign(payload, key, expires=expires)


def read_continue_token(token: str, key: bytes, *, now: float) -> Continuation:
    """What a continue token grants; TokenError saying why if it does not verify or cannot be read."""
    payload = verify(token, key, now=now)
    version = payload.get("v", _LEGACY)
    if version not in (_LEGACY, VERSION) or isinstance(version, bool):
        raise TokenError(f"this continue link is of a version this clickguard does not know ({version!r}); "
                         "open the page again for a new one")
    try:
        return Continuation(_text(payload, "u"), _text(payload, "c"), _optional_text(payload, "usr"),
                            _text(payload, "ref"), _codes(payload), _click(payload.get("click"), version))
    except ValueError as e:
        raise TokenError(f"continue link payload is malformed: {e}") from e


def _text(payload: dict[str, Any], name: str) -> str:
    """A field that must be text."""
    value = payload.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name!r} is not text")
    return value


def _optional_text(payload: dict[str, Any], name: str) -> str | None:
    """A field that is text or null."""
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name!r} is not text")
    return value


def _codes(payload: dict[str, Any]) -> tuple[str, ...]:
    """The reason codes warned about."""
    codes = payload.get("codes", [])
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise ValueError("'codes' is not a list of codes")
    return tuple(codes)


def _click(click: object, version: int) -> ClickMark | None:
    """The click a continue link carries, by name (version 2) or by ClickMark's field order (version 1)."""
    if click is None:
        return None
    if version == _LEGACY:
        if not isinstance(click, list) or len(click) != 4:
            raise ValueError("'click' is not the four fields of a click")
        click = dict(zip(("id", "origin", "recipient", "hop"), click, strict=True))
    if not isinstance(click, dict):
        raise ValueError("'click' is not an object")
    return ClickMark.from_dict(click)
