"""The admin dashboard: password hashes, lock-out, sessions, CSRF, and the pages through the real proxy."""

from __future__ import annotations

import hashlib
import http.client
import re
import ssl
import subprocess
import sys
import unicodedata
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from clickguard.audit import report, store
from clickguard.errors import PolicyError, TokenError
from clickguard.policy.model import check_policy, parse_policy
from clickguard.proxy.runtime import Runtime
from clickguard.tokens import sign
from clickguard.web import dashboard
from clickguard.web.dashboard import (
    Attempt,
    Dashboard,
    LockOut,
    Request,
    Sessions,
    csrf_ok,
    csrf_token,
    safe_next,
    same_origin,
)
from clickguard.web.passwords import ScryptParams, decoy, hash_password, parse_hash, verify_password
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
HASH = hash_password(PASSWORD)  # one scrypt for the module: each costs ~50 ms
KEY = b"k" * 32

# -- password hashes -----------------------------------------------------------------------------


def test_hash_verifies_only_its_password() -> None:
    stored = parse_hash(HASH)
    assert HASH.startswith("scrypt$n=16384,r=8,p=1$")
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + " ", stored)
    assert not verify_password("", stored)
    assert hash_password(PASSWORD) != HASH  # a random salt each time


def test_password_is_compared_in_one_unicode_spelling() -> None:
    stored = parse_hash(hash_password("café-tür-1"))
    assert verify_password(unicodedata.normalize("NFD", "café-tür-1"), stored)


def test_decoy_matches_nothing_at_the_same_cost() -> None:
    fake = decoy(parse_hash(HASH).params)
    assert fake.params == parse_hash(HASH).params and not verify_password(PASSWORD, fake)


SALT = "A" * 22  # 16 bytes
KEY_B64 = "B" * 43  # 32 bytes

