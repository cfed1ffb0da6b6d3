"""The admin dashboard on the click host: read-only views of the audit store, feeds and policy.

The proxy serves it under ``/admin`` on the click host (`clickguard/proxy/endpoint.py`
hands those requests to `Dashboard.handle`; nothing here imports mitmproxy or the proxy,
whose runtime the dashboard reads through the `ProxyView` protocol):

    GET  /admin                 overview: the report's sections, ?since=24h (default), 7d or 30d,
                                &group=NAME: only decisions under that policy group's rules
    GET  /admin/feeds           per feed: entries, age of data, source, last error; learned hosts
    GET  /admin/policy          the policy in force: file, sha256, loaded at, last reload error
    GET  /admin/host?h=HOST     every decision about one host
    GET  /admin/click?id=REF    one click and the navigation that followed it
    GET  /admin/login           the login form (?next=/admin/… to come back to)
    POST /admin/login           user, password, csrf, next
    POST /admin/logout          csrf

Only over https. A GET or HEAD of ``http://<click_host>/admin…`` answers 301 to the
same path and query on ``https://<click_host>`` (the policy's click host, never a
host taken from the request, and the default port: no open redirect); any other
method over http is refused with 403 before its body is read, so a password posted
in clear is never checked (the attempt is logged and audited as ``sent_over_http``,
without a user name: the body is not parsed). A cookie sent over http is never
looked at, and every cookie the dashboard sets is ``Secure``. No HSTS header: it
would also upgrade ``http://<click_host>/proxy.pac``, which PAC clients fetch in clear.

Nothing but logging in and out changes state. Users and password hashes come
from the policy (``admin.users``; no users, no dashboard). Password checks run
in a worker thread, at most `_PASSWORD_CHECKS` at once and CHECK_RATE a second in
all, for unknown users too (against a decoy with the first user's parameters, at
the same cost). `LockOut` stops them per user and client, per client, and slows
them per user (see there), so an outsider's failures lock only the outsider out.
A login with an outdated hash (scrypt, made before argon2id) works and is flagged:
a warning in the log names the user and `clickguard admin hash-password`, and the
dashboard shows it until IT replaces the hash (the proxy never rewrites the policy).

A session is a cookie holding a token signed with the proxy's key (`tokens`); it
ends at ``admin.session_minutes``, at logout, when the user's password hash
changes in the policy, and, unless shared (below), when the proxy restarts
(ended sessions are then remembered in memory only). Every POST carries a CSRF
token bound to the session (for the login: to a pre-session cookie), and a POST
whose ``Origin`` or ``Sec-Fetch-Site`` says another site sent it is refused.

Nodes and workers sharing state through Redis (`Dashboard.share`, `clickguard.cluster`)
share sessions and lock-outs (they share the signing key: the certs directory). A login
made while Redis is reachable makes a session of the cluster: valid on every node, ended
on all by a logout on any (kept in Redis, so a restart forgets no logout), ended
everywhere when Redis loses its data. A node that cannot reach Redis refuses these
sessions until it is back (it would not hear a logout made elsewhere: fail closed) and
its logins make sessions of its own meanwhile; `clickguard.web.sessions` has the rules.
A failed login on one node counts on all, and a success's clearing too, within the
pub/sub delay (``login`` events, kept for the lock-out window; `LockOut.apply`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from clickguard.audit import queries, report_html, store
from clickguard.audit import writer as audit
from clickguard.cluster import SharedState
from clickguard.errors import AuditError, TokenError
from clickguard.intel.learned import LearnedHost
from clickguard.policy.groups import GROUP_NAME
from clickguard.policy.model import AdminConfig, LoadedPolicy, Policy
from clickguard.web.lockout import (
    CHECK_RATE,
    CLIENT_FACTOR,
    USER_SLOW_FACTOR,
    USER_SLOW_SECONDS,
    Attempt,
    LockOut,
    Refusal,
)
from clickguard.web.pages import document
from clickguard.web.passwords import (
    DEFAULT_PARAMS,
    PasswordHash,
    decoy,
    is_outdated,
    parse_hash,
    verify_password,
)
from clickguard.web.sessions import Session, Sessions, csrf_ok, csrf_token, settled

logger = logging.getLogger(__name__)

SESSION_COOKIE = "clickguard_admin"
LOGIN_COOKIE = "clickguard_login"  # the pre-session cookie the login form's CSRF token is bound to
RANGES: Mapping[str, int] = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
MAX_BODY = 16 * 1024  # a login form is a few hundred bytes
REPORT_LIMIT = 10  # rows in each "top" table of the overview
LEARNED_SHOWN = 500
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
       "frame-ancestors 'none'")
_LOGIN_NONCE_MAX_AGE = 3600
_PASSWORD_CHECKS = 2  # password checks at once: each takes ~19 MiB and a CPU for ~0.1 s
LOGIN = "login"  # the shared-state event kind (clickguard.cluster) of a failed or successful login


class Request(NamedTuple):
    """One request for the dashboard, as the endpoint hands it over."""

    method: str
    path: str  # without the query
    query: str
    headers: Mapping[str, str]  # lower-case names; Cookie values joined with "; "
    body: bytes
    client: str  # the client's address
    scheme: str  # "http" or "https": how the browser reached the click host


class Answer(NamedTuple):
    """The response: status, headers (a list, for several Set-Cookie), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


