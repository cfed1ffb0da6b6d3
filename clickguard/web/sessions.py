"""Dashboard sessions and CSRF tokens, for one process or for every node sharing state through Redis.

A session is a token signed with the proxy's key (`clickguard.tokens`), held in a cookie::

    {"p": "admin-session", "usr": user, "sid": random id, "h": digest of the user's password hash,
     "b": this process's boot value  |  "e": the Redis's epoch,  "exp": expiry}

It ends at its expiry, at logout, and when the user's password hash changes in the
policy. Ended sessions are remembered until they would have expired.

Bound to the process (``b``): without shared state, or while Redis is unreachable. Only
this process takes it, and it ends when the process restarts: the ended sessions are in
its memory only.

Bound to the cluster (``e``): a login made while Redis is reachable (`Sessions.share`,
`clickguard.cluster.SharedState`). The epoch is a random value Redis holds, made once by
the first process to connect; every node shares the key (the certs directory), so the
session is valid on every node and worker. A logout on any of them is a ``session_end``
event (id: the session id; data: ``{sid, expires}``), kept in Redis until the session
would have expired: the others apply it at once, and a process starting later replays
it, so a restart forgets no logout. Redis losing its data makes a new epoch: every
cluster session ends, since the logouts it held are gone.

Fail closed for logouts. A process that cannot reach Redis now (down at its start, or
since; a frozen or cut-off Redis is noticed within a few seconds, `SharedState.connected`)
would not hear a logout made elsewhere, so it refuses cluster sessions until Redis is
back and what it holds is applied; they are not ended, and work again then. Its logins
meanwhile make sessions of the process (valid there until they expire or log out,
Redis back or not). A logout there of a cluster session still counts: ended here at
once, on the others once Redis is back (the event is kept until then; should the
process stop first, the others never hear it, and the session stays valid on them
until it expires). A process that has just reconnected may, until another node
publishes a logout it made during the outage (within about `clickguard.cluster.RETRY`),
take a session logged out there. A login or logout is answered once Redis has its
event (at most `SETTLE_SECONDS`), so the browser's next request, on whatever node,
finds it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from clickguard.cluster import SharedState
from clickguard.errors import TokenError
from clickguard.tokens import b64url_encode, sign, verify

_PURPOSE = "admin-session"  # tells a session token from the proxy's other tokens signed with the same key
SESSION_END = "session_end"  # the shared-state event kind of a logout
SETTLE_SECONDS = 0.5  # at most this long a login or logout waits for Redis to have its event


class Session(NamedTuple):
    """A logged-in user."""

    user: str
    sid: str
    expires: float
    shared: bool = False  # bound to the cluster's epoch (valid on every node), not to this process


def _hash_fingerprint(password_hash: str) -> str:
    """A short digest of the user's password hash: a changed password ends the sessions made with the old."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


