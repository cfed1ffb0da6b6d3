"""The policy's sections: field types, validators and the models of each top-level key.

`model.Policy` puts them together; a section that grows a file of its own (identity, groups,
ops, upstream, pages, syslog) builds on the types here. Every model forbids unknown keys and is
frozen: a policy never changes once loaded.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from clickguard import reasons
from clickguard.errors import URLError
from clickguard.passhash import parse_hash
from clickguard.policy.yamlfile import FieldProblems, Loc, describe
from clickguard.reasons import Action
from clickguard.urls import normalize_host
from clickguard.vocab import FeedFormat, Kind

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_FEED_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_CATEGORY = re.compile(r"[a-z][a-z0-9_]*")
_REASON_CODE = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")
_DNS_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# Underscores are not valid in host names, but they occur in real (and malicious) DNS names.
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_DURATION = re.compile(r"(\d+)\s*([smhd]?)")
_SIZE = re.compile(r"(\d+)\s*((?:[kKmM](?:i?[bB])?)?)")
_UNIT_BYTES = {"": 1, "k": 1024, "m": 1024 * 1024}
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _dns_name(value: object) -> str:
    """A host or domain name, normalised like request hosts: lower case, no final dot, punycode."""
    if not isinstance(value, str):
        raise ValueError(f"must be a host name (got {describe(value)})")
    if (text := value.strip()).startswith("*."):
        raise ValueError(f"write {text[2:]!r} without '*.'; a domain covers its subdomains")
    try:
        # The same normaliser as requests, so a policy entry and a request host compare equal.
        host = normalize_host(value.strip())
    except URLError as e:
        raise ValueError(f"not a valid host name: {e}") from None
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(f"{value!r} is an IP address, not a host name; list it under networks")
    # WHATWG hosts may hold characters such as '!' or empty labels; IT means a DNS name.
    if len(host) > 253 or not _DNS_NAME.fullmatch(host):
        raise ValueError(f"not a valid host name (got {value!r})")
    return host


def _network(value: object) -> Network:
    """An IP address or CIDR as a network; host bits set are tolerated, as IT often writes them."""
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            pass
    raise ValueError(f"must be an IP address or a network like 10.0.0.0/8 (got {describe(value)})")


def _feed_name(value: str) -> str:
    """A feed name safe in file names and log lines."""
    if not _FEED_NAME.fullmatch(value):
        raise ValueError(f"must use only letters, digits, '_', '.' and '-' (got {value!r})")
    return value


def _category(value: str) -> str:
    """A feed category: the `<category>` of reason code `landing.<category>`."""
    if not _CATEGORY.fullmatch(value):
        raise ValueError(
            f"must be lower-case letters, digits and '_', starting with a letter (got {value!r})")
    # landing.appliance is the fingerprint finding, allowed by default; a feed must not inherit it.
    if reasons.feed_code(value) == reasons.LANDING_APPLIANCE:
        raise ValueError(f"{value!r} is reserved for the fingerprint finding {reasons.LANDING_APPLIANCE}")
    return value


def _reason_code(value: str) -> str:
    """A reason code such as `landing.thingbot`."""
    if not _REASON_CODE.fullmatch(value):
        raise ValueError(f"not a reason code; expected the form 'area.finding' (got {value!r})")
    return value


def _seconds(value: object) -> float:
    """A duration as whole seconds or `<n>s|m|h|d`, in seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = int(m[1]) * _UNIT_SECONDS[m[2]]
    else:
        raise ValueError("must be whole seconds or a duration such as 90s, 15m, 1h, 1d "
                         f"(got {describe(value)})")
    # One second is allowed so tests can refresh fast; real feeds want minutes (upstreams throttle).
    if seconds < 1:
        raise ValueError(f"must be at least 1 second (got {describe(value)})")
    return float(seconds)


