"""Checking a proxy user's name and password: an htpasswd file or an LDAP directory, behind a short cache.

The proxy asks `Authenticator.authenticate(user, password)` for every request that
carries credentials; it answers an `Identity` (the user and the directory groups) or
None for wrong credentials, and raises

- `DirectoryUnavailable` when the directory cannot be asked (down, unreachable, too
  slow, the service account refused): the proxy cannot tell who the user is, so it
  neither passes the request nor asks for the password again (see the proxy's glue);
- `AuthenticationBusy` when too many checks are already waiting (a flood of guesses):
  users whose check is cached are not slowed by it.

Cost. A check is slow by design (bcrypt) or a round trip (LDAP), and runs in a small
thread pool, never on the event loop. A successful check is cached for the policy's
``proxy_auth.cache`` seconds under a keyed hash of user and password (HMAC with a key
made at start and never stored: the cache holds no password, and its keys mean nothing
outside this process); only successes are cached, at most `CACHE_ENTRIES`, so a guesser
fills nothing. The same credentials checked while a check of them is under way wait
for that one (a browser opens six connections at once). A name the htpasswd file does
not know costs a bcrypt check too, so the answer's time does not say which names exist.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import math
import os
import ssl
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import bcrypt
import ldap3
from cachetools import TTLCache
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from clickguard.decision.identity import Identity
from clickguard.errors import ClickguardError
from clickguard.policy.identity import LdapConfig, ProxyAuthConfig, read_htpasswd, read_secret

CACHE_ENTRIES = 10_000  # users whose check holds at once; a success past it pushes out the oldest
MAX_PENDING = 256  # checks waiting or running; past it a new one is refused (AuthenticationBusy)
MAX_USER_CHARS = 256
MAX_PASSWORD_BYTES = 1024
BCRYPT_BYTES = 72  # bcrypt reads this much of a password (Apache's htpasswd too); bcrypt 5 refuses more
WORKERS = 2  # threads checking at once: bcrypt and ldap3 release the GIL while they wait or hash
MAX_GROUPS = 1000  # groups read for one user


class DirectoryUnavailable(ClickguardError):
    """The directory cannot be asked now: nobody can be told to be or not be who they say."""


class AuthenticationBusy(ClickguardError):
    """Too many checks are waiting; this one is not started."""


class Checker(Protocol):
    """Checks one user's password, blocking (run in a thread); None for wrong credentials."""

    def check(self, user: str, password: str) -> Identity | None:
        """The user's identity when the password is theirs."""
        ...


class PasswordFile:
    """An htpasswd file's users (bcrypt hashes), checked as Apache checks them."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {user: hashed.encode() for user, hashed in users.items()}
        # Unknown names are checked against this, at the file's usual cost, so they take as long.
        costs = collections.Counter(hashed[4:6] for hashed in users.values())
        cost = int(costs.most_common(1)[0][0]) if costs else 5
        self._decoy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(rounds=cost))

    @classmethod
    def load(cls, path: Path) -> PasswordFile:
        """Read an htpasswd file; PolicyError naming each bad line."""
        return cls(read_htpasswd(path))

    def check(self, user: str, password: str) -> Identity | None:
        """The user, when the password matches the file's hash."""
        candidate = password.encode()[:BCRYPT_BYTES]
        hashed = self._users.get(user)
        if hashed is None:
            bcrypt.checkpw(candidate, self._decoy)
            return None
        return Identity(user) if bcrypt.checkpw(candidate, hashed) else None


class Directory:
    """An LDAP directory: the service account finds the user, the user's own bind checks the password."""

    def __init__(self, config: LdapConfig, bind_password: str | None) -> None:
        self.config = config
        self._bind_password = bind_password
        parts = urlsplit(config.url)
        secure = parts.scheme == "ldaps"
        tls = None
        if secure or config.start_tls:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED,
                            ca_certs_file=str(config.ca_file) if config.ca_file else None)
        self._server = ldap3.Server(parts.hostname or "", port=parts.port or (636 if secure else 389),
                                    use_ssl=secure, tls=tls, get_info=ldap3.NONE,
                                    connect_timeout=config.timeout)

    @classmethod
    def load(cls, config: LdapConfig) -> Directory:
        """The directory, with its bind password read from its file; PolicyError if unreadable."""
        password = config.bind_password
        if config.bind_password_file is not None:
            password = read_secret(config.bind_password_file)
        return cls(config, password)

    def _connection(self, dn: str | None, password: str | None) -> ldap3.Connection:
        """An open connection (TLS started where configured), not yet bound."""
        # ldap3 packs the receive timeout into SO_RCVTIMEO as a whole number of seconds.
        conn = ldap3.Connection(self._server, user=dn, password=password, read_only=True,
                                receive_timeout=math.ceil(self.config.timeout), raise_exceptions=False)
        conn.open()
        if self.config.start_tls and not conn.start_tls():
            raise DirectoryUnavailable(f"{self.config.url}: StartTLS failed: {conn.result}")
        return conn

    def check(self, user: str, password: str) -> Identity | None:
        """The user and their groups if the directory takes the password; DirectoryUnavailable if unasked."""
        if not password:
            return None  # an empty password is an unauthenticated bind, which LDAP servers accept
        try:
            service = self._connection(self.config.bind_dn, self._bind_password)
            try:
                if not service.bind():
                    raise DirectoryUnavailable(
                        f"{self.config.url}: the service account's bind was refused: "
                        f"{service.result.get('description')}")
                found = self._find_user(service, user)
                if found is None or not self._password_is(found[0], password):
                    return None
                return Identity(found[1], self._groups(service, found[0]))
            finally:
                service.unbind()
        except LDAPException as e:
            raise DirectoryUnavailable(f"{self.config.url}: {e}") from e

    def _search(self, conn: ldap3.Connection, base: str, query: str, attributes: list[str],
                limit: int) -> list[dict[str, object]]:
        """The entries found (dn and attributes); DirectoryUnavailable if the search failed."""
        conn.search(base, query, search_scope=ldap3.SUBTREE, attributes=attributes, size_limit=limit)
        code = conn.result.get("result")
        if code not in (0, 4, 32):  # success, size limit exceeded, no such object
            raise DirectoryUnavailable(f"{self.config.url}: search under {base} failed: "
                                       f"{conn.result.get('description')}")
        return [entry for entry in conn.response or () if entry.get("type") == "searchResEntry"]

    def _find_user(self, conn: ldap3.Connection, user: str) -> tuple[str, str] | None:
        """The DN and name (as the directory spells it) of the one entry found; None for none or several."""
        query = self.config.user_filter.replace("{user}", escape_filter_chars(user))
        found = self._search(conn, self.config.user_base, query, [self.config.user_attribute], 2)
        if len(found) != 1:
            return None
        names = _values(found[0], self.config.user_attribute)
        # Of several names (uid may repeat), the one the user typed, in the directory's spelling.
        typed = user.strip().casefold()
        name = next((n for n in names if n.casefold() == typed), names[0] if names else user)
        return str(found[0]["dn"]), name

    def _password_is(self, dn: str, password: str) -> bool:
        """True when the directory accepts a bind as dn with this password."""
        conn = self._connection(dn, password)
        try:
            return bool(conn.bind())
        finally:
            conn.unbind()

    def _groups(self, conn: ldap3.Connection, dn: str) -> frozenset[str]:
        """The names of the groups the filter finds for dn (empty without group_base)."""
        if self.config.group_base is None:
            return frozenset()
        attribute = self.config.group_attribute
        query = self.config.group_filter.replace("{dn}", escape_filter_chars(dn))
        found = self._search(conn, self.config.group_base, query, [attribute], MAX_GROUPS)
        return frozenset(names[0] for entry in found if (names := _values(entry, attribute)))


