"""Who the user is: proxy authentication (issue 12), policy ``identity.proxy_auth``.

Either an htpasswd file (bcrypt lines as ``htpasswd -B`` writes them) or an LDAP
directory (bind as a service account, find the user, bind as the user to check the
password, read the groups the user is a member of). The file format is read here, at
the policy's stage, so `clickguard policy check` can report a bad line as
``FILE:LINE: user 'bob': …`` without the proxy; the checking itself (bcrypt, LDAP
queries, the cache) is `clickguard.decision.authentication`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, StrictBool, ValidationInfo, field_validator, model_validator

from clickguard.errors import PolicyError, Problem
from clickguard.policy.sections import _Model, _resolve_path, _seconds
from clickguard.policy.yamlfile import FieldProblems, Loc

# bcrypt as Apache writes it ($2y$) and as other tools do ($2a$, $2b$): cost, then 22+31 characters.
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
# Cost 4 is bcrypt's floor (htpasswd -B writes 5); past 14 one check takes over a second of CPU,
# and every wrong password sent to the proxy costs one.
BCRYPT_MAX_COST = 14
MAX_HTPASSWD_BYTES = 16 * 2**20  # a million users is ~70 MB; IT with that many runs LDAP
_OTHER_FORMATS = (
    ("{SHA}", "unsalted SHA-1 (htpasswd -s), cracked in seconds from a leaked file"),
    ("$apr1$", "Apache MD5 (htpasswd -m), fast to crack"),
    ("$1$", "MD5-crypt, fast to crack"),
    ("$5$", "SHA-256-crypt"),
    ("$6$", "SHA-512-crypt"),
)
_LDAP_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


def _format_problem(user: str, hashed: str) -> str | None:
    """Why a password hash is not usable here, None when it is a bcrypt hash within bounds."""
    if m := _BCRYPT.fullmatch(hashed):
        cost = int(m[1])
        if not 4 <= cost <= BCRYPT_MAX_COST:
            return f"user {user!r}: bcrypt cost {cost} is outside 4..{BCRYPT_MAX_COST}"
        return None
    for prefix, what in _OTHER_FORMATS:
        if hashed.startswith(prefix):
            return f"user {user!r}: {what}; write the entry again with `htpasswd -B`"
    return f"user {user!r}: not a bcrypt hash; write the entry again with `htpasswd -B`"


def parse_htpasswd(text: str, filename: str) -> dict[str, str]:
    """User name to bcrypt hash from an htpasswd file's text; PolicyError naming every bad line."""
    users: dict[str, str] = {}
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not user:
            problems.append(Problem(filename, number, "", "not a 'user:hash' line"))
        elif user in users:
            problems.append(Problem(filename, number, "", f"user {user!r} is listed twice"))
        elif (problem := _format_problem(user, hashed)) is not None:
            problems.append(Problem(filename, number, "", problem))
        else:
            users[user] = hashed
    if problems:
        raise PolicyError(problems)
    return users


def read_htpasswd(path: Path) -> dict[str, str]:
    """An htpasswd file's users; PolicyError when it cannot be read or has a bad line."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_HTPASSWD_BYTES + 1)
    except OSError as e:
        message = f"cannot read the htpasswd file: {e.strerror or e}"
        raise PolicyError([Problem(str(path), None, "", message)]) from None
    if len(raw) > MAX_HTPASSWD_BYTES:
        raise PolicyError([Problem(str(path), None, "", f"larger than {MAX_HTPASSWD_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise PolicyError([Problem(str(path), line, "", "not UTF-8 text")]) from None
    return parse_htpasswd(text, str(path))


def read_secret(path: Path) -> str:
    """A password kept in a file of its own (its first line); PolicyError if unreadable."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        message = f"cannot read the password file: {getattr(e, 'strerror', None) or e}"
        raise PolicyError([Problem(str(path), None, "", message)]) from None
    return text.splitlines()[0] if text else ""


def _ldap_filter(value: str, placeholder: str) -> str:
    """An LDAP filter with its placeholder, in parentheses that balance."""
    text = value.strip()
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if not text.startswith("(") or depth != 0:
        raise ValueError(f"must be an LDAP filter in balanced parentheses (got {value!r})")
    if placeholder not in text:
        raise ValueError(f"must contain {placeholder}, where the value is put in (got {value!r})")
    return text


