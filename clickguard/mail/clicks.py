"""Following a click: the hops a browser takes after a click link carry the click's context.

The click endpoint answers with a redirect to the target and expects the
browser's next request for exactly that URL; when a hop answers with another
redirect, its target is expected next, one hop further. Requests are matched by
client, user and normalised URL, for a short time, so an unrelated request
never inherits a click's e-mail origin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from cachetools import TTLCache

from clickguard.mail.home_line import Sign

FOLLOW_SECONDS = 120.0
MAX_HOPS = 20


class ClickMark(NamedTuple):
    """What a navigation carries from the click that started it."""

    click_id: str  # the reference of the click's audit record
    origin_ip: str | None  # the e-mail's origin, as the click link carries it
    recipient: str | None  # as the click link names the recipient (hashed, plain or absent)
    hop: int  # 0 is the click itself, 1 the target it redirected to, …
    home_line: Sign = Sign(0)  # the origin's home-line signs, as the click link carries them (none: 0)

    def as_dict(self) -> dict[str, object]:
        """The mark by field name, as signed tokens carry it (a new field never shifts another)."""
        out: dict[str, object] = {"id": self.click_id, "origin": self.origin_ip, "recipient": self.recipient,
                                  "hop": self.hop}
        if self.home_line:
            out["home"] = int(self.home_line)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ClickMark:
        """The mark `as_dict` made; ValueError for a field missing, unknown or of the wrong type."""
        unknown = set(data) - {"id", "origin", "recipient", "hop", "home"}
        if unknown:
            # A field this code does not know is context it would drop: refuse rather than lose it.
            raise ValueError(f"unknown click fields {sorted(unknown)}")
        click_id, origin_ip, recipient, hop = (data.get("id"), data.get("origin"), data.get("recipient"),
                                               data.get("hop"))
        if not isinstance(click_id, str) or not click_id:
            raise ValueError("the click has no id")
        if not isinstance(hop, int) or isinstance(hop, bool) or hop < 0:
            raise ValueError("the click's hop is not a count")
        if not (origin_ip is None or isinstance(origin_ip, str)) \
                or not (recipient is None or isinstance(recipient, str)):
            raise ValueError("the click's origin or recipient is not text")
        home = data.get("home", 0)
        if not isinstance(home, int) or isinstance(home, bool) or not 0 <= home < 256:
            raise ValueError("the click's home-line signs are not a byte")
        return cls(click_id, origin_ip, recipient, hop, Sign(home))


type TrailChange = Callable[[str, str | None, str, ClickMark | None], None]


class ClickTrail:
    """Expected next hops of recent clicks: (client, user, URL) -> the click they continue.

    `shared`, when set, is told of every expectation set (with its mark) and used (None), so
    that other workers and nodes can follow the click too (`apply` takes theirs).
    """

    def __init__(self, *, ttl: float = FOLLOW_SECONDS, maxsize: int = 100_000) -> None:
        self._expected: TTLCache[tuple[str, str | None, str], ClickMark] = TTLCache(
            maxsize, ttl, timer=time.monotonic)
        self.shared: TrailChange | None = None

    def __len__(self) -> int:
        return len(self._expected)

    def expect(self, client: str, user: str | None, url: str, mark: ClickMark) -> None:
        """The browser of this client is expected to request url next, as hop mark.hop."""
        if mark.hop <= MAX_HOPS:
            self._expected[(client, user, url)] = mark
            if self.shared is not None:
                self.shared(client, user, url, mark)

    def follow(self, client: str, user: str | None, url: str) -> ClickMark | None:
        """The click this request continues, if it was expected (each expectation is used once)."""
        if not self._expected:
            return None
        mark = self._expected.pop((client, user, url), None)
        if mark is not None and self.shared is not None:
            self.shared(client, user, url, None)
        return mark

    def apply(self, client: str, user: str | None, url: str, mark: ClickMark | None) -> None:
        """Another node's change: an expectation set (mark) or used (None)."""
        if mark is None:
            self._expected.pop((client, user, url), None)
        elif mark.hop <= MAX_HOPS:
            self._expected[(client, user, url)] = mark