# -- where a request comes from and goes back to; cookies -----------------------------------------


def same_origin(headers: Mapping[str, str], scheme: str, click_host: str) -> bool:
    """False when Origin or Sec-Fetch-Site says another site sent the request; absent headers pass."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    try:
        parts = urllib.parse.urlsplit(origin)
        return parts.scheme == scheme and parts.hostname == click_host
    except ValueError:
        return False


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path under /admin on this host, else /admin (no open redirect)."""
    if not value or len(value) > 2000 or not value.isascii() or not value.isprintable():
        return "/admin"
    if value.startswith("//") or "\\" in value:
        return "/admin"
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return "/admin"
    path = parts.path
    if parts.scheme or parts.netloc or not (path == "/admin" or path.startswith("/admin/")):
        return "/admin"
    # Dot segments and escapes could climb out of /admin once the browser resolves them.
    if "%" in path or "/." in path:
        return "/admin"
    return value


def https_location(click_host: str, path: str, query: str) -> str:
    """The https address of a dashboard page on the click host (a path that is not plain text: /admin)."""
    # The host is the policy's and the path starts with "/admin": the browser stays on the click host.
    target = path + (f"?{query}" if query else "")
    plain = target.isascii() and target.isprintable() and " " not in target
    if not plain or not target.startswith("/admin") or len(target) > 2000:
        target = "/admin"
    return f"https://{click_host}{target}"


def cookie_values(header: str, name: str) -> list[str]:
    """Every value a Cookie header gives a name (a browser may send more than one)."""
    out = []
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            out.append(value.strip().strip('"'))
    return out


def set_cookie(name: str, value: str, *, max_age: int) -> str:
    """A Set-Cookie value: only for /admin over https, never readable by script nor sent from another site."""
    return f"{name}={value}; Path=/admin; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict"


# -- pages ---------------------------------------------------------------------------------------

_STYLE = """
main{max-width:76rem;margin:1.5rem auto;padding:1.5rem 2rem}
nav{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;border-bottom:1px solid #dde;
padding-bottom:.6rem;margin-bottom:1rem}
nav a{color:#1d4e89;text-decoration:none}nav a.here{font-weight:600;color:#1d2330}
nav form{margin-left:auto}nav .who{color:#4a5263;font-size:.9rem}
button{font:inherit;padding:.35rem .9rem;border:1px solid #8792a8;border-radius:4px;background:#fff;
cursor:pointer}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.2rem;font-size:.92rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e6e8ee;vertical-align:top}
th{background:#f0f1f4}td code,dd code{word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{font-weight:600}dd{margin:0}
pre.error{white-space:pre-wrap;background:#fdecea;padding:.6rem;border-radius:4px}
.ranges a{margin-right:.8rem}.ranges a.here{font-weight:600}.muted{color:#4a5263}
form.login label{display:block;margin:.6rem 0 .2rem}
form.login input[type=text],form.login input[type=password]{font:inherit;padding:.35rem;width:18rem}
form.login button{margin-top:1rem}.notice{background:#fff8e1;padding:.6rem;border-radius:4px}
"""
_ACCENT = "#1d4e89"
_VIEWS = (("/admin", "Overview"), ("/admin/feeds", "Feeds"), ("/admin/policy", "Policy"))


def page_headers() -> list[tuple[str, str]]:
    """The headers of every dashboard page (content type, CSP, no caching, no framing)."""
    # same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` with the
    # page's own forms, which the CSRF check must refuse; nothing leaks to other sites either way.
    return [("Content-Type", "text/html; charset=utf-8"), ("Content-Security-Policy", CSP),
            ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "same-origin"), ("X-Frame-Options", "DENY")]


def _html(status: int, title: str, inner: str, *, extra: Iterable[tuple[str, str]] = ()) -> Answer:
    """A dashboard page."""
    style = _STYLE + report_html.REPORT_CSS
    body = document(f"{title} · clickguard", _ACCENT, inner, style=style).encode("utf-8")
    return Answer(status, [*page_headers(), *extra], body)


def _redirect(location: str, *, extra: Iterable[tuple[str, str]] = ()) -> Answer:
    """303 to a path on this host (every caller passes a fixed path or `safe_next`'s)."""
    return Answer(303, [("Location", location), ("Cache-Control", "no-store"),
                        ("Content-Length", "0"), *extra], b"")


def _message(status: int, title: str, text: str, *, extra: Iterable[tuple[str, str]] = ()) -> Answer:
    """A short page with a title and a sentence."""
    return _html(status, title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>"
                 '<p><a href="/admin">Dashboard</a></p>', extra=extra)


def _when(ts: float | None, now: float) -> str:
    """A Unix time as UTC text with its age."""
    if ts is None:
        return "–"
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{stamp} ({_age(now - ts)} ago)" if ts <= now else f"{stamp} (in {_age(ts - now)})"