BAD_HASHES = [
    ("hunter2", "must be a password hash made by `clickguard admin hash-password`"),
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
        "(scrypt$n=16384,r=8,p=1$<salt>$<hash>)",
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
        assert verify_password(PASSWORD, parse_hash(done.stdout.strip()))
        assert PASSWORD not in done.stdout + done.stderr
    else:
        assert done.stdout == "" and "at least 8 characters" in done.stderr


def test_policy_admin_defaults() -> None:
    admin = parse_policy(f"admin:\n  users:\n    alice: {HASH}\n", filename="p", base_dir=Path()).admin
    assert (admin.lockout_after, admin.lockout_minutes, admin.session_minutes) == (5, 15, 60)
    assert dict(admin.users) == {"alice": HASH}
    assert not parse_policy("version: 1\n", filename="p", base_dir=Path()).admin.users
    with pytest.raises(PolicyError):
        parse_policy("admin:\n  session_minutes: 0\n", filename="p", base_dir=Path())


# -- lock-out ------------------------------------------------------------------------------------

WINDOW = 15 * 60.0


def fail(lockout: LockOut, user: str, client: str, now: float, limit: int = 5) -> Attempt | float:
    """One attempt that fails its password check (or is refused before it)."""
    attempt = lockout.attempt(user, client, limit=limit, window=WINDOW, now=now)
    if isinstance(attempt, Attempt):
        lockout.failed(attempt, limit=limit, window=WINDOW, now=now)
    return attempt


def test_lockout_per_user_from_any_client() -> None:
    lockout = LockOut()
    for n in range(5):
        assert isinstance(fail(lockout, "alice", f"10.0.0.{n}", 1000.0 + n), Attempt)
    refused = lockout.attempt("alice", "10.0.0.99", limit=5, window=WINDOW, now=1010.0)
    assert refused == 1004.0 + WINDOW  # locked for the window from the failure that locked it
    assert isinstance(lockout.attempt("bob", "10.0.0.99", limit=5, window=WINDOW, now=1010.0), Attempt)


def test_lockout_per_client_across_users() -> None:
    lockout = LockOut()
    for n in range(5):
        assert isinstance(fail(lockout, f"user{n}", "192.0.2.7", 1000.0), Attempt)
    assert not isinstance(lockout.attempt("alice", "192.0.2.7", limit=5, window=WINDOW, now=1001.0), Attempt)
    assert isinstance(lockout.attempt("alice", "192.0.2.8", limit=5, window=WINDOW, now=1001.0), Attempt)


def test_lockout_counts_an_ipv6_client_by_its_64() -> None:
    lockout = LockOut()
    for n in range(5):
        fail(lockout, f"user{n}", f"2001:db8:1:2::{n + 1}", 1000.0)
    assert not isinstance(lockout.attempt("x", "2001:db8:1:2::99", limit=5, window=WINDOW, now=1001.0),
                          Attempt)
    assert isinstance(lockout.attempt("x", "2001:db8:1:3::1", limit=5, window=WINDOW, now=1001.0), Attempt)


def test_lockout_expires_and_old_failures_are_forgotten() -> None:
    lockout = LockOut()
    for _ in range(5):
        fail(lockout, "alice", "10.0.0.1", 1000.0)
    assert not isinstance(lockout.attempt("alice", "10.0.0.1", limit=5, window=WINDOW,
                                          now=1000.0 + WINDOW - 1), Attempt)
    assert isinstance(lockout.attempt("alice", "10.0.0.1", limit=5, window=WINDOW,
                                      now=1000.0 + WINDOW + 1), Attempt)
    # Four failures, then a pause longer than the window: the count starts again.
    lockout = LockOut()
    for _ in range(4):
        fail(lockout, "bob", "10.0.0.2", 1000.0)
    for _ in range(4):
        assert isinstance(fail(lockout, "bob", "10.0.0.2", 1000.0 + WINDOW + 1), Attempt)


def test_parallel_attempts_cannot_exceed_the_limit() -> None:
    lockout = LockOut()
    running = [lockout.attempt("alice", "10.0.0.1", limit=3, window=WINDOW, now=1000.0) for _ in range(3)]
    assert all(isinstance(a, Attempt) for a in running)
    assert not isinstance(lockout.attempt("alice", "10.0.0.1", limit=3, window=WINDOW, now=1000.0), Attempt)


def test_success_clears_the_users_failures_but_not_the_clients() -> None:
    lockout = LockOut()
    for _ in range(4):
        fail(lockout, "alice", "10.0.0.1", 1000.0)
    ok = lockout.attempt("alice", "10.0.0.1", limit=5, window=WINDOW, now=1000.0)
    assert isinstance(ok, Attempt)
    lockout.succeeded(ok, window=WINDOW, now=1000.0)
    assert isinstance(fail(lockout, "alice", "10.0.0.2", 1000.0), Attempt)  # alice starts again
    # ...but 10.0.0.1 still has its four failures: one more locks it.
    assert isinstance(fail(lockout, "bob", "10.0.0.1", 1000.0), Attempt)
    assert not isinstance(lockout.attempt("carol", "10.0.0.1", limit=5, window=WINDOW, now=1000.0), Attempt)


def test_lockout_table_stays_bounded() -> None:
    lockout = LockOut(max_keys=100)
    for n in range(1000):
        fail(lockout, f"user{n}", f"10.0.{n // 256}.{n % 256}", 1000.0 + n * WINDOW)
    assert len(lockout._entries) <= 100


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
            headers: Mapping[str, str] | None = None) -> Request:
    """A request as the endpoint hands it to the dashboard."""
    return Request(method, path, query, {"cookie": cookie, **(headers or {})}, body.encode(),
                   "127.0.0.1", "http")


def cookies_of(answer: dashboard.Answer) -> dict[str, str]:
    """name -> value of each Set-Cookie."""
    out = {}
    for name, value in answer.headers:
        if name == "Set-Cookie":
            key, _, rest = value.partition("=")
            out[key] = rest.split(";")[0]
    return out


async def log_in(board: Dashboard, password: str = PASSWORD, user: str = "alice") -> dashboard.Answer:
    """Fetch the form, post it; the answer to the POST."""
    form = await board.handle(request("GET", "/admin/login"))
    nonce = cookies_of(form)["clickguard_login"]
    token = re.search(r'name="csrf" value="([^"]+)"', form.body.decode())
    assert token
    body = urllib.parse.urlencode({"user": user, "password": password, "csrf": token[1]})
    return await board.handle(request("POST", "/admin/login", body=body, cookie=f"clickguard_login={nonce}"))


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
                                        headers={"origin": "http://evil.example"}))
    assert answer.status == 403


