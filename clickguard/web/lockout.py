"""Failed dashboard logins, counted so that an outsider locks out only itself, in bounded memory.

Three keys per attempt, each with its own limit (L is the policy's ``admin.lockout_after``,
the window its ``admin.lockout_minutes``):

- the user from this client: L failures lock this client out for this user;
- the client, whatever the user names (password spraying): CLIENT_FACTOR x L lock the client out;
- the user, from every client together: USER_SLOW_FACTOR x L failures slow the user's logins to
  one password check per USER_SLOW_SECONDS, never locking them, so a distributed guess is
  throttled while no one can lock the user out.

Locks and slow-downs last the window. Before any of that, every password check takes a
token of one bucket shared by all (CHECK_RATE a second, CHECK_BURST at once): the
dashboard's semaphore bounds how many checks run at once, the bucket how many a second.

Locked entries are never evicted. At most `LockOut.max_keys` entries are kept; to make room
the table forgets the least recently used entries that are not held (locked, slowed, or
with a check running); entries whose failures have all left the window are among the
oldest. When every entry is held, an attempt that needs a new entry is refused
(``table_full``, fail closed) until some expire. Room is searched for only when the table
is full, at most at the check rate (a token is taken first), and each search looks at an
entry at most once. In a 15-minute window the rate allows 4,500 checks, which can hold (lock or slow)
at most about 7,200 entries even at ``lockout_after: 1``; far longer windows can fill the
table, and logins from new keys then wait. Times come from the caller (`now`), so tests
drive a clock.

Several nodes (or workers) sharing state through Redis count failures together: the
dashboard publishes each failure and success and hands other nodes' to `LockOut.apply`,
which counts them as if made here and touches neither the running checks nor the check
rate. Each node keeps its own bucket and its own turn for a slowed-down user, and a
node counts another's attempt only once it has failed, not while its check runs: the
counts agree between nodes within the pub/sub delay, so guesses spread in parallel over
N nodes get at most about N x the limit (and N x the check rate) in that moment, and a
full table is searched for room at most at N x the check rate. Another node's failures
need entries like this node's own: when the table has no room, they count only under
the keys it already holds. A success clears the user-and-client failures made before it;
replayed out of order at a node's start, a failure may count although a success cleared
it, which errs toward locking out.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

# Failures from one client whatever the user names (password spraying) that lock that client out.
CLIENT_FACTOR = 2  # x admin.lockout_after
# Failures against one user from every client together that slow that user's logins down: a
# distributed guess is throttled, yet no one can lock the user out (they get a turn every few seconds).
USER_SLOW_FACTOR = 10  # x admin.lockout_after
USER_SLOW_SECONDS = 10.0  # while slowed: one password check for that user per this many seconds
# Password checks per second for the whole dashboard, whoever asks (a token bucket): at ~0.1 s a
# check (argon2id at hash-password's default), at most half a CPU.
CHECK_RATE = 5.0
CHECK_BURST = 10
MAX_KEYS = 10_000  # lock-out entries kept (user and client, client, user); see `LockOut`
TABLE_FULL_RETRY = 60.0  # seconds a login waits when every entry is one that must be kept
_KEY_MAX = 300  # characters of one key another node's event may name (ours are under 200)


@dataclass
class _Failures:
    """Failed logins under one key: a user from a client, a client, or a user from anywhere."""

    times: list[float] = field(default_factory=list)  # within the window; at most the key's limit
    in_flight: int = 0  # password checks running now
    locked_until: float = 0.0  # user-and-client and client keys: refused until then
    slowed_until: float = 0.0  # user keys: one check per USER_SLOW_SECONDS until then
    next_check: float = 0.0  # user keys while slowed: the earliest next check
    cleared_at: float = 0.0  # user-and-client keys: the last success; others' failures before it are void

    def held(self, now: float) -> bool:
        """Whether the entry must be kept: a check running, locked, or slowed down."""
        return self.in_flight > 0 or self.locked_until > now or self.slowed_until > now


class Attempt(NamedTuple):
    """A login attempt let through to the password check; report how it ended to `LockOut`."""

    keys: tuple[str, str, str]  # its user-and-client's, its client's, its user's


class Refusal(NamedTuple):
    """A login attempt stopped before its password was checked: until when, and why."""

    until: float
    reason: str  # locked_out, slowed_down, rate_limited, table_full (the audit record's result)


class _Bucket:
    """A token bucket: `rate` a second, at most `burst` at once (the global password-check rate)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at: float | None = None  # when tokens were last counted

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until there is one."""
        if self.at is not None:
            # max(): a wall clock stepped back must not take tokens away.
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class LockOut:
    """The lock-out table of one proxy process (see the module's docstring).

    An attempt counts against the limits from the moment it is let through, so parallel
    attempts cannot run more checks than the limit allows before the first fails.
    """

    def __init__(self, max_keys: int = MAX_KEYS, *, rate: float = CHECK_RATE,
                 burst: int = CHECK_BURST) -> None:
        self._entries: OrderedDict[str, _Failures] = OrderedDict()  # least recently used first
        self._bucket = _Bucket(rate, burst)
        self.max_keys = max_keys
        self._no_room_until = 0.0  # after a search for room found none: no new search until then

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def client_key(client: str) -> str:
        """An IPv4 client counts alone; an IPv6 client with its /64, which one host can walk through."""
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return f"client:{client}"
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return f"client:{address.ipv4_mapped}"
            return f"client:{ipaddress.IPv6Network((address, 64), strict=False)}"
        return f"client:{address}"

    @classmethod
    def keys(cls, user: str, client: str) -> tuple[str, str, str]:
        """An attempt's keys: user and client, client, user (the client first: it has no space in it)."""
        client_key = cls.client_key(client)
        return f"pair:{client_key} {user[:128]}", client_key, f"user:{user[:128]}"

    def _current(self, key: str, now: float, window: float) -> _Failures | None:
        """A key's entry with failures older than the window dropped, None when there is none."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.times = [t for t in entry.times if t > now - window]
        return entry

    def attempt(self, user: str, client: str, *, limit: int, window: float,
                now: float) -> Attempt | Refusal:
        """Let an attempt through to the password check (an `Attempt`), or say why not (a `Refusal`)."""
        keys = self.keys(user, client)
        pair, by_client, by_user = (self._current(key, now, window) for key in keys)
        refusal = self._refusal(pair, by_client, by_user, limit=limit, now=now)
        if refusal is not None:
            return refusal
        wait = self._bucket.take(now)
        if wait:
            return Refusal(now + wait, "rate_limited")
        if not self._make_room(keys, now, window):
            return Refusal(now + TABLE_FULL_RETRY, "table_full")
        for key in keys:
            entry = self._entries.setdefault(key, _Failures())
            self._entries.move_to_end(key)  # the most recently used
            entry.in_flight += 1
        user_entry = self._entries[keys[2]]
        if user_entry.slowed_until > now:
            user_entry.next_check = now + USER_SLOW_SECONDS
        return Attempt(keys)

    @staticmethod
    def _refusal(pair: _Failures | None, by_client: _Failures | None, by_user: _Failures | None, *,
                 limit: int, now: float) -> Refusal | None:
        """Why the lock-out state refuses an attempt now, if it does."""
        limits = ((pair, limit), (by_client, limit * CLIENT_FACTOR))
        until = max((e.locked_until for e, _ in limits if e is not None), default=0.0)
        if until > now:
            return Refusal(until, "locked_out")
        if any(e is not None and len(e.times) + e.in_flight >= n for e, n in limits):
            # Checks still running would reach the limit: refuse until one of them ends.
            return Refusal(now + 1, "locked_out")
        if by_user is not None and by_user.slowed_until > now and by_user.next_check > now:
            return Refusal(by_user.next_check, "slowed_down")
        return None

    def _make_room(self, keys: tuple[str, ...], now: float, window: float) -> bool:
        """Room for the keys not in the table, forgetting only entries not held; False if there is none.

        Entries are looked at oldest first and each at most once a search: one not held is
        forgotten, one held goes to the back (it is not looked at again before the others).
        A search frees a few more than needed so that a full table is not searched at every
        attempt; after one that found no room, the next waits until the first lock or slow-down
        it saw ends, or a check ends.
        """
        needed = sum(key not in self._entries for key in keys)
        if len(self._entries) + needed <= self.max_keys:
            return True
        if now < self._no_room_until:
            return False
        to_free = len(self._entries) + needed - self.max_keys + self.max_keys // 100
        soonest = now + TABLE_FULL_RETRY  # when a hold seen ends (a running check's end resets it)
        for _ in range(len(self._entries)):
            if to_free <= 0:
                break
            key, entry = self._entries.popitem(last=False)
            if key in keys or entry.held(now):
                self._entries[key] = entry  # kept: to the back
                if not entry.in_flight:
                    soonest = min(soonest, max(entry.locked_until, entry.slowed_until))
            else:
                to_free -= 1
        if len(self._entries) + needed <= self.max_keys:
            return True
        self._no_room_until = soonest
        return False

    def _settle(self, attempt: Attempt) -> None:
        """The attempt's check is no longer running (its entries were kept while it ran: held)."""
        self._no_room_until = 0.0  # its entries may be forgotten now
        for key in attempt.keys:
            entry = self._entries.get(key)
            if entry is not None:
                entry.in_flight = max(0, entry.in_flight - 1)

    def failed(self, attempt: Attempt, *, limit: int, window: float, now: float) -> bool:
        """Count a failed attempt; True if it locked the client out (for this user or for all)."""
        self._settle(attempt)
        return self._count(attempt.keys, at=now, limit=limit, window=window, now=now)

    def succeeded(self, attempt: Attempt, *, now: float) -> None:
        """A right password clears this client's failures for this user, and nothing else.

        The client's other failures stay (it may be trying other users), and so do the
        user's from everywhere (a distributed guess goes on whether or not the user got in).
        """
        self._settle(attempt)
        pair = self._entries.get(attempt.keys[0])
        if pair is not None:
            pair.times.clear()
            pair.cleared_at = max(pair.cleared_at, now)

    def apply(self, keys: tuple[str, ...], *, failed: bool, at: float, limit: int, window: float,
              now: float) -> None:
        """Another node's attempt under these keys (`Attempt.keys`), failed or succeeded at `at`.

        Counted as this node counts its own, but no check ran here: neither the running
        checks nor the check rate change. ValueError for keys that are not an attempt's.
        """
        pair_key, client_key, user_key = keys
        if not (pair_key.startswith("pair:client:") and client_key.startswith("client:")
                and user_key.startswith("user:") and max(map(len, keys)) <= _KEY_MAX):
            raise ValueError("not the keys of a login attempt")
        at = min(at, now)  # another node's clock ahead of ours must not stretch a lock
        if not failed:
            pair = self._entries.get(pair_key)
            if pair is not None:
                pair.times = [t for t in pair.times if t >= at]
                pair.cleared_at = max(pair.cleared_at, at)
            return
        if at <= now - window:
            return  # already out of the window (a late or replayed event)
        if self._make_room(keys, now, window):
            for key in keys:
                self._entries.setdefault(key, _Failures())
                self._entries.move_to_end(key)
        # No room: counted only under the keys already here (their locks are never evicted).
        self._count(keys, at=at, limit=limit, window=window, now=now, elsewhere=True)

    def _count(self, keys: tuple[str, ...], *, at: float, limit: int, window: float, now: float,
               elsewhere: bool = False) -> bool:
        """Count a failure made at `at` under an attempt's keys; True if it locked the client out."""
        pair, by_client, by_user = (self._current(key, now, window) for key in keys)
        if elsewhere and pair is not None and at < pair.cleared_at:
            pair = None  # made before a success here cleared the pair's failures
        locked = False
        for entry, n in ((pair, limit), (by_client, limit * CLIENT_FACTOR)):
            if entry is not None:
                bisect.insort(entry.times, at)  # another node's failure may arrive after a later one
                if len(entry.times) >= n:
                    entry.locked_until, entry.times = max(entry.locked_until, at + window), []
                    locked = True
        slow_after = limit * USER_SLOW_FACTOR
        if by_user is not None:
            bisect.insort(by_user.times, at)
            by_user.times = by_user.times[-slow_after:]
            if len(by_user.times) >= slow_after:
                # Slowed until the oldest of the last `slow_after` failures leaves the window.
                by_user.slowed_until = max(by_user.slowed_until, by_user.times[0] + window)
        return locked