def _values(entry: dict[str, object], attribute: str) -> list[str]:
    """An entry's values of an attribute, as text (ldap3 gives one value or a list)."""
    attributes = entry.get("attributes")
    values = attributes.get(attribute) if isinstance(attributes, Mapping) else None  # ldap3: case-blind
    listed = values if isinstance(values, list) else [values]
    return [str(v) for v in listed if v not in (None, "")]


class CredentialCache:
    """Successful checks for a while, keyed by a keyed hash of user and password."""

    def __init__(self, ttl: float, maxsize: int = CACHE_ENTRIES,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self._key = os.urandom(32)  # per process: the digests mean nothing elsewhere
        self._hits: TTLCache[bytes, Identity] = TTLCache(maxsize, ttl, timer=timer)

    def digest(self, user: str, password: str) -> bytes:
        """The cache key of these credentials (length-prefixed, so "a:bc" and "ab:c" differ)."""
        name = user.encode()
        message = len(name).to_bytes(4, "big") + name + password.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def get(self, digest: bytes) -> Identity | None:
        """The identity a check of these credentials gave, while it holds."""
        return self._hits.get(digest)

    def put(self, digest: bytes, identity: Identity) -> None:
        """Remember a successful check."""
        self._hits[digest] = identity

    def __len__(self) -> int:
        return len(self._hits)


def plausible(user: str, password: str) -> bool:
    """Credentials worth checking at all: a name without control characters, both within bounds."""
    return (0 < len(user) <= MAX_USER_CHARS and user.isprintable()
            and len(password.encode()) <= MAX_PASSWORD_BYTES)


class Authenticator:
    """Checks credentials in a thread pool, through the cache, one check per distinct credentials at once."""

    def __init__(self, checker: Checker, ttl: float, *, workers: int = WORKERS,
                 max_pending: int = MAX_PENDING) -> None:
        self.checker = checker
        self.cache = CredentialCache(ttl)
        self._max_pending = max_pending
        self._pending: dict[bytes, asyncio.Future[Identity | None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clickguard-auth")

    async def authenticate(self, user: str, password: str) -> Identity | None:
        """Who these credentials belong to; None when wrong. DirectoryUnavailable, AuthenticationBusy."""
        if not plausible(user, password):
            return None
        digest = self.cache.digest(user, password)
        if (identity := self.cache.get(digest)) is not None:
            return identity
        pending = self._pending.get(digest)
        if pending is None:
            if len(self._pending) >= self._max_pending:
                raise AuthenticationBusy(f"{len(self._pending)} credential checks are waiting")
            pending = asyncio.ensure_future(self._check(digest, user, password))
            self._pending[digest] = pending
            pending.add_done_callback(lambda _: self._pending.pop(digest, None))
        # Shielded: a client that hangs up does not cancel the check others wait for.
        return await asyncio.shield(pending)

    async def _check(self, digest: bytes, user: str, password: str) -> Identity | None:
        """One check in the pool; a success is cached."""
        loop = asyncio.get_running_loop()
        identity = await loop.run_in_executor(self._pool, self.checker.check, user, password)
        if identity is not None:
            self.cache.put(digest, identity)
        return identity

    def close(self) -> None:
        """Take no more checks; those under way or queued still answer (a request waits for each)."""
        self._pool.shutdown(wait=False)


def build_authenticator(config: ProxyAuthConfig) -> Authenticator:
    """The authenticator a policy's proxy_auth asks for (reads its files; PolicyError if one is bad)."""
    checker: Checker
    if config.htpasswd is not None:
        checker = PasswordFile.load(config.htpasswd)
    else:
        assert config.ldap is not None  # the policy requires exactly one
        checker = Directory.load(config.ldap)
    return Authenticator(checker, config.cache)