def _size(value: object) -> int:
    """A size as whole bytes or `<n>KiB|MiB` (also k, m, KB, MB: all powers of 1024), in bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (m := _SIZE.fullmatch(value.strip())):
        return int(m[1]) * _UNIT_BYTES[m[2].lower()[:1]]
    raise ValueError(f"must be whole bytes or a size such as 512KiB, 1MiB (got {describe(value)})")


def _resolve_path(value: object, info: ValidationInfo) -> Path | None:
    """A path from the file, made absolute against the policy file's directory."""
    if value is None:
        return None
    if isinstance(value, Path):
        path = value
    elif isinstance(value, str) and value.strip():
        path = Path(value.strip())
    else:
        raise ValueError(f"must be a file path (got {describe(value)})")
    context = info.context if isinstance(info.context, dict) else {}
    base_dir = Path(context.get("base_dir") or Path.cwd())
    # Not resolve(): a policy reached through a symlink (a Kubernetes ConfigMap) keeps its own view.
    return path if path.is_absolute() else base_dir.absolute() / path


type HostName = Annotated[str, PlainValidator(_dns_name)]
type NetworkEntry = Annotated[Network, PlainValidator(_network)]


class _Model(BaseModel):
    """Base of the policy's models: unknown keys are errors, and a policy never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """A known key left empty (its entries all commented out) takes its default."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


