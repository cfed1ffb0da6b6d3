"""The admin dashboard: hashes, lock-out, sessions, CSRF, https only; its pages through the real proxy."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import platform
import re
import ssl
import subprocess
import sys
import time
import unicodedata
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import argon2
import pytest

from clickguard.audit import report, store
from clickguard.audit import writer as audit
from clickguard.errors import PolicyError, TokenError
from clickguard.policy.model import check_policy, parse_policy
from clickguard.proxy.runtime import Runtime
from clickguard.tokens import sign
from clickguard.web import dashboard, passwords
from clickguard.web.dashboard import Dashboard, Request, https_location, safe_next, same_origin
from clickguard.web.lockout import CHECK_BURST, Attempt, LockOut, Refusal
from clickguard.web.passwords import (
    DEFAULT_SCRYPT_PARAMS,
    Argon2Params,
    ScryptParams,
    decoy,
    hash_password,
    is_outdated,
    parse_hash,
    verify_password,
)
from clickguard.web.sessions import Sessions, csrf_ok, csrf_token
from tests.harness import (
    HTML,
    REPO,
    THINGBOT_ORIGIN,
    Proxy,
    click_link,
    start_proxy,
    upstream,
    wait_until,
    write_policy,
)

PASSWORD = "correct horse battery"
# What every dashboard page must send, spelled out: no script, no frames, forms only to itself.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
       "frame-ancestors 'none'")
HASH = hash_password(PASSWORD)  # one argon2id for the module: each costs ~0.1 s
OLD_HASH = hash_password(PASSWORD, params=DEFAULT_SCRYPT_PARAMS)  # as made before argon2id
KEY = b"k" * 32

# -- password hashes -----------------------------------------------------------------------------


@pytest.mark.parametrize(("stored_text", "prefix"), [
    (HASH, "$argon2id$v=19$m=19456,t=2,p=1$"),
    (OLD_HASH, "scrypt$n=16384,r=8,p=1$"),
])
def test_hash_verifies_only_its_password(stored_text: str, prefix: str) -> None:
    stored = parse_hash(stored_text)
    assert stored_text.startswith(prefix)
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + " ", stored)
    assert not verify_password("", stored)
    assert hash_password(PASSWORD, params=stored.params) != stored_text  # a random salt each time


def test_argon2id_hashes_are_argon2_cffis_own_format() -> None:
    """A hash made by argon2-cffi (or libargon2's tools) is read, and ours is read by argon2-cffi."""
    theirs = argon2.PasswordHasher().hash(PASSWORD)  # its default: RFC 9106's low-memory setting
    stored = parse_hash(theirs)
    assert stored.params == Argon2Params(65536, 3, 4) and verify_password(PASSWORD, stored)
    assert not verify_password("not the password", stored)
    assert argon2.PasswordHasher().verify(HASH, PASSWORD)
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        argon2.PasswordHasher().verify(HASH, "not the password")


@pytest.mark.parametrize(("params", "outdated"), [
    (DEFAULT_SCRYPT_PARAMS, True),                # every scrypt hash is made again
    (ScryptParams(n=2**16, r=8, p=1), True),
    (Argon2Params(19456, 2, 1), False),           # what hash-password makes
    (Argon2Params(65536, 3, 4), False),           # stronger
    (Argon2Params(7168, 5, 1), True),             # allowed, but less memory x passes than today's
])
def test_outdated_hashes(params: Argon2Params | ScryptParams, outdated: bool) -> None:
    assert is_outdated(parse_hash(hash_password(PASSWORD, params=params))) is outdated


def test_password_is_compared_in_one_unicode_spelling() -> None:
    stored = parse_hash(hash_password("café-tür-1"))
    assert verify_password(unicodedata.normalize("NFD", "café-tür-1"), stored)


@pytest.mark.parametrize("stored_text", [HASH, OLD_HASH])
def test_decoy_matches_nothing_at_the_same_cost(stored_text: str) -> None:
    stored = parse_hash(stored_text)
    fake = decoy(stored)
    assert (fake.params, len(fake.salt), len(fake.key)) == (stored.params, len(stored.salt), len(stored.key))
    assert fake.salt != stored.salt and not verify_password(PASSWORD, fake)


SALT = "A" * 22  # 16 bytes
KEY_B64 = "B" * 43  # 32 bytes
A_SALT = "AAAA+/" * 3 + "AAAA"  # 16 bytes, standard base64 without padding
A_KEY = "BBBB/+" * 7 + "B"  # 32 bytes

BAD_HASHES = [
    ("hunter2", "must be a password hash made by `clickguard admin hash-password`"),
    (f"$argon2i$v=19$m=19456,t=2,p=1${A_SALT}${A_KEY}", "must be a password hash"),  # argon2i, not id
    (f"$argon2id$m=19456,t=2,p=1${A_SALT}${A_KEY}", "must be a password hash"),  # no version
    (f"$argon2id$v=16$m=19456,t=2,p=1${A_SALT}${A_KEY}", "version must be 19"),
    (f"$argon2id$v=19$m=19456,t=2,p=1${A_SALT}=${A_KEY}", "must be a password hash"),  # padding
    (f"$argon2id$v=19$m=19456,t=2,p=1$A${A_KEY}", "not valid base64"),
    (f"$argon2id$v=19$m=19456,t=0,p=1${A_SALT}${A_KEY}", "t must be 1-64 and p 1-16"),
    (f"$argon2id$v=19$m=19456,t=2,p=17${A_SALT}${A_KEY}", "t must be 1-64 and p 1-16"),
    (f"$argon2id$v=19$m=4096,t=9,p=1${A_SALT}${A_KEY}", "too weak"),
    (f"$argon2id$v=19$m=8192,t=1,p=1${A_SALT}${A_KEY}", "too weak"),
    (f"$argon2id$v=19$m=524288,t=1,p=1${A_SALT}${A_KEY}", "cost too much for every login"),
    (f"$argon2id$v=19$m=131072,t=8,p=1${A_SALT}${A_KEY}", "cost too much for every login"),
    (f"$argon2id$v=19$m=19456,t=2,p=1$AAAA${A_KEY}", "salt must be 16-64 bytes"),
    (f"bcrypt$n=16384,r=8,p=1${SALT}${KEY_B64}", "must be a password hash"),
    (f"scrypt$n=16384,r=8,p=1${SALT}${KEY_B64}=", "must be a password hash"),  # padding: not ours
    (f"scrypt$n=20000,r=8,p=1${SALT}${KEY_B64}", "n must be a power of 2 of at least 16384"),
    (f"scrypt$n=1024,r=8,p=1${SALT}${KEY_B64}", "n must be a power of 2 of at least 16384"),
    (f"scrypt$n=16384,r=0,p=1${SALT}${KEY_B64}", "r must be 1-64 and p 1-16"),
    (f"scrypt$n=1048576,r=8,p=1${SALT}${KEY_B64}", "cost too much for every login"),
    (f"scrypt$n=16384,r=8,p=1$AAAA${KEY_B64}", "salt must be 16-64 bytes"),
    (f"scrypt$n=16384,r=8,p=1${SALT}$BBBB", "hash 32-64 bytes"),
    (f"scrypt$n=16384,r=8,p=1$A${KEY_B64}", "not valid base64"),
]


@pytest.mark.parametrize(("text", "message"), BAD_HASHES)
def test_bad_hashes_are_refused_without_echoing_them(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        parse_hash(text)
    assert text not in str(raised.value)


POLICY_BAD_HASHES = f"""\
version: 1
admin:
  users:
    alice: hunter2
    bob: scrypt$n=1024,r=8,p=1${SALT}${KEY_B64}
    "carol smith": {HASH}
    dave: 12345
  lockout_after: 0
"""


def test_policy_reports_bad_hashes_at_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_BAD_HASHES)
    problems = [str(p) for p in check_policy(path)]
    assert problems == [
        f"{path}:4: admin.users.alice: must be a password hash made by `clickguard admin hash-password` "
        "($argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>, or an older scrypt$n=16384,r=8,p=1$<salt>$<hash>)",
        f"{path}:5: admin.users.bob: scrypt n must be a power of 2 of at least 16384 (got n=1024)",
        f"{path}:6: admin.users.carol smith: a user name is 1-64 letters, digits, '_', '.', '@' or '-' "
        "(got 'carol smith')",
        f"{path}:7: admin.users.dave: must be a password hash made by `clickguard admin hash-password` "
        "(text)",
        f"{path}:8: admin.lockout_after: must be at least 1 (got 0)",
    ]
    assert "hunter2" not in "\n".join(problems)


@pytest.mark.parametrize(("stdin", "ok"), [
    (f"{PASSWORD}\n", True),
    (f"{PASSWORD}\r\n", True),   # typed on Windows
    ("short\n", False),          # fewer than 8 characters
    ("", False),
])
def test_cli_hash_password_reads_stdin(stdin: str, ok: bool) -> None:
    done = subprocess.run([sys.executable, "-m", "clickguard.cli", "admin", "hash-password"], input=stdin,
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert (done.returncode == 0) is ok, done.stderr
    if ok:
        assert done.stdout.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert verify_password(PASSWORD, parse_hash(done.stdout.strip()))
        assert PASSWORD not in done.stdout + done.stderr
    else:
        assert done.stdout == "" and "at least 8 characters" in done.stderr


def test_policy_admin_defaults() -> None:
    admin = parse_policy(f"admin:\n  users:\n    alice: {HASH}\n", filename="p", base_dir=Path()).admin
    assert (admin.lockout_after, admin.lockout_minutes, admin.session_minutes) == (5, 15, 60)
    assert dict(admin.users) == {"alice": HASH}
    old = parse_policy(f"admin:\n  users:\n    bob: {OLD_HASH}\n", filename="p", base_dir=Path()).admin
    assert dict(old.users) == {"bob": OLD_HASH}  # scrypt hashes made before argon2id still load
    assert not parse_policy("version: 1\n", filename="p", base_dir=Path()).admin.users
    with pytest.raises(PolicyError):
        parse_policy("admin:\n  session_minutes: 0\n", filename="p", base_dir=Path())


# -- lock-out ------------------------------------------------------------------------------------

WINDOW = 15 * 60.0


def fail(lockout: LockOut, user: str, client: str, now: float, limit: int = 5) -> Attempt | Refusal:
    """One attempt that fails its password check (or is refused before it)."""
    attempt = lockout.attempt(user, client, limit=limit, window=WINDOW, now=now)
    if isinstance(attempt, Attempt):
        lockout.failed(attempt, limit=limit, window=WINDOW, now=now)
    return attempt


def admitted(lockout: LockOut, user: str, client: str, now: float, limit: int = 5) -> bool:
    """Whether an attempt would be let through to the password check now (it is, and succeeds)."""
    attempt = lockout.attempt(user, client, limit=limit, window=WINDOW, now=now)
    if isinstance(attempt, Attempt):
        lockout.succeeded(attempt, now=now)
        return True
    return False


def unlimited(max_keys: int = 10_000) -> LockOut:
    """A lock-out table without the global check rate, for tests about the other limits."""
    return LockOut(max_keys, rate=1e9, burst=10**9)


def test_an_outsider_locks_only_itself_out_for_that_user() -> None:
    lockout = unlimited()
    for n in range(5):
        assert isinstance(fail(lockout, "alice", "10.0.0.66", 1000.0 + n), Attempt)
    refused = lockout.attempt("alice", "10.0.0.66", limit=5, window=WINDOW, now=1010.0)
    assert refused == Refusal(1004.0 + WINDOW, "locked_out")  # for the window from the locking failure
    assert admitted(lockout, "alice", "10.0.0.1", 1010.0)  # alice, from her own machine
    assert admitted(lockout, "bob", "10.0.0.66", 1010.0)  # the outsider, for another user


def test_a_client_spraying_many_users_is_locked_out_for_all() -> None:
    lockout = unlimited()
    for n in range(10):  # CLIENT_FACTOR x 5, under 5 for each user
        assert isinstance(fail(lockout, f"user{n % 3}", "10.0.0.66", 1000.0), Attempt)
    refused = lockout.attempt("carol", "10.0.0.66", limit=5, window=WINDOW, now=1001.0)
    assert isinstance(refused, Refusal) and refused.reason == "locked_out"
    assert admitted(lockout, "carol", "10.0.0.67", 1001.0)


def test_lockout_counts_an_ipv6_client_by_its_64() -> None:
    lockout = unlimited()
    for n in range(5):
        fail(lockout, "alice", f"2001:db8:1:2::{n + 1}", 1000.0)
    assert not admitted(lockout, "alice", "2001:db8:1:2::99", 1001.0)
    assert admitted(lockout, "alice", "2001:db8:1:3::1", 1001.0)


def test_a_distributed_guess_slows_the_user_down_but_never_locks_them_out() -> None:
    lockout = unlimited()
    for n in range(50):  # USER_SLOW_FACTOR x 5, from 50 clients: none of them locked
        assert isinstance(fail(lockout, "alice", f"10.1.{n}.1", 1000.0), Attempt)
    # One check for alice per 10 seconds now, from any client, hers too...
    assert admitted(lockout, "alice", "10.0.0.1", 1001.0)
    refused = lockout.attempt("alice", "10.0.0.2", limit=5, window=WINDOW, now=1002.0)
    assert refused == Refusal(1011.0, "slowed_down")
    assert admitted(lockout, "alice", "10.0.0.2", 1011.0)
    assert admitted(lockout, "bob", "10.0.0.2", 1011.0)  # ...and other users as before
    # ...until the failures leave the window.
    assert admitted(lockout, "alice", "10.0.0.3", 1000.0 + WINDOW + 1)
    assert admitted(lockout, "alice", "10.0.0.4", 1000.0 + WINDOW + 1)


def test_password_checks_have_a_global_rate() -> None:
    lockout = LockOut(rate=5.0, burst=CHECK_BURST)
    for n in range(CHECK_BURST):  # a burst from everywhere: every attempt a new user and client
        assert isinstance(fail(lockout, f"user{n}", f"10.2.0.{n}", 1000.0), Attempt)
    refused = lockout.attempt("alice", "10.0.0.1", limit=5, window=WINDOW, now=1000.0)
    assert refused == Refusal(1000.2, "rate_limited")  # one more token in 1/5 s
    assert admitted(lockout, "alice", "10.0.0.1", 1000.2)
    assert not admitted(lockout, "alice", "10.0.0.1", 1000.2)
    # Refusals for a lock take no token: a locked-out client cannot use up the rate of others.
    lockout = LockOut(rate=5.0, burst=CHECK_BURST)
    for _ in range(5):
        fail(lockout, "alice", "10.0.0.66", 1000.0)
    for _ in range(100):
        assert lockout.attempt("alice", "10.0.0.66", limit=5, window=WINDOW, now=1000.0) == Refusal(
            1000.0 + WINDOW, "locked_out")
    assert sum(admitted(lockout, f"user{n}", "10.0.0.1", 1000.0) for n in range(10)) == CHECK_BURST - 5


def test_lockout_expires_and_old_failures_are_forgotten() -> None:
    lockout = unlimited()
    for _ in range(5):
        fail(lockout, "alice", "10.0.0.1", 1000.0)
    assert not admitted(lockout, "alice", "10.0.0.1", 1000.0 + WINDOW - 1)
    assert admitted(lockout, "alice", "10.0.0.1", 1000.0 + WINDOW + 1)
    # Four failures, then a pause longer than the window: the count starts again.
    lockout = unlimited()
    for _ in range(4):
        fail(lockout, "bob", "10.0.0.2", 1000.0)
    for _ in range(4):
        assert isinstance(fail(lockout, "bob", "10.0.0.2", 1000.0 + WINDOW + 1), Attempt)


def test_parallel_attempts_cannot_exceed_the_limit() -> None:
    lockout = unlimited()
    running = [lockout.attempt("alice", "10.0.0.1", limit=3, window=WINDOW, now=1000.0) for _ in range(3)]
    assert all(isinstance(a, Attempt) for a in running)
    assert not isinstance(lockout.attempt("alice", "10.0.0.1", limit=3, window=WINDOW, now=1000.0), Attempt)


def test_success_clears_that_clients_failures_for_that_user_only() -> None:
    lockout = unlimited()
    for _ in range(4):
        fail(lockout, "alice", "10.0.0.1", 1000.0)
    assert admitted(lockout, "alice", "10.0.0.1", 1000.0)  # the right password
    for _ in range(4):  # alice from 10.0.0.1 starts again...
        assert isinstance(fail(lockout, "alice", "10.0.0.1", 1000.0), Attempt)
    # ...but 10.0.0.1 keeps its eight failures: two more, on anyone, lock it out for all.
    assert isinstance(fail(lockout, "bob", "10.0.0.1", 1000.0), Attempt)
    assert isinstance(fail(lockout, "carol", "10.0.0.1", 1000.0), Attempt)
    assert not admitted(lockout, "dave", "10.0.0.1", 1000.0)


def test_lockout_table_stays_bounded() -> None:
    lockout = unlimited(max_keys=100)
    for n in range(1000):
        fail(lockout, f"user{n}", f"10.0.{n // 256}.{n % 256}", 1000.0 + n * WINDOW)
    assert len(lockout) <= 100


def test_a_full_table_never_evicts_locked_entries_and_fails_closed() -> None:
    lockout = unlimited(max_keys=24)
    # Ten outsiders each lock themselves out for alice, and slow alice down (50 failures):
    # held are 10 (user and client) entries and alice's; the ten clients' are not (5 of 10).
    for n in range(10):
        for _ in range(5):
            fail(lockout, "alice", f"10.3.0.{n}", 1000.0)
    assert len(lockout) == 21
    # Entries not held come and go: a flood of new names makes them the oldest...
    for n in range(100):
        fail(lockout, f"name{n}", "10.4.0.1", 1001.0, limit=100)
    assert len(lockout) == 24
    # ...and the locks stay, however many new keys arrived.
    for n in range(10):
        assert lockout.attempt("alice", f"10.3.0.{n}", limit=5, window=WINDOW, now=1002.0) == Refusal(
            1000.0 + WINDOW, "locked_out")
    # Checks running hold their entries too: 11 + one client + 2 x 6 = 24, the whole table.
    running = [lockout.attempt(f"slow{n}", "10.5.0.1", limit=100, window=WINDOW, now=1003.0)
               for n in range(6)]
    assert all(isinstance(a, Attempt) for a in running)
    refused = lockout.attempt("bob", "10.6.0.1", limit=5, window=WINDOW, now=1003.0)
    assert refused == Refusal(1063.0, "table_full")  # fail closed: no room, nothing evicted
    assert len(lockout) == 24
    assert lockout.attempt("alice", "10.3.0.0", limit=5, window=WINDOW, now=1003.0) == Refusal(
        1000.0 + WINDOW, "locked_out")
    assert admitted(lockout, "slow0", "10.5.0.1", 1003.0)  # keys already in the table still work
    # Once the checks end their entries can go; once the locks expire, theirs too.
    for attempt in running:
        assert isinstance(attempt, Attempt)
        lockout.failed(attempt, limit=100, window=WINDOW, now=1004.0)
    assert admitted(lockout, "bob", "10.6.0.1", 1004.0)
    assert not admitted(lockout, "alice", "10.3.0.0", 1004.0)
    assert admitted(lockout, "alice", "10.3.0.0", 1000.0 + WINDOW + 1)


def elsewhere(lockout: LockOut, user: str, client: str, at: float, *, failed: bool = True,
              now: float | None = None, limit: int = 5) -> None:
    """Another node's attempt, as its event reaches this node's table."""
    lockout.apply(LockOut.keys(user, client), failed=failed, at=at, limit=limit, window=WINDOW,
                  now=at if now is None else now)


def test_another_nodes_failures_count_here_without_a_check_or_a_token() -> None:
    lockout = LockOut(rate=5.0, burst=CHECK_BURST)
    for n in range(4):
        elsewhere(lockout, "alice", "10.0.0.66", 1000.0 + n)
    assert isinstance(fail(lockout, "alice", "10.0.0.66", 1004.0), Attempt)  # the fifth, here: locked
    assert lockout.attempt("alice", "10.0.0.66", limit=5, window=WINDOW, now=1005.0) == Refusal(
        1004.0 + WINDOW, "locked_out")
    # The other way round: a lock made by failures elsewhere alone, for the window from the last.
    for n in range(5):
        elsewhere(lockout, "bob", "10.0.0.67", 1000.0 + n)
    assert lockout.attempt("bob", "10.0.0.67", limit=5, window=WINDOW, now=1005.0) == Refusal(
        1004.0 + WINDOW, "locked_out")
    # Nine failures elsewhere took none of this node's check tokens (one was taken above).
    assert sum(admitted(lockout, f"user{n}", "10.0.0.1", 1004.0) for n in range(20)) == CHECK_BURST - 1
    assert not admitted(lockout, "alice", "10.0.0.66", 1004.0 + WINDOW - 1)
    assert admitted(lockout, "alice", "10.0.0.66", 1004.0 + WINDOW + 1)


def test_another_nodes_late_replayed_or_forged_events() -> None:
    lockout = unlimited()
    # Out of the window already (replayed late), or made ahead of this node's clock: bounded.
    for _ in range(5):
        elsewhere(lockout, "alice", "10.0.0.1", 1000.0, now=1000.0 + WINDOW + 1)
    assert len(lockout) == 0
    for _ in range(5):
        elsewhere(lockout, "alice", "10.0.0.2", 9e9, now=1000.0)
    assert lockout.attempt("alice", "10.0.0.2", limit=5, window=WINDOW, now=1001.0) == Refusal(
        1000.0 + WINDOW, "locked_out")
    for keys in [("user:alice", "client:10.0.0.1", "pair:client:10.0.0.1 alice"), ("a", "b"),
                 ("pair:client:10.0.0.1 " + "x" * 400, "client:10.0.0.1", "user:x")]:
        with pytest.raises(ValueError):
            lockout.apply(keys, failed=True, at=1000.0, limit=5, window=WINDOW, now=1000.0)


def test_a_success_elsewhere_clears_the_failures_made_before_it() -> None:
    lockout = unlimited()
    for n in range(4):
        fail(lockout, "alice", "10.0.0.1", 1000.0 + n)
    elsewhere(lockout, "alice", "10.0.0.1", 1010.0, failed=False)
    # A failure elsewhere from before that success reaches this node after it: it does not count.
    elsewhere(lockout, "alice", "10.0.0.1", 1005.0, now=1011.0)
    for n in range(4):
        assert isinstance(fail(lockout, "alice", "10.0.0.1", 1012.0 + n), Attempt)
    assert admitted(lockout, "alice", "10.0.0.1", 1020.0)  # four since the success, not five
    # The client keeps its failures (it may be trying other users): 4 + 1 + 4 + 1 lock it out for all.
    assert isinstance(fail(lockout, "bob", "10.0.0.1", 1021.0), Attempt)
    assert not admitted(lockout, "carol", "10.0.0.1", 1022.0)
    # A success here makes other nodes' failures from before it void too.
    fail(lockout, "dave", "10.0.0.2", 1000.0)
    assert admitted(lockout, "dave", "10.0.0.2", 1001.0)
    for _ in range(5):
        elsewhere(lockout, "dave", "10.0.0.2", 1000.5, now=1002.0)
    assert admitted(lockout, "dave", "10.0.0.2", 1003.0)


def test_another_nodes_failures_never_grow_a_full_table_nor_evict_its_locks() -> None:
    lockout = unlimited(max_keys=6)
    for n in range(2):  # two outsiders lock themselves out for alice
        for _ in range(5):
            fail(lockout, "alice", f"10.3.0.{n}", 1000.0)
    running = lockout.attempt("bob", "10.3.0.0", limit=5, window=WINDOW, now=1001.0)  # a check under way
    assert isinstance(running, Attempt)
    for n in range(50):  # new keys from elsewhere: only entries not held make room for them
        elsewhere(lockout, f"name{n}", f"10.4.0.{n}", 1001.0)
        assert len(lockout) <= 6
    for n in range(2):
        assert lockout.attempt("alice", f"10.3.0.{n}", limit=5, window=WINDOW, now=1002.0) == Refusal(
            1000.0 + WINDOW, "locked_out")
    # Held entries fill the table: another node's failures count under the keys it has (the client's).
    for _ in range(5):
        elsewhere(lockout, "erin", "10.3.0.0", 1002.0)
    assert len(lockout) <= 6
    lockout.failed(running, limit=5, window=WINDOW, now=1003.0)
    assert lockout.attempt("frank", "10.3.0.0", limit=5, window=WINDOW, now=1003.0) == Refusal(
        1002.0 + WINDOW, "locked_out")


# -- sessions, CSRF, return targets --------------------------------------------------------------

USERS = {"alice": HASH}


def test_session_token_round_trip() -> None:
    sessions = Sessions()
    token, session = sessions.issue("alice", HASH, KEY, minutes=60, now=1000.0)
    assert sessions.check(token, USERS, KEY, now=1000.0 + 3599) == session
    assert session.expires == 1000.0 + 3600


def flip(token: str, at: int) -> str:
    """The token with one character changed."""
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1:]


@pytest.mark.parametrize("damage", [
    lambda t: flip(t, 5),            # payload changed
    lambda t: flip(t, len(t) - 2),   # signature changed
    lambda t: t[: len(t) // 2],      # truncated
    lambda t: t + "x",
])
def test_tampered_session_token_is_refused(damage) -> None:
    sessions = Sessions()
    token, _ = sessions.issue("alice", HASH, KEY, minutes=60, now=1000.0)
    with pytest.raises(TokenError):
        sessions.check(damage(token), USERS, KEY, now=1000.0)


def test_session_ends_at_expiry_logout_password_change_and_restart() -> None:
    sessions = Sessions()
    token, session = sessions.issue("alice", HASH, KEY, minutes=60, now=1000.0)
    with pytest.raises(TokenError, match="expired"):
        sessions.check(token, USERS, KEY, now=1000.0 + 3601)
    with pytest.raises(TokenError, match="password changed"):
        sessions.check(token, {"alice": hash_password(PASSWORD)}, KEY, now=1000.0)
    with pytest.raises(TokenError, match="user removed"):
        sessions.check(token, {"bob": HASH}, KEY, now=1000.0)
    with pytest.raises(TokenError, match="before the proxy restarted"):
        Sessions().check(token, USERS, KEY, now=1000.0)
    with pytest.raises(TokenError, match="does not verify"):
        sessions.check(token, USERS, b"other key" * 4, now=1000.0)
    sessions.end(session, now=1000.0)
    with pytest.raises(TokenError, match="logged out"):
        sessions.check(token, USERS, KEY, now=1000.0)


def test_other_tokens_signed_with_the_key_are_not_sessions() -> None:
    sessions = Sessions()
    # A warn page's continue token carries a user too; it must never open the dashboard.
    continue_token = sign({"u": "http://x/", "c": "127.0.0.1", "usr": "alice", "sid": "s",
                           "b": sessions.boot}, KEY, expires=5000)
    with pytest.raises(TokenError, match="not a dashboard session"):
        sessions.check(continue_token, USERS, KEY, now=1000.0)


def test_csrf_token_is_bound_to_its_session() -> None:
    token = csrf_token(KEY, "session:abc")
    assert csrf_ok(KEY, "session:abc", token)
    assert not csrf_ok(KEY, "session:abd", token)
    assert not csrf_ok(KEY, "login:abc", token)
    assert not csrf_ok(b"other key" * 4, "session:abc", token)
    assert not csrf_ok(KEY, "session:abc", "")
    assert not csrf_ok(KEY, "session:abc", "ünïcode")


@pytest.mark.parametrize(("headers", "ok"), [
    ({}, True),
    ({"origin": "http://clickguard.local"}, True),
    ({"origin": "http://clickguard.local:8080", "sec-fetch-site": "same-origin"}, True),
    ({"sec-fetch-site": "none"}, True),
    ({"origin": "https://clickguard.local"}, False),  # the https origin posting to http
    ({"origin": "http://evil.example"}, False),
    ({"origin": "http://clickguard.local.evil.example"}, False),
    ({"origin": "null"}, False),
    ({"sec-fetch-site": "cross-site"}, False),
    ({"sec-fetch-site": "same-site", "origin": "http://clickguard.local"}, False),
])
def test_same_origin(headers: dict[str, str], ok: bool) -> None:
    assert same_origin(headers, "http", "clickguard.local") is ok


@pytest.mark.parametrize(("value", "expected"), [
    (None, "/admin"),
    ("/admin/host?h=example.com", "/admin/host?h=example.com"),
    ("/admin?since=7d", "/admin?since=7d"),
    ("https://evil.example/admin", "/admin"),
    ("//evil.example/admin", "/admin"),
    ("/\\evil.example", "/admin"),
    ("/admin/../v1/x", "/admin"),
    ("/admin/%2e%2e/x", "/admin"),
    ("/continue?t=x", "/admin"),
    ("/administrator", "/admin"),
    ("/admin\r\nSet-Cookie: x=y", "/admin"),
    ("javascript:alert(1)", "/admin"),
])
def test_return_target_stays_under_admin(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


# -- the handler, without a proxy -----------------------------------------------------------------


def start_runtime(directory: Path, admin: str) -> Runtime:
    """The proxy's runtime on a policy with this `admin` section, its audit log and store in the directory."""
    policy = directory / "policy.yaml"
    # Both sinks named: the defaults are relative to the working directory, the checkout.
    policy.write_text(f"audit: {{log: audit.jsonl, store: audit.sqlite}}\nadmin:\n{admin}")
    runtime = Runtime(state_dir=directory / "var", certs_dir=directory / "certs")
    runtime.policy_path = policy
    runtime.install(runtime.build())
    return runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime with one dashboard user (alice) locked out after two failures."""
    runtime = start_runtime(tmp_path, f"  users:\n    alice: {HASH}\n  lockout_after: 2\n")
    yield runtime
    runtime.close()


@pytest.fixture
def board(runtime: Runtime) -> Dashboard:
    """A dashboard over that runtime, as the proxy's endpoint makes it."""
    return Dashboard(runtime)


def request(method: str, path: str, *, query: str = "", body: str = "", cookie: str = "",
            headers: Mapping[str, str] | None = None, scheme: str = "https",
            client: str = "127.0.0.1") -> Request:
    """A request as the endpoint hands it to the dashboard."""
    return Request(method, path, query, {"cookie": cookie, **(headers or {})}, body.encode(), client, scheme)


def cookies_of(answer: dashboard.Answer) -> dict[str, str]:
    """name -> value of each Set-Cookie."""
    out = {}
    for name, value in answer.headers:
        if name == "Set-Cookie":
            key, _, rest = value.partition("=")
            out[key] = rest.split(";")[0]
    return out


async def log_in(board: Dashboard, password: str = PASSWORD, user: str = "alice", *,
                 client: str = "127.0.0.1") -> dashboard.Answer:
    """Fetch the form, post it; the answer to the POST."""
    form = await board.handle(request("GET", "/admin/login", client=client))
    nonce = cookies_of(form)["clickguard_login"]
    token = re.search(r'name="csrf" value="([^"]+)"', form.body.decode())
    assert token
    body = urllib.parse.urlencode({"user": user, "password": password, "csrf": token[1]})
    return await board.handle(request("POST", "/admin/login", body=body, cookie=f"clickguard_login={nonce}",
                                      client=client))


async def test_login_post_without_or_with_a_foreign_csrf_token_is_refused(board: Dashboard) -> None:
    form = await board.handle(request("GET", "/admin/login"))
    nonce = cookies_of(form)["clickguard_login"]
    for body in [urllib.parse.urlencode({"user": "alice", "password": PASSWORD}),
                 urllib.parse.urlencode({"user": "alice", "password": PASSWORD,
                                         "csrf": csrf_token(board.runtime.key, "login:other")})]:
        answer = await board.handle(request("POST", "/admin/login", body=body,
                                            cookie=f"clickguard_login={nonce}"))
        assert answer.status == 403 and "clickguard_admin" not in cookies_of(answer)
    # A right password with the token but from another site: refused too.
    token = re.search(r'name="csrf" value="([^"]+)"', form.body.decode())
    assert token
    body = urllib.parse.urlencode({"user": "alice", "password": PASSWORD, "csrf": token[1]})
    answer = await board.handle(request("POST", "/admin/login", body=body, cookie=f"clickguard_login={nonce}",
                                        headers={"origin": "https://evil.example"}))
    assert answer.status == 403


async def test_login_logout_and_the_views(board: Dashboard) -> None:
    answer = await log_in(board)
    assert answer.status == 303 and dict(answer.headers)["Location"] == "/admin"
    session = cookies_of(answer)["clickguard_admin"]
    for set_cookie in (v for k, v in answer.headers if k == "Set-Cookie"):
        attributes = set_cookie.split("; ")[1:]
        assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/admin"} <= set(attributes), set_cookie
    cookie = f"clickguard_admin={session}"
    for path in ["/admin/feeds", "/admin/policy"]:
        page = await board.handle(request("GET", path, cookie=cookie))
        assert page.status == 200, page.body
        headers = dict(page.headers)
        assert headers["Content-Security-Policy"] == CSP
        assert headers["Cache-Control"] == "no-store"
    page = await board.handle(request("GET", "/admin/policy", cookie=cookie))
    assert board.runtime.state is not None and board.runtime.state.loaded.sha256 in page.body.decode()
    assert HASH not in page.body.decode()  # user names, never their hashes
    assert 'id="rehash"' not in page.body.decode() and "<dd>none</dd>" in page.body.decode()
    # Logout: without the CSRF token refused, with it the session ends.
    refused = await board.handle(request("POST", "/admin/logout", cookie=cookie))
    assert refused.status == 403
    assert (await board.handle(request("GET", "/admin/feeds", cookie=cookie))).status == 200
    csrf = csrf_token(board.runtime.key, "session:" + board.sessions.check(
        session, {"alice": HASH}, board.runtime.key, now=board.clock()).sid)
    out = await board.handle(request("POST", "/admin/logout", cookie=cookie,
                                     body=urllib.parse.urlencode({"csrf": csrf})))
    assert out.status == 303 and cookies_of(out)["clickguard_admin"] == ""
    after = await board.handle(request("GET", "/admin/feeds", cookie=cookie))
    assert after.status == 303 and dict(after.headers)["Location"].startswith("/admin/login?next=")


async def test_unauthenticated_views_redirect_to_login_with_a_safe_return(board: Dashboard) -> None:
    answer = await board.handle(request("GET", "/admin/host", query="h=example.com"))
    assert answer.status == 303
    location = dict(answer.headers)["Location"]
    assert location == "/admin/login?next=" + urllib.parse.quote("/admin/host?h=example.com", safe="")
    form = await board.handle(request("GET", "/admin/login", query="next=https%3A%2F%2Fevil.example%2F"))
    assert 'name="next" value="/admin"' in form.body.decode()


async def test_http_goes_to_https_and_no_form_is_read(board: Dashboard, runtime: Runtime) -> None:
    for method in ["GET", "HEAD"]:
        answer = await board.handle(request(method, "/admin/host", query="h=example.com", scheme="http"))
        assert (answer.status, answer.body) == (301, b"")
        assert dict(answer.headers)["Location"] == "https://clickguard.local/admin/host?h=example.com"
    # A session that is valid over https is not even looked at over http.
    session = cookies_of(await log_in(board))["clickguard_admin"]
    cookie = f"clickguard_admin={session}"
    assert (await board.handle(request("GET", "/admin/feeds", cookie=cookie))).status == 200
    answer = await board.handle(request("GET", "/admin/feeds", cookie=cookie, scheme="http"))
    assert answer.status == 301 and b"Feeds" not in answer.body
    # A login posted over http, with the right password and a good CSRF token: refused unread.
    form = await board.handle(request("GET", "/admin/login"))
    nonce = cookies_of(form)["clickguard_login"]
    token = re.search(r'name="csrf" value="([^"]+)"', form.body.decode())
    assert token
    body = urllib.parse.urlencode({"user": "alice", "password": PASSWORD, "csrf": token[1]})
    keys_before = len(board.lockout)
    answer = await board.handle(request("POST", "/admin/login", body=body, cookie=f"clickguard_login={nonce}",
                                        scheme="http", client="127.0.0.9"))
    assert answer.status == 403 and not cookies_of(answer) and "only over https" in answer.body.decode()
    assert len(board.lockout) == keys_before  # no attempt was counted: no password was checked
    logout = await board.handle(request("POST", "/admin/logout", cookie=cookie, scheme="http"))
    assert logout.status == 403 and not cookies_of(logout)
    runtime.close()  # flush the audit log
    log = (runtime.state_dir.parent / "audit.jsonl").read_text()
    records = [json.loads(line) for line in log.splitlines()]
    refused = [r for r in records if r["client"] == "127.0.0.9"]
    assert [(r["action"], r["result"], r["admin_user"], r["url"]) for r in refused] == [
        ("block", "sent_over_http", "", "http://clickguard.local/admin/login")]


@pytest.mark.parametrize(("path", "query", "location"), [
    ("/admin", "", "https://clickguard.local/admin"),
    ("/admin/login", "next=%2Fadmin%2Ffeeds", "https://clickguard.local/admin/login?next=%2Fadmin%2Ffeeds"),
    ("/admin//evil.example/x", "", "https://clickguard.local/admin//evil.example/x"),  # still a path here
    ("/admin@evil.example", "", "https://clickguard.local/admin@evil.example"),  # after the host's "/"
    ("/admin/x\r\nLocation: https://evil.example", "", "https://clickguard.local/admin"),
    ("/admin/ünïcode", "", "https://clickguard.local/admin"),
    ("/admin/a b", "", "https://clickguard.local/admin"),
    ("/admin/" + "a" * 3000, "", "https://clickguard.local/admin"),
])
def test_https_location_stays_on_the_click_host(path: str, query: str, location: str) -> None:
    assert https_location("clickguard.local", path, query) == location
    assert urllib.parse.urlsplit(location).netloc == "clickguard.local"


async def test_lockout_refuses_without_checking_and_audits(board: Dashboard, runtime: Runtime) -> None:
    assert (await log_in(board, "wrong")).status == 403
    assert (await log_in(board, "wrong")).status == 403
    answer = await log_in(board, PASSWORD)  # lockout_after: 2
    assert answer.status == 429 and "clickguard_admin" not in cookies_of(answer)
    assert "Too many failed logins" in answer.body.decode() and dict(answer.headers)["Retry-After"] == "900"
    # The same user from another client: let in.
    assert (await log_in(board, PASSWORD, client="127.0.0.2")).status == 303
    runtime.close()  # flush the audit log
    records = (runtime.state_dir.parent / "audit.jsonl").read_text()
    assert records.count('"event":"admin_login"') == 4
    assert '"result":"locked_out"' in records
    assert PASSWORD not in records and "wrong" not in records.replace("wrong_", "")


async def test_a_full_lockout_table_keeps_its_locks_and_refuses_new_keys(runtime: Runtime) -> None:
    now = [1000.0]
    board = Dashboard(runtime, clock=lambda: now[0])
    board.lockout = LockOut(max_keys=4)
    # Two outsiders lock themselves out for alice (lockout_after: 2); B's entries push out
    # A's client entry, which held nothing, never A's lock.
    for outsider in ["127.0.0.5", "127.0.0.6"]:
        for _ in range(2):
            assert (await log_in(board, "guess", client=outsider)).status == 403
    assert len(board.lockout) == 4
    # Full: alice's user entry and B's client entry may go, the two locks may not. Alice from
    # her own machine needs two new entries, and only one can be made: refused, fail closed.
    answer = await log_in(board, PASSWORD, client="127.0.0.1")
    assert answer.status == 429 and "clickguard_admin" not in cookies_of(answer)
    assert "Too many logins are locked out" in answer.body.decode()
    for outsider in ["127.0.0.5", "127.0.0.6"]:  # the locks stay
        answer = await log_in(board, PASSWORD, client=outsider)
        assert answer.status == 429 and "Too many failed logins" in answer.body.decode()
    assert len(board.lockout) == 3  # B's client entry went, in vain
    now[0] += 15 * 60 + 1  # the locks expire: their entries can go
    assert (await log_in(board, PASSWORD, client="127.0.0.1")).status == 303
    runtime.close()
    results = [json.loads(line)["result"] for line in
               (runtime.state_dir.parent / "audit.jsonl").read_text().splitlines()]
    assert results == ["bad_password", "bad_password; now locked out"] * 2 + [
        "table_full", "locked_out", "locked_out", "ok"]


async def test_an_outdated_hash_logs_in_and_is_flagged(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    runtime = start_runtime(tmp_path, f"  users:\n    alice: {HASH}\n    bob: {OLD_HASH}\n")
    board = Dashboard(runtime)
    try:
        with caplog.at_level(logging.WARNING, logger="clickguard.web.dashboard"):
            answer = await log_in(board, PASSWORD, user="bob")
        assert answer.status == 303
        [warning] = [r.getMessage() for r in caplog.records if "outdated" in r.getMessage()]
        assert "'bob'" in warning and "scrypt" in warning and "clickguard admin hash-password" in warning
        assert "admin.users.bob" in warning
        cookie = f"clickguard_admin={cookies_of(answer)['clickguard_admin']}"
        page = (await board.handle(request("GET", "/admin/policy", cookie=cookie))).body.decode()
        assert 'id="rehash"' in page and "admin.users.bob" in page
        assert '<span id="outdated">bob (scrypt)</span>' in page
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="clickguard.web.dashboard"):
            answer = await log_in(board, PASSWORD, user="alice")
        assert answer.status == 303 and not [r for r in caplog.records if "outdated" in r.getMessage()]
        cookie = f"clickguard_admin={cookies_of(answer)['clickguard_admin']}"
        page = (await board.handle(request("GET", "/admin/policy", cookie=cookie))).body.decode()
        assert 'id="rehash"' not in page and '<span id="outdated">bob (scrypt)</span>' in page
    finally:
        runtime.close()


class Derivation(NamedTuple):
    """One key derivation: the password, the salt, and the cost (scheme and parameters)."""

    password: bytes
    salt: bytes
    cost: tuple[object, ...]


def counting(calls: list[Derivation], monkeypatch: pytest.MonkeyPatch) -> None:
    """Record every derivation of scrypt (hashlib) and argon2id (argon2-cffi, as passwords calls it)."""
    real_scrypt, real_argon2 = hashlib.scrypt, argon2.low_level.hash_secret_raw

    def scrypt(password: bytes, *, salt: bytes, n: int, r: int, p: int, maxmem: int = 0,
               dklen: int = 64) -> bytes:
        calls.append(Derivation(password, salt, ("scrypt", n, r, p, maxmem, dklen)))
        return real_scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)

    def argon2id(secret: bytes, salt: bytes, **cost: Any) -> bytes:
        calls.append(Derivation(secret, salt, ("argon2", *sorted(cost.items()))))
        return real_argon2(secret, salt, **cost)

    monkeypatch.setattr(hashlib, "scrypt", scrypt)
    monkeypatch.setattr(passwords, "hash_secret_raw", argon2id)


@pytest.mark.parametrize("params", [ScryptParams(n=2**15, r=8, p=1), Argon2Params(32768, 3, 1)])
async def test_an_unknown_user_costs_what_a_known_one_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         params: ScryptParams | Argon2Params) -> None:
    # alice's hash is stronger than the default, so a decoy made with the default would show.
    stored = hash_password(PASSWORD, params=params)
    runtime = start_runtime(tmp_path, f"  users:\n    alice: {stored}\n")
    board = Dashboard(runtime)
    calls: list[Derivation] = []
    counting(calls, monkeypatch)
    try:
        work: dict[str, list[Derivation]] = {}
        for case, user, password in [("known, wrong password", "alice", "not the password"),
                                     ("unknown", "mallory", "not the password"),
                                     ("known, right password", "alice", PASSWORD)]:
            calls.clear()
            answer = await log_in(board, password, user=user)
            assert answer.status == (303 if password == PASSWORD else 403), case
            work[case] = list(calls)
    finally:
        runtime.close()
    salt = parse_hash(stored).salt
    for case, done in work.items():
        # One derivation each, at the stored hash's cost, of the password as typed.
        assert len(done) == 1, (case, done)
        (call,) = done
        if isinstance(params, ScryptParams):
            assert call.cost[:4] == ("scrypt", *params) and call.cost[-1] == 32, case
        else:
            cost: dict[object, object] = dict(pair for pair in call.cost[1:] if isinstance(pair, tuple))
            assert call.cost[0] == "argon2", case
            assert (cost["memory_cost"], cost["time_cost"], cost["parallelism"], cost["hash_len"]) == (
                *params, 32), case
        assert len(call.salt) == len(salt), case
    known, unknown = work["known, wrong password"][0], work["unknown"][0]
    assert unknown._replace(salt=known.salt) == known  # the same work but for the salt...
    assert known.salt == salt and unknown.salt != salt  # ...a decoy's, for the user who is not there


# -- through the real proxy -----------------------------------------------------------------------


@dataclass
class Client:
    """A cookie-keeping client of the proxy, speaking absolute-form HTTP (and CONNECT + TLS)."""

    proxy: Proxy
    cookies: dict[str, str] = field(default_factory=dict)
    source: str = "127.0.0.1"  # the client's address, as the proxy sees it (any of 127.0.0.0/8)

    def send(self, method: str, url: str, form: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None) -> tuple[int, list[tuple[str, str]], str]:
        """One request; Set-Cookie applied to the jar; (status, headers, body text)."""
        parts = urllib.parse.urlsplit(url)
        sent = {**HTML, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=str(self.proxy.certs / "mitmproxy-ca-cert.pem"))
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.proxy.port, timeout=30, context=context, source_address=(self.source, 0))
            conn.set_tunnel(parts.netloc)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=30,
                                              source_address=(self.source, 0))
            target = url
        try:
            conn.request(method, target, body=body, headers=sent)
            r = conn.getresponse()
            status, got, text = r.status, r.getheaders(), r.read().decode("utf-8", "replace")
        finally:
            conn.close()
        for name, value in got:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookie_value = rest.split(";")[0]
                if "Max-Age=0" in value:
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = cookie_value
        return status, got, text

    def log_in(self, user: str, password: str, base: str = "https://clickguard.local",
               next_path: str = "") -> tuple[int, list[tuple[str, str]], str]:
        """Load the login form and post it with its CSRF token."""
        status, _, page = self.send("GET", f"{base}/admin/login")
        assert status == 200, page
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match, page
        form = {"user": user, "password": password, "csrf": match[1]}
        if next_path:
            form["next"] = next_path
        return self.send("POST", f"{base}/admin/login", form, {"Origin": base,
                                                                "Sec-Fetch-Site": "same-origin"})