async def test_login_logout_and_the_views(board: Dashboard) -> None:
    answer = await log_in(board)
    assert answer.status == 303 and dict(answer.headers)["Location"] == "/admin"
    session = cookies_of(answer)["clickguard_admin"]
    set_cookie = next(v for k, v in answer.headers if k == "Set-Cookie" and v.startswith("clickguard_admin="))
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/admin" in set_cookie
    assert "Secure" not in set_cookie  # served over http here
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


async def test_lockout_refuses_without_checking_and_audits(board: Dashboard, runtime: Runtime) -> None:
    assert (await log_in(board, "wrong")).status == 403
    assert (await log_in(board, "wrong")).status == 403
    answer = await log_in(board, PASSWORD)  # lockout_after: 2
    assert answer.status == 429 and "clickguard_admin" not in cookies_of(answer)
    assert "Too many failed logins" in answer.body.decode()
    runtime.close()  # flush the audit log
    records = (runtime.state_dir.parent / "audit.jsonl").read_text()
    assert records.count('"event":"admin_login"') == 3
    assert PASSWORD not in records and "wrong" not in records.replace("wrong_", "")


class Scrypt(NamedTuple):
    """One call of hashlib.scrypt: what was derived, and at what cost."""

    password: bytes
    salt: bytes
    n: int
    r: int
    p: int
    maxmem: int
    dklen: int