class LdapConfig(_Model):
    """An LDAP directory: the service account, where users and groups are, how they are found."""

    url: str  # ldap://HOST[:PORT] or ldaps://HOST[:PORT]
    start_tls: StrictBool = False  # ldap:// upgraded with StartTLS before any password is sent
    ca_file: Path | None = None  # CA to verify the server's certificate (ldaps, start_tls)
    bind_dn: str | None = None  # the service account; None: search anonymously
    bind_password: str | None = None
    bind_password_file: Path | None = None  # kept out of the policy file
    user_base: str
    user_filter: str = "(&(objectClass=inetOrgPerson)(uid={user}))"
    # The user's name as the directory spells it: the name in audit records and groups[].members
    # (directories match names ignoring case and extra spaces; "ALICE" signs in as alice).
    user_attribute: str = "uid"
    group_base: str | None = None  # None: no groups are read
    group_filter: str = "(&(objectClass=groupOfNames)(member={dn}))"
    group_attribute: str = "cn"  # the group's name, as groups[].ldap_groups names it
    timeout: Annotated[float, BeforeValidator(_seconds)] = 5.0  # per connect and per answer

    @field_validator("ca_file", "bind_password_file", mode="before")
    @classmethod
    def _absolute(cls, value: object, info: ValidationInfo) -> Path | None:
        """Relative paths resolve against the policy file's directory."""
        return _resolve_path(value, info)

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        """ldap:// or ldaps:// with a host, nothing after it."""
        try:
            parts = urlsplit(value.strip())
            ok = parts.scheme in ("ldap", "ldaps") and bool(parts.hostname) and parts.path in ("", "/")
            _ = parts.port  # raises ValueError for a bad port
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"must be ldap://HOST[:PORT] or ldaps://HOST[:PORT] (got {value!r})")
        return value.strip()

    @field_validator("user_filter")
    @classmethod
    def _user_filter(cls, value: str) -> str:
        """Finds one user by the name given to the proxy ({user}, escaped when put in)."""
        return _ldap_filter(value, "{user}")

    @field_validator("group_filter")
    @classmethod
    def _group_filter(cls, value: str) -> str:
        """Finds the user's groups by the user's DN ({dn}, escaped when put in)."""
        return _ldap_filter(value, "{dn}")

    @field_validator("group_attribute", "user_attribute")
    @classmethod
    def _attribute(cls, value: str) -> str:
        """An LDAP attribute name."""
        if not _LDAP_ATTRIBUTE.fullmatch(value):
            raise ValueError(f"must be an LDAP attribute name such as cn (got {value!r})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """A password only with a bind DN, at most one way of giving it; StartTLS only on ldap://."""
        found: list[tuple[Loc, str]] = []
        if self.bind_password is not None and self.bind_password_file is not None:
            found.append((("bind_password_file",), "give bind_password or bind_password_file, not both"))
        elif self.bind_dn is None and (self.bind_password is not None or self.bind_password_file is not None):
            found.append((("bind_dn",), "a bind password needs the bind_dn it belongs to"))
        elif self.bind_dn is not None and self.bind_password is None and self.bind_password_file is None:
            found.append((("bind_dn",), "give bind_password_file (or bind_password) for the bind_dn"))
        if self.start_tls and self.url.startswith("ldaps:"):
            found.append((("start_tls",), "ldaps:// is TLS already; start_tls is for ldap://"))
        if found:
            raise FieldProblems(found)
        return self


class ProxyAuthConfig(_Model):
    """Proxy authentication: who may use the proxy, checked against one source."""

    htpasswd: Path | None = None  # bcrypt lines as `htpasswd -B` writes them; re-read when it changes
    ldap: LdapConfig | None = None
    # How long a successful check holds for the same user and password; a removed user or a
    # changed password is noticed after at most this long (an htpasswd file at once).
    cache: Annotated[float, BeforeValidator(_seconds), Field(le=86400)] = 300.0

    @field_validator("htpasswd", mode="before")
    @classmethod
    def _absolute(cls, value: object, info: ValidationInfo) -> Path | None:
        """Relative paths resolve against the policy file's directory."""
        return _resolve_path(value, info)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        """Exactly one of htpasswd and ldap."""
        if (self.htpasswd is None) == (self.ldap is None):
            raise FieldProblems([((), "give either htpasswd: FILE or ldap: {…}, exactly one")])
        return self


class IdentityConfig(_Model):
    """Who the user is; without proxy_auth every request is anonymous, as before."""

    proxy_auth: ProxyAuthConfig | None = None


def identity_file_problems(config: IdentityConfig) -> list[Problem]:
    """Problems of the files identity names (htpasswd lines, the bind password file); [] when fine."""
    auth = config.proxy_auth
    try:
        if auth is not None and auth.htpasswd is not None:
            read_htpasswd(auth.htpasswd)
        if auth is not None and auth.ldap is not None and auth.ldap.bind_password_file is not None:
            read_secret(auth.ldap.bind_password_file)
    except PolicyError as e:
        return e.problems
    return []