def _age(seconds: float) -> str:
    """A duration for people."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str = "None.") -> str:
    """A table of already-escaped cells."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _code(text: object) -> str:
    """A value (a URL, a path) as escaped text, never as a link."""
    return f"<code>{escape(str(text))}</code>"


def _host_link(host: str) -> str:
    """A host name linking to its drill-down on the dashboard."""
    return f'<a href="{escape(str(drilldown_link("host", host)))}">{escape(host)}</a>'


def drilldown_link(kind: str, value: str) -> str | None:
    """The dashboard's page for a host or a click id in the report (report_html.Link)."""
    if kind == "host":
        return "/admin/host?h=" + urllib.parse.quote(value, safe="")
    if kind == "click":
        return "/admin/click?id=" + urllib.parse.quote(value, safe="")
    return None


# -- what the dashboard reads of the proxy -------------------------------------------------------


class PolicyHolder(Protocol):
    """Whatever holds the policy in force (the proxy's judge)."""

    @property
    def policy(self) -> Policy: ...


class FeedsStatus(Protocol):
    """The loaded feeds, as /admin/feeds lists them."""

    def snapshot(self) -> list[dict[str, Any]]:
        """One dict per feed: name, format, category, entries, skipped, data_time, loaded_at, source…"""
        ...


class Configuration(Protocol):
    """The configuration in force: the policy file as loaded, and its feeds."""

    @property
    def loaded(self) -> LoadedPolicy: ...

    @property
    def feeds(self) -> FeedsStatus: ...


class LearnedThingbots(Protocol):
    """The hosts learned as Thingbots, and why their file could not be read, if it could not."""

    @property
    def error(self) -> str | None: ...

    def __iter__(self) -> Iterator[LearnedHost]: ...


class ProxyView(Protocol):
    """Everything the dashboard reads of the proxy it runs in; the proxy's `Runtime` is one.

    Declared here, not imported: the dashboard (web/) sits below the proxy (proxy/), which
    hands its runtime over. The dashboard reads this and records its logins, nothing more.
    """

    @property
    def key(self) -> bytes:
        """The key session and CSRF tokens are signed with."""
        ...

    @property
    def judge(self) -> PolicyHolder:
        """The policy in force: its click host and `admin` section (users, lock-out, sessions)."""
        ...

    @property
    def state(self) -> Configuration | None:
        """The configuration in force, None before the first policy loaded."""
        ...

    @property
    def policy_error(self) -> str | None:
        """Why the last reload failed, while the last good policy keeps serving."""
        ...

    @property
    def learned(self) -> LearnedThingbots:
        """The hosts the proxy learned as Thingbots, for /admin/feeds."""
        ...

    @property
    def store_path(self) -> Path | None:
        """The audit store the views read, None when the policy turns it off."""
        ...

    async def record(self, entry: dict[str, object]) -> bool:
        """Write one audit record (a login attempt); AuditError if not recorded under on_failure closed."""
        ...


# -- the dashboard -------------------------------------------------------------------------------


