"""The policy: IT's YAML file, validated into frozen pydantic models.

A policy says which feeds to load, what to do about each reason code (allow,
warn, block), which hosts and networks are always allowed, denied or never
judged, how the warn page behaves and where the audit log goes. See
`policies/default.yaml` for every key with a one-line explanation.

Every problem in a policy file is reported at once, each as
``file:line: field: message`` (`errors.Problem`, via `yamlfile.validate`).
Relative paths in the file resolve against the file's own directory, passed to
validation as the context key ``base_dir``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from clickguard import reasons
from clickguard.errors import PolicyError, Problem
from clickguard.policy.cluster import ClusterConfig
from clickguard.policy.groups import GroupConfig, unique_names
from clickguard.policy.identity import IdentityConfig, identity_file_problems
from clickguard.policy.ops import OpsConfig, PacConfig
from clickguard.policy.pages import PagesConfig
from clickguard.policy.sections import (
    DEFAULT_AUDIT_LOG,
    DEFAULT_AUDIT_STORE,
    AdminConfig,
    AuditConfig,
    ClickLinksConfig,
    EmailConfig,
    FeedConfig,
    HostList,
    HostName,
    InspectConfig,
    InterceptConfig,
    NeverJudge,
    WarnConfig,
    _Model,
    _reason_code,
)
from clickguard.policy.upstream import UpstreamConfig
from clickguard.policy.yamlfile import FieldProblems, Loc, Validated, line_of, render, validate
from clickguard.reasons import Action

# The sections are importable from here as before.
__all__ = ["DEFAULT_AUDIT_LOG", "DEFAULT_AUDIT_STORE", "AdminConfig", "AuditConfig", "ClickLinksConfig",
           "EmailConfig", "FeedConfig", "HostList", "InspectConfig", "InterceptConfig", "LoadedPolicy",
           "NeverJudge", "Policy", "WarnConfig", "check_policy", "load_policy", "parse_policy"]


class Policy(_Model):
    """A whole policy file."""

    version: Literal[1] = 1
    click_host: HostName = "clickguard.local"
    feeds: tuple[FeedConfig, ...] = ()
    # IT's actions merged over reasons.DEFAULT_ACTIONS, so every known code is present.
    actions: Mapping[Annotated[str, AfterValidator(_reason_code)], Action] = Field(
        default_factory=lambda: dict(reasons.DEFAULT_ACTIONS))
    allow: HostList = HostList()
    deny: HostList = HostList()
    never_judge: NeverJudge = NeverJudge()
    warn: WarnConfig = WarnConfig()
    on_check_error: Literal["open", "closed"] = "open"
    intercept: InterceptConfig = InterceptConfig()
    inspect: InspectConfig = InspectConfig()
    email: EmailConfig = EmailConfig()
    click_links: ClickLinksConfig = ClickLinksConfig()
    audit: AuditConfig = AuditConfig()
    admin: AdminConfig = AdminConfig()
    identity: IdentityConfig = IdentityConfig()
    groups: tuple[GroupConfig, ...] = ()
    pac: PacConfig = PacConfig()
    ops: OpsConfig = OpsConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    pages: PagesConfig = PagesConfig()
    cluster: ClusterConfig = ClusterConfig()

    # action_for's table, including landing.<category> of every feed; built once, not per request.
    # (model_copy(update=...) skips it: derive a changed policy with model_validate instead.)
    _action_table: dict[str, Action] = PrivateAttr(default_factory=dict)
    # clickguard.decision.groups' matcher of the groups, built at its first use (the decision
    # stage's type: the policy stage cannot name it).
    _group_matcher: object = PrivateAttr(default=None)

    @field_validator("actions")
    @classmethod
    def _over_defaults(cls, value: Mapping[str, Action]) -> Mapping[str, Action]:
        """What the file says wins; what it leaves out keeps its default."""
        return {**reasons.DEFAULT_ACTIONS, **value}

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        """Feed and group names are unique; every action (a group's too) names a code something produces."""
        found: list[tuple[Loc, str]] = []
        first: dict[str, int] = {}
        for i, feed in enumerate(self.feeds):
            if feed.name in first:
                also = first[feed.name]
                found.append((("feeds", i, "name"),
                               f"duplicate feed name {feed.name!r} (also feeds[{also}])"))
            first.setdefault(feed.name, i)
        known = [*reasons.DEFAULT_ACTIONS, *sorted({reasons.feed_code(feed.category) for feed in self.feeds})]
        found += _unknown_codes(self.actions, known, ("actions",))
        found += unique_names(self.groups)
        for i, group in enumerate(self.groups):
            found += _unknown_codes(group.actions or {}, known, ("groups", i, "actions"))
        if found:
            raise FieldProblems(found)
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Build action_for's table: feed categories without an action act like landing.thingbot."""
        table = dict(self.actions)
        for feed in self.feeds:
            table.setdefault(reasons.feed_code(feed.category), self.actions[reasons.LANDING_THINGBOT])
        self._action_table = table

    def action_for(self, code: str) -> Action:
        """The action for a reason code; codes the policy does not know get "warn"."""
        return self._action_table.get(code, "warn")


def _unknown_codes(actions: Mapping[str, Action], known: list[str], where: Loc) -> list[tuple[Loc, str]]:
    """A problem for each action whose code nothing can produce."""
    found: list[tuple[Loc, str]] = []
    for code in actions:
        if code not in known:
            # A typo here would silently fall back to "warn"; IT would never notice.
            close = difflib.get_close_matches(code, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            found.append(((*where, code), f"unknown reason code; {hint}known: {', '.join(known)}, "
                                          "or landing.<category> of a feed"))
    return found


class LoadedPolicy(NamedTuple):
    """A validated policy and where and when it came from."""

    policy: Policy
    path: Path  # absolute, symlinks kept, so a reload watches the same name IT edits
    sha256: str  # of the file's bytes
    loaded_at: float  # time.time()



def _parse(text: str, filename: str, base_dir: Path) -> Validated[Policy]:
    """Parse and validate a policy text, collecting every problem rather than the first."""
    return validate(text, filename, Policy, context={"base_dir": base_dir.absolute()},
                    what="policy", example="version, feeds, actions, …",
                    if_empty="start from policies/default.yaml")


def parse_policy(text: str, *, filename: str, base_dir: Path) -> Policy:
    """A policy from YAML text; PolicyError with every problem found."""
    parsed = _parse(text, filename, base_dir)
    if parsed.model is None:
        raise PolicyError(parsed.problems)
    return parsed.model


def _read(path: Path) -> tuple[bytes, str | None, list[Problem]]:
    """A policy file's bytes and text, or the problem that stopped reading it."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        message = f"cannot read the policy: {e.strerror or e}"
        return b"", None, [Problem(str(path), None, "", message)]
    try:
        return raw, raw.decode("utf-8"), []
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return raw, None, [Problem(str(path), line, "", "not UTF-8 text")]


def load_policy(path: Path) -> LoadedPolicy:
    """Read and validate a policy file; PolicyError with every problem found."""
    raw, text, problems = _read(path)
    if text is None:
        raise PolicyError(problems)
    absolute = path.absolute()
    policy = parse_policy(text, filename=str(path), base_dir=absolute.parent)
    return LoadedPolicy(policy, absolute, hashlib.sha256(raw).hexdigest(), time.time())


def _feed_file_problems(parsed: Validated[Policy], filename: str, base_dir: Path) -> list[Problem]:
    """Feed files that do not exist or cannot be read, from the plain data (valid or not)."""
    out: list[Problem] = []
    feeds = parsed.data.get("feeds") if isinstance(parsed.data, dict) else None
    if not isinstance(feeds, list):
        return out
    for i, feed in enumerate(feeds):
        raw = feed.get("path") if isinstance(feed, dict) else None
        if not isinstance(raw, str) or not raw.strip():
            continue
        path = Path(raw.strip())
        path = path if path.is_absolute() else base_dir / path
        if not path.exists():
            message = f"feed file not found: {path}"
        elif not path.is_file():
            message = f"not a file: {path}"
        elif not os.access(path, os.R_OK):
            message = f"feed file is not readable: {path}"
        else:
            continue
        loc: Loc = ("feeds", i, "path")
        out.append(Problem(filename, line_of(loc, parsed.lines), render(loc), message))
    return out


def check_policy(path: Path) -> list[Problem]:
    """Every problem in a policy file, including unreadable feed files; [] when it is fine."""
    _, text, problems = _read(path)
    if text is None:
        return problems
    base_dir = path.absolute().parent
    parsed = _parse(text, str(path), base_dir)
    problems = parsed.problems + _feed_file_problems(parsed, str(path), base_dir)
    if parsed.model is not None:  # the users file (htpasswd lines) and the directory's password file
        problems += identity_file_problems(parsed.model.identity)
    problems.sort(key=lambda p: p.line or 0)
    return problems