async def test_an_unknown_user_costs_what_a_known_one_does(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # alice's hash is stronger than the default, so a decoy made with the default would show.
    params = ScryptParams(n=2**15, r=8, p=1)
    stored = hash_password(PASSWORD, params=params)
    runtime = start_runtime(tmp_path, f"  users:\n    alice: {stored}\n")
    board = Dashboard(runtime)
    calls: list[Scrypt] = []
    real_scrypt = hashlib.scrypt

    def counting_scrypt(password: bytes, *, salt: bytes, n: int, r: int, p: int, maxmem: int = 0,
                        dklen: int = 64) -> bytes:
        calls.append(Scrypt(password, salt, n, r, p, maxmem, dklen))
        return real_scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    try:
        work: dict[str, list[Scrypt]] = {}
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
    cost = (params.n, params.r, params.p)
    for case, done in work.items():
        # One derivation each, at the stored hash's cost, of the password as typed.
        assert len(done) == 1, (case, done)
        (call,) = done
        assert (call.n, call.r, call.p, call.dklen) == (*cost, 32), case
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
                "127.0.0.1", self.proxy.port, timeout=30, context=context)
            conn.set_tunnel(parts.netloc)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=30)
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

    def log_in(self, user: str, password: str, base: str = "http://clickguard.local",
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
    status, _, page = client.send("GET", "http://clickguard.local/admin?since=24h")
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
        for path in ["/admin", "/admin/login", "/admin/host?h=x"]:
            status, _, page = client.send("GET", f"http://clickguard.local{path}")
            assert status == 404 and "The dashboard is off" in page and "admin hash-password" in page
            assert "<form" not in page
        status, _, _ = client.send("POST", "http://clickguard.local/admin/login",
                                   {"user": "admin", "password": ""})
        assert status == 404 and not client.cookies
    finally:
        proxy.stop()


def test_five_wrong_passwords_lock_even_the_right_one_out(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    for _ in range(5):
        status, _, page = client.log_in("admin", "not the password")
        assert status == 403 and "Wrong user name or password" in page
    status, _, page = client.log_in("admin", PASSWORD)
    assert status == 429 and "Too many failed logins" in page and "clickguard_admin" not in client.cookies
    wait_until(lambda: sum(r["event"] == "admin_login" for r in admin_proxy.audit()) == 6,
               what="six admin_login records")
    records = [r for r in admin_proxy.audit() if r["event"] == "admin_login"]
    assert [r["action"] for r in records] == ["block"] * 6
    assert [r["result"] for r in records][-2:] == ["bad_password; now locked out", "locked_out"]
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
        status, _, page = client.send("GET", "http://clickguard.local/admin?since=24h")
        assert status == 200, page
        return THINGBOT_ORIGIN in page and "user@example.com" in page

    wait_until(overview_shows_the_click, what="the click on the overview")
    click = next(r for r in admin_proxy.audit() if r["event"] == "click")
    status, _, page = client.send("GET", f"http://clickguard.local/admin/click?id={click['ref']}")
    assert status == 200 and f"{site.base}/invoice" in page and "origin.thingbot" in page
    status, headers, page = client.send("GET", "http://clickguard.local/admin")
    assert "<svg" in page
    assert dict(headers)["Content-Security-Policy"] == CSP
    assert dict(headers)["Cache-Control"] == "no-store"
    assert "<script" not in page
    # Logout is a POST carrying the session's CSRF token.
    csrf = re.search(r'id=logout>.*?name="csrf" value="([^"]+)"', page)
    assert csrf, page
    status, _, _ = client.send("POST", "http://clickguard.local/admin/logout", {"csrf": csrf[1]},
                               {"Origin": "http://clickguard.local"})
    assert status == 303 and "clickguard_admin" not in client.cookies
    status, headers, _ = client.send("GET", "http://clickguard.local/admin")
    assert status == 303 and dict(headers)["Location"].startswith("/admin/login")


def test_logged_out_cookie_is_dead(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    client.log_in("admin", PASSWORD)
    session = client.cookies["clickguard_admin"]
    status, _, page = client.send("GET", "http://clickguard.local/admin/feeds")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert status == 200 and csrf
    client.send("POST", "http://clickguard.local/admin/logout", {"csrf": csrf[1]})
    replay = Client(admin_proxy, {"clickguard_admin": session})
    status, _, _ = replay.send("GET", "http://clickguard.local/admin/feeds")
    assert status == 303


def test_post_without_csrf_token_is_refused(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    client.send("GET", "http://clickguard.local/admin/login")  # has the pre-session cookie
    status, _, _ = client.send("POST", "http://clickguard.local/admin/login",
                               {"user": "admin", "password": PASSWORD})
    assert status == 403 and "clickguard_admin" not in client.cookies
    assert [(r["action"], r["result"]) for r in admin_proxy.audit()
            if r["event"] == "admin_login"] == [("block", "bad_csrf_token")]
    client.log_in("admin", PASSWORD)
    assert "clickguard_admin" in client.cookies
    status, _, _ = client.send("POST", "http://clickguard.local/admin/logout", {})
    assert status == 403
    status, _, _ = client.send("GET", "http://clickguard.local/admin/feeds")
    assert status == 200  # still logged in


def test_host_drilldown_and_feed_status(admin_proxy: Proxy, certs: Path) -> None:
    r = admin_proxy.get("http://127.0.0.3:8080/Mozi.m", HTML)
    assert r.status == 403
    client = Client(admin_proxy)
    status, headers, _ = client.log_in("admin", PASSWORD, next_path="/admin/host?h=127.0.0.3")
    assert status == 303 and dict(headers)["Location"] == "/admin/host?h=127.0.0.3"

    def drilldown_shows_the_block() -> bool:
        status, _, page = client.send("GET", "http://clickguard.local/admin/host?h=127.0.0.3")
        assert status == 200, page
        return "http://127.0.0.3:8080/Mozi.m" in page

    wait_until(drilldown_shows_the_block, what="the blocked request on the host drill-down")
    _, _, page = client.send("GET", "http://clickguard.local/admin/host?h=127.0.0.3")
    assert 'href="http://127.0.0.3' not in page  # URLs are text, never links out
    status, _, page = client.send("GET", "http://clickguard.local/admin/feeds")
    assert status == 200 and "thingbots" in page and "thingbots.txt" in page


def test_https_sets_a_secure_cookie(admin_proxy: Proxy) -> None:
    client = Client(admin_proxy)
    status, headers, _ = client.log_in("admin", PASSWORD, base="https://clickguard.local")
    assert status == 303
    cookie = next(v for k, v in headers if k.lower() == "set-cookie" and v.startswith("clickguard_admin="))
    assert "; Secure" in cookie
    status, _, page = client.send("GET", "https://clickguard.local/admin/policy")
    assert status == 200 and "policy.yaml" in page