ADMIN_POLICY = f"""\
feeds:
  - {{name: thingbots, format: ip, path: thingbots.txt}}
admin:
  users:
    admin: {HASH}
    olduser: {OLD_HASH}
"""


@pytest.fixture
def admin_proxy(tmp_path: Path, certs: Path) -> Iterator[Proxy]:
    """A proxy whose policy has one dashboard user, admin."""
    (tmp_path / "thingbots.txt").write_text(f"{THINGBOT_ORIGIN}\n127.0.0.3\n")
    p = start_proxy(tmp_path, write_policy(tmp_path, ADMIN_POLICY), certs)
    yield p
    p.stop()


def test_logins_stay_out_of_the_store_reports_read(admin_proxy: Proxy) -> None:
    """The README: logins are audited in the JSON Lines log only, so reports count browsing."""
    store_path = admin_proxy.workdir / "var" / "audit.sqlite"  # the policy's default store

    def stored() -> dict[str, Any]:
        connection = store.connect(store_path, readonly=True)
        try:
            logins = connection.execute("SELECT count(*) FROM decisions WHERE event = 'admin_login'")
            assert logins.fetchone() == (0,)
            data = report.report_dict(report.build_report(connection))
        finally:
            connection.close()
        del data["generated_at"]
        return data

    # One decision to report: a request to a listed Thingbot, blocked.
    assert admin_proxy.get("http://127.0.0.3:8080/Mozi.m", HTML).status == 403
    wait_until(lambda: store_path.exists() and stored()["totals"]["decisions"] == 1,
               what="the blocked request in the store")
    before = stored()
    client = Client(admin_proxy)
    assert client.log_in("admin", "not the password")[0] == 403
    assert client.log_in("nobody", "not the password")[0] == 403
    assert client.log_in("admin", PASSWORD)[0] == 303
    status, _, page = client.send("GET", "https://clickguard.local/admin?since=24h")
    assert status == 200 and "<b>1</b>decisions" in page  # the overview counts the one request
    # The proxy answers once a record is written: the logins are in the log by now...
    logins = [(r["admin_user"], r["action"], r["result"]) for r in admin_proxy.audit()
              if r["event"] == "admin_login"]
    assert logins == [("admin", "block", "bad_password"), ("nobody", "block", "unknown_user"),
                      ("admin", "allow", "ok")]
    # ...and not in the store: every figure of the report is what it was before them.
    assert stored() == before