class FeedConfig(_Model):
    """One reputation feed: where it comes from, how to parse it, what a match means."""

    name: Annotated[str, AfterValidator(_feed_name)]
    format: FeedFormat
    path: Path | None = None  # absolute after validation
    url: str | None = None
    refresh: Annotated[float, BeforeValidator(_seconds)] = 3600.0  # seconds; url feeds only
    cache: Path | None = None  # url feeds: last good copy on disk; None = the caller decides
    # url feeds: the most bytes a fetch may bring, counted after gzip/deflate are undone; a bigger
    # body is refused and the last good copy kept. 64 MiB: the biggest real feeds are ~3 MB.
    max_bytes: Annotated[int, BeforeValidator(_size), Field(ge=1)] = 64 * 2**20
    category: Annotated[str, AfterValidator(_category)] = "thingbot"
    min_count: Annotated[StrictInt, Field(ge=1)] = 1  # ipsum only: lists an IP must be on
    match: frozenset[Kind] | None = None  # indicator kinds to index; None = the format's default

    @field_validator("path", "cache", mode="before")
    @classmethod
    def _absolute(cls, value: object, info: ValidationInfo) -> Path | None:
        """Relative paths resolve against the policy file's directory."""
        return _resolve_path(value, info)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        """Feeds are fetched over http or https only."""
        if value is None:
            return None
        try:
            parts = urlsplit(value.strip())
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
        return value.strip()

    @field_validator("match")
    @classmethod
    def _some_kinds(cls, value: frozenset[Kind] | None) -> frozenset[Kind] | None:
        """An empty list would index nothing, which is never what IT meant."""
        if value is not None and not value:
            raise ValueError("list at least one kind, or leave match out for the format's default")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Exactly one source; the url-only and ipsum-only keys only where they apply."""
        found: list[tuple[Loc, str]] = []
        given = self.model_fields_set
        if self.path is not None and self.url is not None:
            found.append((("url",), "give either path or url, not both"))
        elif self.path is None and self.url is None:
            found.append(((), "give the feed a path (a local file) or a url"))
        if self.url is None:
            found.extend(((key,), f"{key} only applies to feeds fetched by url")
                         for key in ("refresh", "cache", "max_bytes") if key in given)
        if "min_count" in given and self.format != "ipsum":
            found.append((("min_count",),
                          f"min_count only applies to format ipsum (this feed is {self.format})"))
        if found:
            raise FieldProblems(found)
        return self


class HostList(_Model):
    """Hosts (exact), domains (with their subdomains) and networks, for allow and deny."""

    hosts: frozenset[HostName] = frozenset()
    domains: frozenset[HostName] = frozenset()
    networks: tuple[NetworkEntry, ...] = ()


class NeverJudge(_Model):
    """Traffic the proxy passes without judging it."""

    clients: tuple[NetworkEntry, ...] = ()  # also not audited
    destinations: tuple[NetworkEntry, ...] = ()


class WarnConfig(_Model):
    """How the warn page behaves."""

    allow_continue: StrictBool = True
    continue_minutes: Annotated[StrictInt, Field(ge=1, le=1440)] = 30
    token_minutes: Annotated[StrictInt, Field(ge=1, le=120)] = 10


class InspectConfig(_Model):
    """Response inspection: appliances, redirects and drive-by payloads, and what is learned."""

    enabled: StrictBool = True
    # Bytes of a body read for inspection; a longer body streams on after its first 4 KiB are sniffed.
    max_body: Annotated[int, BeforeValidator(_size), Field(ge=4096, le=64 * 2**20)] = 2**20
    fingerprints: tuple[Annotated[Path, BeforeValidator(_resolve_path)], ...] = ()  # IT's own files
    # What a redirect to another host, or a payload, gets when served by an appliance or a Thingbot.
    appliance_redirect: Action = "block"
    appliance_drive_by: Action = "block"
    learn: StrictBool = True  # remember hosts blocked for that as Thingbots
    learn_for: Annotated[float, BeforeValidator(_seconds)] = 7 * 86400.0


class InterceptConfig(_Model):
    """What TLS the proxy does not intercept."""

    exclude: frozenset[HostName] = frozenset()  # domains, with their subdomains


# Addresses a relay outside the organisation cannot have: RFC 1918, CGNAT (RFC 6598), loopback,
# link-local, IPv6 unique-local. Not the documentation ranges, which stand for public addresses.
PRIVATE_RELAY_NETWORKS: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "::1/128", "fc00::/7", "fe80::/10"))


class EmailConfig(_Model):
    """How to find an e-mail's origin: the organisation's own relays, skipped from the top."""

    trusted_relays: frozenset[HostName] = frozenset()  # relay host names (and their subdomains)
    internal_networks: tuple[NetworkEntry, ...] = ()  # networks of the organisation's relays
    # Relays on addresses no one outside can have (private, loopback, link-local, CGNAT) are
    # the organisation's own: mail reaches most organisations through such a relay (10.x),
    # and without this its origin would stay unknown.
    private_relays_internal: StrictBool = True
    # Domains the organisation knows (its own, its partners'): a Thingbot-origin mail's link
    # to anything else also gets origin.unknown_landing.
    known_domains: frozenset[HostName] = frozenset()

    @property
    def relay_networks(self) -> tuple[Network, ...]:
        """The networks whose relays count as internal: those listed, and the private ranges unless off."""
        if not self.private_relays_internal:
            return self.internal_networks
        return (*self.internal_networks, *PRIVATE_RELAY_NETWORKS)


class ClickLinksConfig(_Model):
    """Signed click links: what they carry and where the proxy rewrites them."""

    recipient: Literal["none", "hashed", "plain"] = "hashed"  # how a link names its recipient
    rewrite_hosts: frozenset[HostName] = frozenset()  # webmail hosts whose pages get click links
    skip_domains: frozenset[HostName] = frozenset()  # links to these domains are left as they are


_ADMIN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def _admin_name(value: str) -> str:
    """A dashboard user name: plain characters only, so it reads the same in logs and cookies."""
    if not _ADMIN_NAME.fullmatch(value):
        raise ValueError(f"a user name is 1-64 letters, digits, '_', '.', '@' or '-' (got {value!r})")
    return value


def _password_hash(value: object) -> str:
    """A password hash made by `clickguard admin hash-password`; the value is never echoed."""
    if not isinstance(value, str):
        raise ValueError("must be a password hash made by `clickguard admin hash-password` (text)")
    parse_hash(value)
    return value.strip()


class AdminConfig(_Model):
    """The dashboard on the click host: who may log in, lock-out and session lengths."""

    # No users, no dashboard: there is no default password.
    users: Mapping[Annotated[str, AfterValidator(_admin_name)],
                   Annotated[str, PlainValidator(_password_hash)]] = Field(default_factory=dict)
    # failed logins that lock one client out for one user (more: see clickguard/web/lockout.py)
    lockout_after: Annotated[StrictInt, Field(ge=1, le=100)] = 5
    lockout_minutes: Annotated[StrictInt, Field(ge=1, le=1440)] = 15
    session_minutes: Annotated[StrictInt, Field(ge=1, le=1440)] = 60


# Where a policy that does not say records decisions: relative to the proxy's working directory.
DEFAULT_AUDIT_LOG = Path("var/audit.jsonl")
DEFAULT_AUDIT_STORE = Path("var/audit.sqlite")


def _is_off(value: object) -> bool:
    """`off` in the file: YAML 1.1 reads a bare off (or no, false) as False; a quoted 'off' is text."""
    return value is False or (isinstance(value, str) and value.strip().lower() == "off")


# RFC 5424's facility numbers, by the names rsyslog and syslog-ng use (audit.syslog.facility).
SYSLOG_FACILITIES: Mapping[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14,
    "clock": 15, **{f"local{n}": 16 + n for n in range(8)}}
_SYSLOG_TARGETS = "udp://HOST:PORT, tcp://HOST:PORT or unix:PATH"


class SyslogConfig(_Model):
    """Every audit record also sent to a SIEM over syslog (audit.syslog): where, how, how much may wait.

    `target` is ``udp://HOST[:PORT]``, ``tcp://HOST[:PORT]`` (port 514 when left out) or
    ``unix:PATH``, a local socket such as /dev/log (relative: to the policy file's directory).
    Best effort, off the response path: `clickguard.audit.siem`.
    """

    target: str  # normalised: udp|tcp://HOST:PORT (IPv6 in brackets) or unix:/absolute/path
    format: Literal["json", "cef"] = "json"  # the audit log's JSON line, or ArcSight CEF
    facility: int = 16  # local0
    app_name: str = "clickguard"  # RFC 5424 APP-NAME
    # TCP and unix stream sockets: a line feed after each message (what rsyslog, syslog-ng's
    # network() and most SIEM collectors read by default) or RFC 6587 octet counting.
    framing: Literal["newline", "octet_counting"] = "newline"
    max_queue: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 10_000  # records waiting; more: dropped
    # Longer messages are shortened (the URL cut, JSON reduced to the fixed fields); rsyslog's
    # default limit is 8 KiB, one UDP datagram can hold at most 65,507 bytes.
    max_message: Annotated[int, BeforeValidator(_size), Field(ge=1024, le=65507)] = 8192

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, value: object, info: ValidationInfo) -> str:
        """One of the three forms, normalised; a unix path made absolute."""
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"must be {_SYSLOG_TARGETS} (got {describe(value)})")
        text = value.strip()
        scheme, _, rest = text.partition(":")
        scheme = scheme.lower()
        if scheme == "unix":
            path = rest[2:] if rest.startswith("///") else rest
            if not path or path.startswith("//"):
                raise ValueError(f"unix: needs a socket path, such as unix:/dev/log (got {text!r})")
            return f"unix:{_resolve_path(path, info)}"
        if scheme not in ("udp", "tcp") or not rest.startswith("//"):
            raise ValueError(f"must be {_SYSLOG_TARGETS} (got {text!r})")
        return f"{scheme}://{cls._host_port(text)}"

    @staticmethod
    def _host_port(text: str) -> str:
        """HOST:PORT of a udp:// or tcp:// target (port 514 by default); ValueError saying what is wrong."""
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"the port must be a number from 1 to 65535 (got {text!r})") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError(f"must be only a host and a port, such as udp://siem.example:514 (got {text!r})")
        if not parts.hostname or port == 0:
            raise ValueError(f"needs a host, and a port from 1 to 65535 (got {text!r})")
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return f"{_dns_name(parts.hostname)}:{port or 514}"
        return f"[{address}]:{port or 514}" if address.version == 6 else f"{address}:{port or 514}"

    @field_validator("facility", mode="before")
    @classmethod
    def _facility(cls, value: object) -> int:
        """A facility name (local0 … local7, daemon, auth, …) or its number, 0 to 23."""
        if isinstance(value, str) and value.strip().lower() in SYSLOG_FACILITIES:
            return SYSLOG_FACILITIES[value.strip().lower()]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 23:
            return value
        raise ValueError(f"must be a syslog facility: {', '.join(SYSLOG_FACILITIES)}, or 0 to 23 "
                         f"(got {describe(value)})")

    @field_validator("app_name")
    @classmethod
    def _app_name(cls, value: str) -> str:
        """RFC 5424's APP-NAME: 1 to 48 printable ASCII characters, no space."""
        if not 1 <= len(value) <= 48 or not all(33 <= ord(c) <= 126 for c in value):
            raise ValueError(f"must be 1 to 48 printable ASCII characters without spaces (got {value!r})")
        return value

    @staticmethod
    def shorthand(value: object) -> object:
        """audit.syslog as written: `off` is None, a bare target stands for {target: …}."""
        if _is_off(value):
            return None
        return {"target": value} if isinstance(value, str) else value

    @property
    def transport(self) -> Literal["udp", "tcp", "unix"]:
        """How the lines travel."""
        scheme = self.target.partition(":")[0]
        return "udp" if scheme == "udp" else "tcp" if scheme == "tcp" else "unix"

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of a udp or tcp target, IPv6 without brackets; (path, 0) of a unix one."""
        if self.transport == "unix":
            return self.target.partition(":")[2], 0
        host, _, port = self.target.partition("://")[2].rpartition(":")
        return host.strip("[]"), int(port)


class AuditConfig(_Model):
    """Where decisions are recorded, how long the store keeps them, what happens when recording fails."""

    # Absolute after validation, except the defaults above; None: `off`, that sink is not written.
    log: Path | None = DEFAULT_AUDIT_LOG  # JSON Lines, appended, never pruned
    store: Path | None = DEFAULT_AUDIT_STORE  # SQLite, what reports and the dashboard read
    retention: float | None = 90 * 86400.0  # seconds the store keeps a record; None: `off`, forever
    # A decision that cannot be recorded (disk full): served anyway (open), or refused (closed).
    on_failure: Literal["open", "closed"] = "open"
    # Every record also sent to a SIEM: {target: …} or just the target; None (`off`): not sent.
    syslog: Annotated[SyslogConfig | None, BeforeValidator(SyslogConfig.shorthand)] = None
    # The stores the dashboard reports over: files or directories of *.sqlite (every node's);
    # empty: only `store`, this node's own. Read only, never created.
    report_stores: tuple[Path, ...] = ()

    @field_validator("log", "store", mode="before")
    @classmethod
    def _absolute(cls, value: object, info: ValidationInfo) -> Path | None:
        """Relative paths resolve against the policy file's directory; `off` turns the sink off."""
        return None if _is_off(value) else _resolve_path(value, info)

    @field_validator("report_stores", mode="before")
    @classmethod
    def _absolute_all(cls, value: object, info: ValidationInfo) -> tuple[Path, ...]:
        """A path or a list of them, each resolved as `store` is; `off` or nothing: this node's store only."""
        if value is None or _is_off(value):
            return ()
        paths = value if isinstance(value, list | tuple) else [value]
        return tuple(path for path in (_resolve_path(v, info) for v in paths) if path is not None)

    @field_validator("retention", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        """A duration such as 90d; `off` keeps records forever."""
        return None if _is_off(value) else _seconds(value)
