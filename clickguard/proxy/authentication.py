"""Proxy authentication from the policy (``identity.proxy_auth``): 407 until the user says who they are.

Every request, and every CONNECT, must carry ``Proxy-Authorization: Basic …`` with a
user and password the htpasswd file or the LDAP directory accepts
(`clickguard.decision.authentication`); otherwise the answer is 407 with
``Proxy-Authenticate: Basic realm="clickguard"``. A CONNECT authenticates its tunnel:
requests inside it (which carry no proxy credentials) belong to the same user. The
`Identity` is kept in ``flow.metadata["clickguard_identity"]``; `identity_of` reads it.
The credentials are removed before a request goes upstream.

Exempt: the PAC file on the click host (``/proxy.pac``, ``/wpad.dat``), which browsers
fetch before they know they have a proxy to authenticate to. The click host's other
pages (continue, click links, the dashboard) need the user, like the requests they let
through: a continue is granted to the user who was warned.

A directory that cannot be asked answers 503 (`DirectoryUnavailable`), not 407: the
password is not what is wrong, and a 407 would make every browser prompt every user to
type it again, and again, through the whole outage. Users whose check is cached keep
working until their entry expires. Nothing passes unauthenticated (fail closed).

mitmproxy's own ``proxyauth`` addon is not used: its realm is fixed ("mitmproxy"), its
checks (bcrypt, LDAP binds) run on the event loop with no cache, it reads no groups, and
it cannot exempt the PAC file.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import time
import weakref
from collections.abc import Coroutine
from html import escape

from mitmproxy import connection, ctx, exceptions, http

from clickguard.decision.authentication import (
    AuthenticationBusy,
    Authenticator,
    DirectoryUnavailable,
    build_authenticator,
)
from clickguard.decision.identity import Identity
from clickguard.errors import PolicyError
from clickguard.files import mtime
from clickguard.policy.identity import IdentityConfig
from clickguard.proxy.runtime import Runtime
from clickguard.web.pac import PAC_PATHS  # served on the click host without authentication

IDENTITY_KEY = "clickguard_identity"
REALM = "clickguard"
STAT_EVERY = 0.1  # seconds between checks of the htpasswd file's modification time on requests
logger = logging.getLogger(__name__)

type Pending = Coroutine[None, None, None] | None


def identity_of(flow: http.HTTPFlow) -> Identity | None:
    """The identity the proxy authenticated this flow as, None without proxy authentication."""
    identity = flow.metadata.get(IDENTITY_KEY)
    return identity if isinstance(identity, Identity) else None


def basic_credentials(header: str) -> tuple[str, str] | None:
    """User and password from a ``Basic`` Proxy-Authorization value; None if it is not one."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 4096:
        return None
    try:
        user, colon, password = binascii.a2b_base64(encoded.strip(), strict_mode=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon else None


def _page(status: int, title: str, text: str, headers: dict[str, str]) -> http.Response:
    """A small self-contained page (nothing in it is fetched: no loop through the proxy)."""
    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
            f"<h1>{escape(title)}</h1><p>{escape(text)}</p></html>\n")
    return http.Response.make(status, body, {"Content-Type": "text/html; charset=utf-8",
                                             "Cache-Control": "no-store", **headers})


def auth_required() -> http.Response:
    """407 asking for the proxy's Basic credentials."""
    return _page(407, "Proxy authentication required",
                 "Sign in with your user name and password to use this proxy.",
                 {"Proxy-Authenticate": f'Basic realm="{REALM}"'})


def cannot_authenticate(why: str) -> http.Response:
    """503: who the user is cannot be checked now (the user is not asked for the password again)."""
    return _page(503, "Sign-in is unavailable", f"The proxy cannot check who you are right now ({why}). "
                 "Try again in a minute; if it persists, tell your help desk.", {"Retry-After": "30"})