def test_dashboard_is_off_without_users(tmp_path: Path, certs: Path) -> None:
    proxy = start_proxy(tmp_path, write_policy(tmp_path, "version: 1\n"), certs)
    try:
        client = Client(proxy)
        assert proxy.get("http://clickguard.local/admin").status == 301  # https only, on or off
        for path in ["/admin", "/admin/login", "/admin/host?h=x"]:
            status, _, page = client.send("GET", f"https://clickguard.local{path}")
            assert status == 404 and "The dashboard is off" in page and "admin hash-password" in page
            assert "<form" not in page
        status, _, _ = client.send("POST", "https://clickguard.local/admin/login",
                                   {"user": "admin", "password": ""})
        assert status == 404 and not client.cookies
    finally:
        proxy.stop()


def test_five_wrong_passwords_lock_that_client_out_not_the_user(admin_proxy: Proxy) -> None:
    outsider = Client(admin_proxy, source="127.0.0.66")
    for _ in range(5):
        status, _, page = outsider.log_in("admin", "not the password")
        assert status == 403 and "Wrong user name or password" in page
    # Even the right password is refused from there now, unchecked...
    status, headers, page = outsider.log_in("admin", PASSWORD)
    assert status == 429 and "Too many failed logins" in page and "clickguard_admin" not in outsider.cookies
    assert dict(headers)["Retry-After"] == "900"
    # ...but the user, from another machine, logs in: the outsider locked out only itself.
    user = Client(admin_proxy, source="127.0.0.7")
    status, _, _ = user.log_in("admin", PASSWORD)
    assert status == 303 and "clickguard_admin" in user.cookies
    wait_until(lambda: sum(r["event"] == "admin_login" for r in admin_proxy.audit()) == 7,
               what="seven admin_login records")
    records = [r for r in admin_proxy.audit() if r["event"] == "admin_login"]
    assert [(r["client"], r["action"]) for r in records] == [("127.0.0.66", "block")] * 6 + [
        ("127.0.0.7", "allow")]
    assert [r["result"] for r in records][-3:] == ["bad_password; now locked out", "locked_out", "ok"]
    assert {r["admin_user"] for r in records} == {"admin"}
    assert PASSWORD not in admin_proxy.audit_path.read_text()
    assert "not the password" not in admin_proxy.audit_path.read_text()