class Dashboard:
    """The dashboard's pages and its login state (lock-out, sessions) for one proxy process."""

    def __init__(self, runtime: ProxyView, *, clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.clock = clock
        self.lockout = LockOut()
        self.sessions = Sessions()
        self.shared: SharedState | None = None  # set by `share`: other nodes' lock-outs and sessions
        self._checks: asyncio.Semaphore | None = None  # made on the event loop, at first use
        # Password checks on threads of their own: argon2's ~19 MiB stays resident in the memory arena
        # of each thread that ever ran one, so on the loop's shared pool every login could add 19 MiB
        # (up to 32 threads); here at most _PASSWORD_CHECKS of them ever hold it.
        self._checkers = ThreadPoolExecutor(_PASSWORD_CHECKS, thread_name_prefix="clickguard-password")

    def share(self, shared: SharedState | None) -> None:
        """Share sessions and lock-outs through this shared state from now on; None: this process's only.

        Called before the shared state connects (its kinds are then replayed at the connection).
        """
        self.shared = shared
        self.sessions.share(shared)
        if shared is not None:
            shared.on(LOGIN, self._apply_login)

    def _apply_login(self, _ident: str, data: dict[str, Any] | None) -> None:
        """Another node's failed or successful login (from the shared state, on the event loop)."""
        if data is None:
            return
        admin = self.runtime.judge.policy.admin
        self.lockout.apply(tuple(str(key) for key in data["keys"]), failed=bool(data["failed"]),
                           at=float(data["at"]), limit=admin.lockout_after,
                           window=admin.lockout_minutes * 60.0, now=self.clock())

    def _share_login(self, attempt: Attempt, *, failed: bool, at: float,
                     window: float) -> concurrent.futures.Future[bool] | None:
        """Tell the other nodes of a login attempt's end here (None: nothing is shared)."""
        if self.shared is None:
            return None
        return self.shared.publish(LOGIN, secrets.token_hex(8),
                                   {"keys": list(attempt.keys), "failed": failed, "at": at},
                                   expires=at + window)

    async def handle(self, request: Request) -> Answer:
        """Answer one request for /admin or below."""
        answer = await self._route(request)
        if request.method == "HEAD":
            return answer._replace(body=b"")
        return answer

    async def _route(self, request: Request) -> Answer:
        """Dispatch by path and method."""
        policy = self.runtime.judge.policy
        admin = policy.admin
        if request.scheme != "https":
            return await self._over_http(request, policy.click_host)
        if self.shared is not None:
            self.shared.sync()  # other nodes' logouts and failed logins first
        if not admin.users:
            return _off_page()
        if len(request.body) > MAX_BODY:
            return _message(413, "Request too large", "The dashboard takes only small forms.")
        method = "GET" if request.method == "HEAD" else request.method
        if request.path == "/admin/login":
            if method == "GET":
                return self._login_form(request, admin)
            if method == "POST":
                return await self._login(request, admin, policy.click_host)
            return _not_allowed("GET, HEAD, POST")
        if request.path == "/admin/logout":
            if method == "POST":
                return await self._logout(request, admin, policy.click_host)
            return _not_allowed("POST")
        session = self._session(request, admin)
        if session is None:
            if method != "GET":
                return _message(403, "Not logged in", "Log in to the dashboard first.")
            target = request.path + (f"?{request.query}" if request.query else "")
            return _redirect("/admin/login?next=" + urllib.parse.quote(safe_next(target), safe=""))
        if method != "GET":
            return _not_allowed("GET, HEAD")
        query = urllib.parse.parse_qs(request.query, max_num_fields=10)
        views: dict[str, Callable[[], Awaitable[Answer]]] = {
            "/admin": lambda: self._overview(session, query),
            "/admin/": lambda: self._overview(session, query),
            "/admin/feeds": lambda: self._feeds(session),
            "/admin/policy": lambda: self._policy(session),
            "/admin/host": lambda: self._host(session, query),
            "/admin/click": lambda: self._click(session, query),
        }
        view = views.get(request.path)
        if view is None:
            return self._frame(404, session, "/admin", "Not found",
                               "<h1>Not found</h1><p>The dashboard has no page at this address.</p>")
        return await view()

    async def _over_http(self, request: Request, click_host: str) -> Answer:
        """http: GET and HEAD go to the same page over https; anything else is refused unread."""
        if request.method in ("GET", "HEAD"):
            return Answer(301, [("Location", https_location(click_host, request.path, request.query)),
                                ("Cache-Control", "no-store"), ("Content-Length", "0")], b"")
        if request.path == "/admin/login":
            # The body is not parsed: the password in it, if any, is never checked.
            logger.warning("dashboard login sent over http from %s refused unread; a password in it "
                           "crossed the network in clear: change it", request.client)
            await self._audit_login(request, click_host, "", "block", "sent_over_http")
        return _message(403, "Refused", "The dashboard takes forms only over https. Load "
                        f"https://{click_host}/admin/login and log in there.")

    # -- login and logout

    def _session(self, request: Request, admin: AdminConfig, *, ending: bool = False) -> Session | None:
        """The session the request's cookie holds, if it is valid now (or may be ended: `Sessions.check`)."""
        for token in cookie_values(request.headers.get("cookie", ""), SESSION_COOKIE):
            try:
                return self.sessions.check(token, admin.users, self.runtime.key, now=self.clock(),
                                           ending=ending)
            except TokenError:
                continue
        return None

    def _login_form(self, request: Request, admin: AdminConfig, *, status: int = 200,
                    error: str = "", user: str = "", next_path: str | None = None) -> Answer:
        """The login form, with a CSRF token bound to a pre-session cookie."""
        target = safe_next(next_path if next_path is not None else _first(
            urllib.parse.parse_qs(request.query, max_num_fields=10), "next"))
        if status == 200 and self._session(request, admin) is not None:
            return _redirect(target)
        nonces = [n for n in cookie_values(request.headers.get("cookie", ""), LOGIN_COOKIE)
                  if _is_nonce(n)]
        # Keep a nonce the browser already has, so two open login tabs both work.
        nonce = nonces[0] if nonces else secrets.token_urlsafe(16)
        cookie = set_cookie(LOGIN_COOKIE, nonce, max_age=_LOGIN_NONCE_MAX_AGE)
        notice = f'<p class="notice" id="error">{escape(error)}</p>' if error else ""
        csrf = csrf_token(self.runtime.key, "login:" + nonce)
        inner = (
            "<h1>clickguard dashboard</h1>" + notice +
            '<form class="login" id="login" method="post" action="/admin/login">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<input type="hidden" name="next" value="{escape(target)}">'
            f'<label for="user">User</label><input type="text" id="user" name="user" value="{escape(user)}" '
            'autocomplete="username" required autofocus>'
            '<label for="password">Password</label><input type="password" id="password" name="password" '
            'autocomplete="current-password" required>'
            '<div><button type="submit">Log in</button></div></form>'
        )
        return _html(status, "Log in", inner, extra=[("Set-Cookie", cookie)])

    async def _login(self, request: Request, admin: AdminConfig, click_host: str) -> Answer:
        """Check a login form: origin, CSRF, lock-out, then the password (in a thread)."""
        form = _form(request.body)
        user, password = _first(form, "user")[:256], _first(form, "password")
        if not same_origin(request.headers, request.scheme, click_host):
            await self._audit_login(request, click_host, user, "block", "sent_from_another_site")
            return _message(403, "Refused", "This form was sent from another site.")
        nonces = cookie_values(request.headers.get("cookie", ""), LOGIN_COOKIE)
        if not any(csrf_ok(self.runtime.key, "login:" + n, _first(form, "csrf")) for n in nonces):
            await self._audit_login(request, click_host, user, "block", "bad_csrf_token")
            return _message(403, "Refused", "The login form has expired; load it again.")
        now = self.clock()
        window = admin.lockout_minutes * 60.0
        attempt = self.lockout.attempt(user, request.client, limit=admin.lockout_after, window=window,
                                       now=now)
        if isinstance(attempt, Refusal):
            await self._audit_login(request, click_host, user, "block", attempt.reason)
            if attempt.reason == "table_full":
                logger.warning("dashboard lock-out table full of locks and running checks: login from %s "
                               "refused until some expire", request.client)
            seconds = max(1, math.ceil(attempt.until - now))
            answer = self._login_form(request, admin, status=429, user=user, next_path=_first(form, "next"),
                                      error=_refusal_text(attempt.reason, seconds))
            return answer._replace(headers=[*answer.headers, ("Retry-After", str(seconds))])
        stored = admin.users.get(user)
        try:
            ok = await self._check_password(password, stored, admin)
        except BaseException:
            now = self.clock()
            self.lockout.failed(attempt, limit=admin.lockout_after, window=window, now=now)
            self._share_login(attempt, failed=True, at=now, window=window)
            raise
        now = self.clock()
        if not ok:
            locked = self.lockout.failed(attempt, limit=admin.lockout_after, window=window, now=now)
            await settled(self._share_login(attempt, failed=True, at=now, window=window))
            result = "bad_password" if stored is not None else "unknown_user"
            await self._audit_login(request, click_host, user, "block",
                                    result + ("; now locked out" if locked else ""))
            return self._login_form(request, admin, status=403, user=user, next_path=_first(form, "next"),
                                    error="Wrong user name or password.")
        assert stored is not None
        self.lockout.succeeded(attempt, now=now)
        cleared = self._share_login(attempt, failed=False, at=now, window=window)
        token, _session = self.sessions.issue(user, stored, self.runtime.key,
                                              minutes=admin.session_minutes, now=now)
        await settled(cleared)  # the other nodes clear this client's failures for this user before it goes on
        if not await self._audit_login(request, click_host, user, "allow", "ok"):
            return _message(503, "Not recorded", "This login could not be recorded; try again later.")
        stored_hash = parse_hash(stored)
        if is_outdated(stored_hash):
            logger.warning("dashboard user %r logged in with an outdated %s password hash: make a new one "
                           "with `clickguard admin hash-password` and put it under admin.users.%s in the "
                           "policy", user, stored_hash.scheme, user)
        return _redirect(safe_next(_first(form, "next")), extra=[
            ("Set-Cookie", set_cookie(SESSION_COOKIE, token, max_age=admin.session_minutes * 60)),
            ("Set-Cookie", set_cookie(LOGIN_COOKIE, "", max_age=0))])

    async def _check_password(self, password: str, stored: str | None, admin: AdminConfig) -> bool:
        """The hash in a worker thread, a few at a time; an unknown user costs a known one's work."""
        if stored is not None:
            target = parse_hash(stored)
        else:
            like = (parse_hash(next(iter(admin.users.values()))) if admin.users
                    else PasswordHash(DEFAULT_PARAMS, bytes(16), bytes(32)))
            target = decoy(like)
        if self._checks is None:
            self._checks = asyncio.Semaphore(_PASSWORD_CHECKS)
        async with self._checks:
            ok = await asyncio.get_running_loop().run_in_executor(self._checkers, verify_password,
                                                                  password, target)
        return ok and stored is not None

    async def _audit_login(self, request: Request, click_host: str, user: str, action: str,
                           result: str) -> bool:
        """Log and audit one login attempt (never the password); False if it could not be (closed)."""
        logger.info("dashboard login %s: user %r from %s", result, user, request.client)
        try:
            await self.runtime.record(audit.record(
                ref=audit.new_ref(), event="admin_login", client=request.client, user=None,
                url=f"{request.scheme}://{click_host}/admin/login", action=action, findings=[],
                admin_user=user[:64], result=result))
        except AuditError as e:
            logger.error("%s; login refused (audit.on_failure: closed)", e)
            return False
        return True

    async def _logout(self, request: Request, admin: AdminConfig, click_host: str) -> Answer:
        """End the session (POST with its CSRF token), then back to the login form."""
        clear = ("Set-Cookie", set_cookie(SESSION_COOKIE, "", max_age=0))
        if not same_origin(request.headers, request.scheme, click_host):
            return _message(403, "Refused", "This form was sent from another site.")
        session = self._session(request, admin, ending=True)
        if session is None:
            return _redirect("/admin/login", extra=[clear])
        if not csrf_ok(self.runtime.key, "session:" + session.sid, _first(_form(request.body), "csrf")):
            logger.warning("dashboard logout from %s refused: missing or wrong CSRF token", request.client)
            return _message(403, "Refused", "The logout form is not valid; load the page again.")
        # Answered once Redis has the logout: the browser's next request may reach another node.
        await settled(self.sessions.end(session, now=self.clock()))
        logger.info("dashboard logout: user %r from %s", session.user, request.client)
        return _redirect("/admin/login", extra=[clear])

    # -- views

    def _frame(self, status: int, session: Session, here: str, title: str, inner: str) -> Answer:
        """A logged-in page: the navigation, the logout button, the content."""
        links = "".join(f'<a href="{path}"{" class=here" if path == here else ""}>{name}</a>'
                        for path, name in _VIEWS)
        csrf = escape(csrf_token(self.runtime.key, "session:" + session.sid))
        nav = (f"<nav>{links}<form method=post action=/admin/logout id=logout>"
               f'<span class="who">{escape(session.user)}</span> '
               f'<input type="hidden" name="csrf" value="{csrf}"><button type="submit">Log out</button>'
               "</form></nav>")
        stored = self.runtime.judge.policy.admin.users.get(session.user)
        if stored is not None and is_outdated(parse_hash(stored)):
            nav += ('<p class="notice" id="rehash">Your password hash in the policy is outdated. Make a new '
                    "one with <code>clickguard admin hash-password</code> and have it put under "
                    f"<code>admin.users.{escape(session.user)}</code>.</p>")
        return _html(status, title, nav + inner)

    async def _overview(self, session: Session, query: Mapping[str, list[str]]) -> Answer:
        """The report's sections for the chosen range, read from the store now."""
        since = _first(query, "since") or "24h"
        group = _first(query, "group") or None
        if since not in RANGES:
            return self._frame(400, session, "/admin", "Overview",
                               f"<h1>Overview</h1><p>since must be one of {', '.join(RANGES)}.</p>")
        if group is not None and not GROUP_NAME.fullmatch(group):
            return self._frame(400, session, "/admin", "Overview",
                               "<h1>Overview</h1><p>group must be a policy group's name.</p>")
        now = self.clock()
        also = f"&amp;group={urllib.parse.quote(group)}" if group else ""
        ranges = "".join(f'<a href="/admin?since={name}{also}"{" class=here" if name == since else ""}>'
                         f"last {name}</a>" for name in RANGES)
        try:
            sections = await asyncio.to_thread(self._report_sections, now - RANGES[since], now, group)
        except sqlite3.Error as e:
            sections = _store_unavailable(self._shown_store(), e)
        inner = (f'<h1>Overview</h1><p class="ranges">{ranges}</p>{self._group_form(since, group)}'
                 f'<p class="muted">As of {escape(_when(now, now))}.</p>{sections}')
        return self._frame(200, session, "/admin", "Overview", inner)

    def _group_form(self, since: str, group: str | None) -> str:
        """A select of the policy's groups (and everyone) for the overview; nothing without groups."""
        names = [g.name for g in self.runtime.judge.policy.groups]
        if group is not None and group not in names:
            names.append(group)  # a group since renamed or removed: its records are still there
        if not names:
            return ""
        options = "".join(f'<option value="{escape(n)}"{" selected" * (n == group)}>{escape(n)}</option>'
                          for n in names)
        return ('<form method="get" action="/admin" class="ranges">'
                f'<input type="hidden" name="since" value="{escape(since)}">'
                '<label for="group">Group</label> <select id="group" name="group">'
                f'<option value="">everyone</option>{options}</select> '
                '<button type="submit">Show</button></form>')

    def _report_sections(self, since: float, until: float, group: str | None = None) -> str:
        """Every section of the report over a time range, one policy group's if given (in a worker thread)."""
        nodes = self.runtime.judge.policy.audit.report_stores
        if nodes:  # every node's store (audit.report_stores), each record once
            built = queries.report_stores(queries.store_paths(nodes), since=since, until=until,
                                          limit=REPORT_LIMIT, group=group)
        else:
            with _readonly(self.runtime.store_path) as connection:
                built = queries.build_report(connection, since=since, until=until, limit=REPORT_LIMIT,
                                             group=group)
        return "".join(report_html.section_html(built, name, link=drilldown_link)
                       for name in report_html.SECTIONS)

    async def _feeds(self, session: Session) -> Answer:
        """Each feed's status and the hosts learned as Thingbots."""
        state = self.runtime.state
        now = self.clock()
        rows = []
        for feed in state.feeds.snapshot() if state is not None else []:
            rows.append([escape(feed["name"]), escape(feed["format"]), escape(feed["category"]),
                         f'{feed["entries"]:,}', f'{feed["skipped"]:,}',
                         escape(_age(now - feed["data_time"])) if feed.get("data_time") else "–",
                         escape(_when(feed.get("loaded_at"), now)), _code(feed["source"]),
                         escape(feed.get("last_error") or "")])
        learned = sorted(self.runtime.learned, key=lambda h: h.learned_at, reverse=True)
        learned_rows = [[_host_link(h.host), escape(h.evidence), _code(h.url), escape(", ".join(h.codes)),
                         escape(_when(h.learned_at, now)), escape(_when(h.expires, now))]
                        for h in learned[:LEARNED_SHOWN]]
        more = (f'<p class="muted">The newest {LEARNED_SHOWN} of {len(learned)} are shown.</p>'
                if len(learned) > LEARNED_SHOWN else "")
        error = (f'<pre class="error">{escape(self.runtime.learned.error)}</pre>'
                 if self.runtime.learned.error else "")
        inner = (
            "<h1>Feeds</h1>" + _table(
                ["feed", "format", "category", "entries", "skipped", "age of data", "loaded", "source",
                 "last error"], rows, empty="The policy names no feeds.") +
            f"<h2>Learned Thingbots ({len(learned)})</h2>"
            '<p class="muted">Hosts that served an appliance redirect or payload, refused until they '
            "expire.</p>" + error +
            _table(["host", "evidence", "url", "codes", "learned", "expires"], learned_rows,
                   empty="No host learned.") + more + await self._nodes(now))
        return self._frame(200, session, "/admin/feeds", "Feeds", inner)

    async def _nodes(self, now: float) -> str:
        """Every node's feed status as it put it in Redis (cluster.redis); nothing when none is shared."""
        shared = self.shared
        if shared is None:
            return ""
        statuses = await asyncio.to_thread(shared.statuses)  # a few Redis round trips: off the loop
        rows = []
        for node, status in sorted(statuses.items()):
            feeds = [f for f in status.get("feeds", []) if isinstance(f, dict)]
            errors = "; ".join(f"{f.get('name')}: {f.get('last_error')}" for f in feeds
                               if f.get("last_error"))
            written = status.get("written_at")
            rows.append([escape(node) + (" (this one)" if node == shared.node else ""),
                         escape(_when(written, now)) if isinstance(written, int | float) else "–",
                         f"{sum(int(f.get('entries') or 0) for f in feeds):,}",
                         f"{sum(1 for f in feeds if f.get('data_time'))} of {len(feeds)}", escape(errors)])
        state = "" if shared.connected else f'<pre class="error">{escape(shared.problem or "")}</pre>'
        return ("<h2>Nodes</h2>"
                f'<p class="muted">The nodes sharing state through {escape(shared.where)}, as each last '
                "said.</p>"
                + state + _table(["node", "status from", "entries", "feeds with data", "errors"], rows,
                                 empty="No node has put its status in Redis."))

    async def _policy(self, session: Session) -> Answer:
        """The policy in force and the last reload's error."""
        state = self.runtime.state
        now = self.clock()
        error = self.runtime.policy_error
        error_html = (f'<h2>Last reload failed</h2><p>The policy below keeps serving.</p>'
                      f'<pre class="error" id="policy-error">{escape(error)}</pre>' if error else "")
        if state is None:
            return self._frame(200, session, "/admin/policy", "Policy",
                               "<h1>Policy</h1><p>No policy loaded.</p>" + error_html)
        loaded = state.loaded
        policy = loaded.policy
        admin = policy.admin
        facts = [("file", _code(loaded.path)), ("sha256", _code(loaded.sha256)),
                 ("loaded", escape(_when(loaded.loaded_at, now))), ("click host", _code(policy.click_host)),
                 ("audit store", _code(self.runtime.store_path or "off (audit.store)")),
                 ("reports over", _code(", ".join(map(str, policy.audit.report_stores))
                                        or "this node's store (audit.report_stores)")),
                 ("dashboard users", escape(", ".join(sorted(admin.users)))),
                 ("outdated password hashes", _outdated_text(outdated_hashes(admin.users))),
                 ("lock-out", escape(_lockout_text(admin))),
                 ("sessions", escape(f"{admin.session_minutes} minutes"))]
        actions = [[_code(code), escape(action)] for code, action in sorted(policy.actions.items())]
        feeds = [[escape(f.name), escape(f.format), escape(f.category),
                  _code(f.path if f.path is not None else f.url)] for f in policy.feeds]
        inner = (
            "<h1>Policy in force</h1>" + error_html +
            "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
            "<h2>Actions</h2>" + _table(["reason code", "action"], actions) +
            "<h2>Feeds</h2>" + _table(["feed", "format", "category", "source"], feeds,
                                      empty="The policy names no feeds."))
        return self._frame(200, session, "/admin/policy", "Policy", inner)

    async def _host(self, session: Session, query: Mapping[str, list[str]]) -> Answer:
        """Every decision about one host."""
        host = _first(query, "h").strip().lower()[:300]
        if not host:
            return self._frame(400, session, "/admin", "Host", "<h1>Host</h1><p>Name a host: ?h=…</p>")
        return await self._drilldown(session, f"Host {host}", host=host)

    async def _click(self, session: Session, query: Mapping[str, list[str]]) -> Answer:
        """One click and the navigation that followed it."""
        click_id = _first(query, "id").strip()[:64]
        if not click_id:
            return self._frame(400, session, "/admin", "Click", "<h1>Click</h1><p>Name a click: ?id=…</p>")
        return await self._drilldown(session, f"Click {click_id}", click_id=click_id)

    async def _drilldown(self, session: Session, title: str, *, host: str | None = None,
                         click_id: str | None = None) -> Answer:
        """A drill-down from the store, read now in a worker thread."""
        nodes = self.runtime.judge.policy.audit.report_stores

        def read() -> str:
            if nodes:
                records = queries.drilldown_stores(queries.store_paths(nodes), host=host, click_id=click_id)
            else:
                with _readonly(self.runtime.store_path) as connection:
                    records = queries.drilldown(connection, host=host, click_id=click_id)
            return report_html.drilldown_html(records, link=drilldown_link)
        try:
            body = await asyncio.to_thread(read)
        except sqlite3.Error as e:
            body = _store_unavailable(self._shown_store(), e)
        return self._frame(200, session, "/admin", title, f"<h1>{escape(title)}</h1>{body}")

    def _shown_store(self) -> Path | None:
        """The store an error notice names: this node's; None over several (the error names the one)."""
        return None if self.runtime.judge.policy.audit.report_stores else self.runtime.store_path


@contextlib.contextmanager
def _readonly(path: Path | None) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the store for one request, closed after it."""
    if path is None:
        raise sqlite3.OperationalError("the policy turns the audit store off (audit.store)")
    if not path.exists():
        # mode=ro would fail too, but less clearly; the writer creates the file at its first record.
        raise sqlite3.OperationalError("no audit store yet (nothing recorded)")
    connection = store.connect(path, readonly=True)
    try:
        yield connection
    finally:
        connection.close()


def _store_unavailable(path: Path | None, error: sqlite3.Error) -> str:
    """What a view shows when the store cannot be read."""
    where = f" {_code(path)}" if path is not None else ""
    return f'<p class="notice">The audit store{where} cannot be read: {escape(str(error))}.</p>'


def _first(values: Mapping[str, list[str]], name: str) -> str:
    """The first value of a form or query field, '' when absent."""
    found = values.get(name)
    return found[0] if found else ""


def _form(body: bytes) -> dict[str, list[str]]:
    """A urlencoded form body; a body that is not one reads as empty."""
    try:
        return urllib.parse.parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}


def _is_nonce(value: str) -> bool:
    """Whether a login cookie looks like a nonce we set (token_urlsafe(16))."""
    return 16 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value) and value.isascii()


def _refusal_text(reason: str, seconds: int) -> str:
    """What the login form says about a refused attempt."""
    minutes = max(1, round(seconds / 60))
    later = (f"{minutes} minute{'s' * (minutes != 1)}" if seconds >= 90
             else f"{seconds} second{'s' * (seconds != 1)}")
    texts = {
        "locked_out": f"Too many failed logins. Try again in {later}.",
        "slowed_down": f"Too many failed logins for this user, from many places: one try every "
                       f"{USER_SLOW_SECONDS:.0f} seconds. Try again in {later}.",
        "rate_limited": f"Too many logins at once. Try again in {later}.",
        "table_full": f"Too many logins are locked out. Try again in {later}.",
    }
    return texts[reason]


def _outdated_text(outdated: Mapping[str, str]) -> str:
    """The users whose hashes to make again, and how (HTML)."""
    if not outdated:
        return "none"
    users = ", ".join(f"{escape(user)} ({escape(scheme)})" for user, scheme in outdated.items())
    return (f'<span id="outdated">{users}</span>: '
            "make new ones with <code>clickguard admin hash-password</code>")


def _lockout_text(admin: AdminConfig) -> str:
    """The lock-out rules in force, in words."""
    n = admin.lockout_after
    return (f"{n} failed logins lock a client out for that user, {n * CLIENT_FACTOR} for every user, "
            f"for {admin.lockout_minutes} minutes; {n * USER_SLOW_FACTOR} against one user from anywhere "
            f"slow that user to one try every {USER_SLOW_SECONDS:.0f} s; at most {CHECK_RATE:g} "
            "password checks a second in all")


def outdated_hashes(users: Mapping[str, str]) -> dict[str, str]:
    """The users whose password hash should be made again, with its scheme (the policy validated them)."""
    parsed = {user: parse_hash(stored) for user, stored in sorted(users.items())}
    return {user: stored.scheme for user, stored in parsed.items() if is_outdated(stored)}


def _not_allowed(allow: str) -> Answer:
    """405 with the methods the path takes."""
    return _message(405, "Method not allowed", f"This page takes {allow}.", extra=[("Allow", allow)])


def _off_page() -> Answer:
    """/admin when the policy names no user: the dashboard is off, and how to turn it on."""
    inner = (
        "<h1>The dashboard is off</h1>"
        "<p>The policy in force names no dashboard user, so there is nothing to log in to.</p>"
        "<p>To turn it on, make a password hash and add a user to the policy:</p>"
        "<pre>clickguard admin hash-password &gt; hash.txt    # asks for the password</pre>"
        "<pre>admin:\n  users:\n    alice: $argon2id$v=19$m=19456,t=2,p=1$…    # the line from hash.txt</pre>"
        "<p>The proxy reloads the policy by itself.</p>")
    return _html(404, "Dashboard off", inner)