class Authentication:
    """Asks for, checks and remembers who uses the proxy; off while the policy has no proxy_auth."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._authenticator: Authenticator | None = None
        self._built_for: IdentityConfig | None = None  # the policy section the authenticator follows
        self._file_seen: float | None = None  # the htpasswd file's mtime when it was read
        self._next_stat = 0.0
        self._rebuild: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._failing = False  # the directory failed last time it was asked (logged once per outage)
        # Who opened a tunnel: the requests inside it carry no proxy credentials.
        self._tunnels: weakref.WeakKeyDictionary[connection.Client, Identity] = weakref.WeakKeyDictionary()

    def configure(self) -> None:
        """Build the authenticator of the policy in force (at start); a bad file is an option error."""
        config = self.runtime.state.loaded.policy.identity if self.runtime.state else None
        if config is None or config == self._built_for:
            return
        if config.proxy_auth is not None and ctx.options.proxyauth:
            # mitmproxy's addon would take the credentials off each request before this one saw them.
            raise exceptions.OptionsError("proxyauth: the policy's identity.proxy_auth authenticates; "
                                          "leave mitmproxy's proxyauth option unset")
        try:
            self._install(config, *self._build(config))
        except PolicyError as e:
            raise exceptions.OptionsError(f"identity.proxy_auth: {e}") from e
        logger.info("proxy authentication: %s", _describe(config))

    def _identity(self) -> IdentityConfig:
        return self.runtime.judge.policy.identity

    def _build(self, config: IdentityConfig) -> tuple[Authenticator | None, float | None]:
        """A new authenticator for config and the htpasswd file's mtime (blocking: reads files)."""
        auth = config.proxy_auth
        if auth is None:
            return None, None
        seen = mtime(auth.htpasswd) if auth.htpasswd is not None else None
        return build_authenticator(auth), seen

    def _install(self, config: IdentityConfig, authenticator: Authenticator | None,
                 seen: float | None) -> None:
        """Swap a new authenticator (and a new, empty cache) in."""
        old, self._authenticator = self._authenticator, authenticator
        self._built_for, self._file_seen = config, seen
        if old is not None:
            old.close()

    def running(self) -> None:
        """Watch the htpasswd file (and the policy's section) between requests too."""
        self._watch = asyncio.create_task(self._watching(), name="clickguard-auth-watch")

    async def _watching(self) -> None:
        """Notice changes while no request comes: a broken file is reported when it is written."""
        while True:
            await asyncio.sleep(max(ctx.options.clickguard_reload_ms / 1000, 0.05))
            if self.runtime.state is not None:
                self._current()

    def _current(self) -> Authenticator | None:
        """The authenticator in force; a changed policy section or htpasswd file starts a rebuild."""
        config = self._identity()
        stale = config is not self._built_for and config != self._built_for
        if not stale:
            self._built_for = config  # a reload that leaves the section as it was keeps the cache
        auth = config.proxy_auth
        if not stale and auth is not None and auth.htpasswd is not None:
            now = time.monotonic()
            if now >= self._next_stat:
                self._next_stat = now + STAT_EVERY
                stale = mtime(auth.htpasswd) != self._file_seen
        if stale and (self._rebuild is None or self._rebuild.done()):
            self._rebuild = asyncio.create_task(self._rebuilt(config), name="clickguard-auth-reload")
        return self._authenticator

    async def _rebuilt(self, config: IdentityConfig) -> None:
        """Build off the loop and swap in; a bad file keeps the last good authenticator."""
        try:
            authenticator, seen = await asyncio.to_thread(self._build, config)
        except PolicyError as e:
            logger.error("proxy authentication not reloaded, the last good one keeps serving:\n%s", e)
            # Not tried again until the file or the policy changes once more.
            self._built_for = config
            auth = config.proxy_auth
            self._file_seen = mtime(auth.htpasswd) if auth and auth.htpasswd else None
            return
        self._install(config, authenticator, seen)
        logger.info("proxy authentication: %s", _describe(config))

    def requestheaders(self, flow: http.HTTPFlow) -> Pending:
        """A request: the tunnel's identity, or its own credentials checked (407 without)."""
        if flow.response or flow.error or not flow.live:
            return None
        authenticator = self._current()
        if authenticator is None and self._identity().proxy_auth is None:
            return None  # authentication is off
        tunnel = self._tunnels.get(flow.client_conn)
        if tunnel is not None:
            flow.metadata[IDENTITY_KEY] = tunnel
            return None
        request = flow.request
        if (request.host == self.runtime.judge.policy.click_host and request.method in ("GET", "HEAD")
                and request.path.partition("?")[0] in PAC_PATHS):
            return None
        return self._authenticate(flow, authenticator)

    def http_connect(self, flow: http.HTTPFlow) -> Pending:
        """A CONNECT: its credentials checked; the tunnel belongs to that user."""
        if flow.response or flow.error or not flow.live:
            return None
        authenticator = self._current()
        if authenticator is None and self._identity().proxy_auth is None:
            return None
        return self._authenticate(flow, authenticator)

    async def _authenticate(self, flow: http.HTTPFlow, authenticator: Authenticator | None) -> None:
        """Check the flow's Proxy-Authorization; mark the flow (and a tunnel) or answer 407 or 503."""
        if authenticator is None:
            # The policy turned authentication on by a reload: still being built, or its file is
            # broken. Nobody passes unchecked (fail closed).
            flow.response = cannot_authenticate("its list of users is not loaded")
            return
        credentials = basic_credentials(flow.request.headers.get("proxy-authorization", ""))
        identity = None
        if credentials is not None:
            try:
                identity = await authenticator.authenticate(*credentials)
            except DirectoryUnavailable as e:
                self._directory_failed(str(e))
                flow.response = cannot_authenticate("the directory does not answer")
                return
            except AuthenticationBusy as e:
                logger.warning("proxy authentication: %s; answered 503", e)
                flow.response = cannot_authenticate("too many sign-ins at once")
                return
            self._directory_answered()
        if identity is None:
            flow.response = auth_required()
            return
        flow.metadata[IDENTITY_KEY] = identity
        del flow.request.headers["proxy-authorization"]  # never passed on to the server
        if flow.request.method == "CONNECT":
            self._tunnels[flow.client_conn] = identity

    def _directory_failed(self, why: str) -> None:
        """Log an outage when it starts, not at every request."""
        if not self._failing:
            logger.error("proxy authentication: %s; answering 503 until it answers again "
                         "(users checked in the last proxy_auth.cache seconds still pass)", why)
        self._failing = True

    def _directory_answered(self) -> None:
        """Log the end of an outage."""
        if self._failing:
            logger.info("proxy authentication: the directory answers again")
        self._failing = False

    async def done(self) -> None:
        """Stop watching and the checking threads."""
        for task in (self._watch, self._rebuild):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._authenticator is not None:
            self._authenticator.close()


def _describe(config: IdentityConfig) -> str:
    """What the policy's proxy_auth is, for the log."""
    auth = config.proxy_auth
    if auth is None:
        return "off"
    if auth.htpasswd is not None:
        return f"htpasswd {auth.htpasswd}"
    return f"ldap {auth.ldap.url}" if auth.ldap is not None else "off"