def test_login_shows_the_click_just_made_and_logout_ends_the_session(admin_proxy: Proxy,
                                                                     certs: Path) -> None:
    # A click on a link in mail handed over by a Thingbot: warned, and on the overview at once.
    with upstream("127.0.0.2") as site:
        r = admin_proxy.get(click_link(certs, f"{site.base}/invoice", THINGBOT_ORIGIN), HTML)
        assert r.status == 403 and r.headers["x-clickguard-action"] == "warn"
    client = Client(admin_proxy)
    status, headers, _ = client.log_in("admin", PASSWORD)
    assert status == 303 and dict(headers)["Location"] == "/admin"
    assert "clickguard_admin" in client.cookies and "clickguard_login" not in client.cookies

    def overview_shows_the_click() -> bool:
        status, _, page = client.send("GET", "https://clickguard.local/admin?since=24h")
        assert status == 200, page
        return THINGBOT_ORIGIN in page and "user@example.com" in page

    wait_until(overview_shows_the_click, what="the click on the overview")
    click = next(r for r in admin_proxy.audit() if r["event"] == "click")
    status, _, page = client.send("GET", f"https://clickguard.local/admin/click?id={click['ref']}")
    assert status == 200 and f"{site.base}/invoice" in page and "origin.thingbot" in page
    status, headers, page = client.send("GET", "https://clickguard.local/admin")
    assert "<svg" in page
    assert dict(headers)["Content-Security-Policy"] == CSP
    assert dict(headers)["Cache-Control"] == "no-store"
    assert "<script" not in page
    # Logout is a POST carrying the session's CSRF token.
    csrf = re.search(r'id=logout>.*?name="csrf" value="([^"]+)"', page)
    assert csrf, page
    status, _, _ = client.send("POST", "https://clickguard.local/admin/logout", {"csrf": csrf[1]},
                               {"Origin": "https://clickguard.local"})
    assert status == 303 and "clickguard_admin" not in client.cookies
    status, headers, _ = client.send("GET", "https://clickguard.local/admin")
    assert status == 303 and dict(headers)["Location"].startswith("/admin/login")