class Sessions:
    """Issues and checks session tokens; remembers ended ones until they would have expired.

    A token is bound either to this process (``b``: its `boot`) or, while state is shared
    and Redis is reachable, to the cluster (``e``: the Redis's epoch); see the module's docstring.
    """

    def __init__(self) -> None:
        # Bound into every token of this process alone: they end when the proxy restarts, since
        # the list of ended sessions lives in memory and would otherwise be forgotten.
        self.boot = secrets.token_hex(8)
        self.shared: SharedState | None = None  # set by `share`
        self._ended: dict[str, float] = {}

    def share(self, shared: SharedState | None) -> None:
        """Share logouts through this shared state from now on (None: this process's sessions only)."""
        self.shared = shared
        if shared is not None:
            shared.on(SESSION_END, self._apply_end)

    def _epoch(self) -> str | None:
        """The cluster's epoch while its sessions can be honoured here (Redis reachable), else None."""
        shared = self.shared
        if shared is None or not shared.connected:
            return None
        epoch = shared.epoch
        # After reading `connected`: what Redis held at the connection (its logouts) is queued
        # by then, and applied here before any session is checked against it.
        shared.sync()
        return epoch

    def issue(self, user: str, password_hash: str, key: bytes, *, minutes: int,
              now: float) -> tuple[str, Session]:
        """A new session token for a user who just logged in (the cluster's while Redis is reachable)."""
        epoch = self._epoch()
        session = Session(user, secrets.token_urlsafe(16), now + minutes * 60, epoch is not None)
        binding = {"e": epoch} if epoch is not None else {"b": self.boot}
        payload = {"p": _PURPOSE, "usr": user, "sid": session.sid, **binding,
                   "h": _hash_fingerprint(password_hash)}
        return sign(payload, key, expires=session.expires), session

    def check(self, token: str, users: Mapping[str, str], key: bytes, *, now: float,
              ending: bool = False) -> Session:
        """The session a token stands for; TokenError saying why it does not.

        ending: for a logout, a cluster session is taken while Redis is unreachable too (its
        end is kept for the others): refusing it would leave it alive elsewhere.
        """
        payload = verify(token, key, now=now)
        user, sid = payload.get("usr"), payload.get("sid")
        if payload.get("p") != _PURPOSE or not isinstance(user, str) or not isinstance(sid, str):
            raise TokenError("not a dashboard session")
        shared = "e" in payload
        if shared:
            epoch = self._epoch()
            if epoch is None and not ending:
                raise TokenError("a session shared through Redis, which this process cannot reach now (or "
                                 "shares no state): it would not hear a logout made elsewhere")
            if epoch is not None and payload["e"] != epoch:
                raise TokenError("session from before the shared state lost its data")
        elif payload.get("b") != self.boot:
            raise TokenError("session from before the proxy restarted")
        if sid in self._ended:
            raise TokenError("session has been logged out")
        if user not in users or payload.get("h") != _hash_fingerprint(users[user]):
            raise TokenError("user removed or password changed since the login")
        return Session(user, sid, float(payload["exp"]), shared)

    def end(self, session: Session, *, now: float) -> concurrent.futures.Future[bool] | None:
        """Log a session out (it stays refused until it would have expired); a cluster session everywhere.

        The future says when Redis has the logout (None: nothing to share).
        """
        self._remember(session.sid, session.expires, now=now)
        if session.shared and self.shared is not None:
            return self.shared.publish(SESSION_END, session.sid,
                                       {"sid": session.sid, "expires": session.expires},
                                       expires=session.expires)
        return None

    def _apply_end(self, sid: str, data: dict[str, Any] | None) -> None:
        """Another node logged a session out (from the shared state, on the event loop)."""
        if data is None:
            return  # never forgotten before it expires
        if data["sid"] != sid:
            raise ValueError(f"the logout of {data['sid']!r} under the id {sid!r}")
        self._remember(sid, float(data["expires"]), now=time.time())

    def _remember(self, sid: str, expires: float, *, now: float) -> None:
        """Refuse a session until it would have expired (forgetting those that have)."""
        self._ended = {ended: exp for ended, exp in self._ended.items() if exp > now}
        self._ended[sid] = expires


def csrf_token(key: bytes, binding: str) -> str:
    """The CSRF token for a session id or a login nonce: an HMAC only the proxy can make."""
    # The prefix keeps these MACs apart from the signed tokens made with the same key.
    return b64url_encode(hmac.new(key, b"clickguard admin csrf\0" + binding.encode(),
                                  hashlib.sha256).digest()[:16])


def csrf_ok(key: bytes, binding: str, given: str) -> bool:
    """Whether a form's CSRF token is the one bound to this session or nonce (constant time)."""
    return hmac.compare_digest(csrf_token(key, binding).encode(), given.encode("ascii", "replace"))


async def settled(written: concurrent.futures.Future[bool] | None) -> None:
    """Wait (at most SETTLE_SECONDS) until Redis has an event, or it is kept because Redis is down."""
    if written is not None and not written.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wrap_future(written), SETTLE_SECONDS)