def test_logged_out_cookie_is_dead(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    client.log_in("admin", PASSWORD)
    session = client.cookies["clickguard_admin"]
    status, _, page = client.send("GET", "https://clickguard.local/admin/feeds")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert status == 200 and csrf
    client.send("POST", "https://clickguard.local/admin/logout", {"csrf": csrf[1]})
    replay = Client(admin_proxy, {"clickguard_admin": session})
    status, _, _ = replay.send("GET", "https://clickguard.local/admin/feeds")
    assert status == 303


def test_post_without_csrf_token_is_refused(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    client.send("GET", "https://clickguard.local/admin/login")  # has the pre-session cookie
    status, _, _ = client.send("POST", "https://clickguard.local/admin/login",
                               {"user": "admin", "password": PASSWORD})
    assert status == 403 and "clickguard_admin" not in client.cookies
    assert [(r["action"], r["result"]) for r in admin_proxy.audit()
            if r["event"] == "admin_login"] == [("block", "bad_csrf_token")]
    client.log_in("admin", PASSWORD)
    assert "clickguard_admin" in client.cookies
    status, _, _ = client.send("POST", "https://clickguard.local/admin/logout", {})
    assert status == 403
    status, _, _ = client.send("GET", "https://clickguard.local/admin/feeds")
    assert status == 200  # still logged in


def test_host_drilldown_and_feed_status(admin_proxy: Proxy, certs: Path) -> None:
    r = admin_proxy.get("http://127.0.0.3:8080/Mozi.m", HTML)
    assert r.status == 403
    client = Client(admin_proxy)
    status, headers, _ = client.log_in("admin", PASSWORD, next_path="/admin/host?h=127.0.0.3")
    assert status == 303 and dict(headers)["Location"] == "/admin/host?h=127.0.0.3"

    def drilldown_shows_the_block() -> bool:
        status, _, page = client.send("GET", "https://clickguard.local/admin/host?h=127.0.0.3")
        assert status == 200, page
        return "http://127.0.0.3:8080/Mozi.m" in page

    wait_until(drilldown_shows_the_block, what="the blocked request on the host drill-down")
    _, _, page = client.send("GET", "https://clickguard.local/admin/host?h=127.0.0.3")
    assert 'href="http://127.0.0.3' not in page  # URLs are text, never links out
    status, _, page = client.send("GET", "https://clickguard.local/admin/feeds")
    assert status == 200 and "thingbots" in page and "thingbots.txt" in page


HTTP_PATHS = ["/admin", "/admin/login", "/admin?since=7d", "/admin/feeds",
              "/admin/login?next=%2Fadmin%2Ffeeds"]


def test_http_admin_redirects_to_https_on_the_click_host(admin_proxy: Proxy) -> None:
    for path in HTTP_PATHS:
        r = admin_proxy.get(f"http://clickguard.local{path}")
        assert r.status == 301 and r.headers["location"] == f"https://clickguard.local{path}", path
        assert b"<form" not in r.body and "set-cookie" not in r.headers
        # The host is the policy's click host, never one taken from the request (no open redirect).
        for url, headers in [(f"http://clickguard.local{path}", {"Host": "evil.example"}),
                             (f"http://clickguard.local:8080{path}", {})]:
            r = admin_proxy.get(url, headers)
            assert r.status == 301 and r.headers["location"] == f"https://clickguard.local{path}", url
        # Where it sends the browser: the page, over TLS from the proxy.
        r = admin_proxy.get_tls("clickguard.local", 443, path)
        assert r.status == (200 if path.startswith("/admin/login") else 303), (path, r.text)


def test_login_over_http_is_refused_unread(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    status, _, page = client.send("GET", "https://clickguard.local/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert status == 200 and csrf
    # The right password and a good CSRF token, but over http: refused, never checked.
    status, headers, page = client.send("POST", "http://clickguard.local/admin/login",
                                        {"user": "admin", "password": PASSWORD, "csrf": csrf[1]},
                                        {"Origin": "http://clickguard.local"})
    assert status == 403 and "only over https" in page and "clickguard_admin" not in client.cookies
    assert not [v for k, v in headers if k.lower() == "set-cookie"]
    record = admin_proxy.wait_for_audit(lambda rs: any(r["event"] == "admin_login" for r in rs))[-1]
    assert (record["action"], record["result"], record["admin_user"]) == ("block", "sent_over_http", "")
    admin_proxy.wait_for_log("crossed the network in clear")
    assert PASSWORD not in admin_proxy.audit_path.read_text() + admin_proxy.log()
    # The same form over https logs in.
    status, _, _ = client.send("POST", "https://clickguard.local/admin/login",
                               {"user": "admin", "password": PASSWORD, "csrf": csrf[1]},
                               {"Origin": "https://clickguard.local"})
    assert status == 303 and "clickguard_admin" in client.cookies


def test_https_sets_secure_cookies_and_http_never_takes_them(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    status, headers, _ = client.log_in("admin", PASSWORD)
    assert status == 303
    cookies = [v for k, v in headers if k.lower() == "set-cookie"]
    assert {c.split("=")[0] for c in cookies} == {"clickguard_admin", "clickguard_login"}
    for cookie in cookies:
        assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/admin"} <= set(cookie.split("; ")[1:])
    status, _, page = client.send("GET", "https://clickguard.local/admin/policy")
    assert status == 200 and "policy.yaml" in page
    # The session cookie sent over http (a browser would not): the answer is the way to https.
    status, headers, page = client.send("GET", "http://clickguard.local/admin/policy")
    assert status == 301 and "policy.yaml" not in page
    assert dict(headers)["Location"] == "https://clickguard.local/admin/policy"
    status, _, _ = client.send("POST", "http://clickguard.local/admin/logout", {"csrf": "x"})
    assert status == 403 and "clickguard_admin" in client.cookies


def test_an_outdated_hash_logs_in_and_the_proxy_asks_for_a_new_one(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    status, _, _ = client.log_in("olduser", PASSWORD)
    assert status == 303
    admin_proxy.wait_for_log("dashboard user 'olduser' logged in with an outdated scrypt password hash")
    assert "clickguard admin hash-password" in admin_proxy.log()
    status, _, page = client.send("GET", "https://clickguard.local/admin/policy")
    assert status == 200 and 'id="rehash"' in page and '<span id="outdated">olduser (scrypt)</span>' in page
    assert OLD_HASH not in page


# Checks on two threads, as the dashboard runs them; the growth of RSS (KiB) from before the first.
CHECKS_IN_THREADS = """
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from clickguard.web.passwords import hash_password, parse_hash, verify_password

def rss_kib():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

before = rss_kib()
stored = parse_hash(hash_password("right"))
with ThreadPoolExecutor(2) as checkers:
    assert list(checkers.map(verify_password, ["right", "wrong"] * 4, [stored] * 8)) == [True, False] * 4
    print(rss_kib() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists() or platform.libc_ver()[0] != "glibc",
                    reason="glibc's allocator on Linux")
def test_password_checks_give_their_working_memory_back() -> None:
    """argon2's 19 MiB go back to the system after each check: no thread keeps them in its arena."""
    done = subprocess.run([sys.executable, "-c", CHECKS_IN_THREADS], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    grown_kib = int(done.stdout)
    assert grown_kib < passwords.DEFAULT_PARAMS.memory_kib // 2, f"RSS grew by {grown_kib} KiB"


# --- reports over nodes (audit.report_stores) ---------------------------------------------------------

def node_store(path: Path, refs: list[str], host: str, ts: float) -> None:
    """A node's store holding one blocked decision about `host` for each ref."""
    entries = []
    for ref in refs:
        entry = audit.record(ref=ref, event="decision", client="127.0.0.1", user=None, url=f"http://{host}/",
                             action="block", findings=())
        entry["ts"] = ts
        entries.append(entry)
    connection = store.connect(path)
    store.insert(connection, entries)
    store.close(connection)


async def test_the_overview_and_drilldowns_read_every_nodes_store(tmp_path: Path) -> None:
    """audit.report_stores: every node's store, a record in two counted once; a missing one named."""
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    now = time.time()
    node_store(nodes / "a.sqlite", ["r1", "r2"], "shared.example", now - 60)
    node_store(nodes / "b.sqlite", ["r2", "r3", "r4"], "shared.example", now - 50)  # r2 imported twice
    node_store(tmp_path / "audit.sqlite", ["own"], "own.example", now - 40)  # this node's: not listed
    for listed, missing in (("[nodes]", None), ("[nodes, gone.sqlite]", tmp_path / "gone.sqlite")):
        (tmp_path / "policy.yaml").write_text(
            f"audit: {{log: audit.jsonl, store: audit.sqlite, report_stores: {listed}}}\n"
            f"admin:\n  users:\n    alice: {HASH}\n")
        runtime = Runtime(state_dir=tmp_path / "var", certs_dir=tmp_path / "certs")
        runtime.policy_path = tmp_path / "policy.yaml"
        runtime.install(runtime.build())
        try:
            board = Dashboard(runtime)
            cookie = f"clickguard_admin={cookies_of(await log_in(board))['clickguard_admin']}"
            overview = (await board.handle(request("GET", "/admin", query="since=24h",
                                                   cookie=cookie))).body.decode()
            drill = (await board.handle(request("GET", "/admin/host", query="h=shared.example",
                                                cookie=cookie))).body.decode()
            policy_page = (await board.handle(request("GET", "/admin/policy", cookie=cookie))).body.decode()
        finally:
            runtime.close()
        assert str(nodes) in policy_page
        if missing is None:
            assert "<b>4</b>decisions" in overview, overview
            assert sorted(re.findall(r"<td>(r\d)</td>", drill)) == ["r1", "r2", "r3", "r4"], drill
        else:
            for page in (overview, drill):
                assert "cannot be read" in page and str(missing) in page and "<b>4</b>" not in page
            assert not missing.exists()
