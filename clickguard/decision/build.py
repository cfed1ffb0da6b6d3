"""Building the judge: a policy, its feeds and the command line's, and the Thingbots the proxy learned.

The proxy (at start and at every reload) and the command line (`check`, `feeds
status`) build their judge here, so both judge a URL alike; a policy's groups get
their judges with it (`Judge.for_client`, `judge_as` for the command line). Everything is read
from files here, nothing in a constructor: the proxy calls this off the event
loop and swaps the result in with one assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError

from clickguard.decision.judge import Judge
from clickguard.errors import UsageError
from clickguard.intel.learned import STATE_FILE, LearnedHosts
from clickguard.intel.sources import FeedSet
from clickguard.policy.model import FeedConfig, Policy


def judge_as(judge: Judge, *, user: str | None = None, group: str | None = None,
             client: str | None = None) -> Judge:
    """The judge `check --user/--group/--client` uses: the named group's, else the first group matching.

    Without a directory, a user's LDAP groups are not known: ``--group`` names the group
    instead. UsageError for a group the policy does not have.
    """
    if group is not None:
        chosen = judge.group_judge(group)
        if chosen is None:
            known = ", ".join(g.name for g in judge.policy.groups) or "none"
            raise UsageError(f"--group {group}: the policy has no such group (its groups: {known})")
        return chosen
    return judge.for_client(client, user)


class Built(NamedTuple):
    """A judge and the feeds its index was built from (their status is what `feeds status` shows)."""

    judge: Judge
    feeds: FeedSet


def learned_hosts(state_dir: Path) -> LearnedHosts:
    """The Thingbots learned by a proxy keeping its state in state_dir, read now."""
    learned = LearnedHosts(state_dir / STATE_FILE)
    learned.load()
    return learned


def feed_from_spec(spec: str, base_dir: Path) -> FeedConfig:
    """A `--feed FORMAT:PATH` (or FORMAT:URL) from the command line as a feed config; UsageError if bad."""
    fmt, sep, source = spec.partition(":")
    if not sep or not source:
        raise UsageError(f"feed {spec!r}: expected FORMAT:PATH or FORMAT:URL")
    is_url = source.startswith(("http://", "https://"))
    name = Path(source.rsplit("/", 1)[-1]).stem or fmt
    data: dict[str, object] = {"name": name, "format": fmt}
    data["url" if is_url else "path"] = source
    try:
        return FeedConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise UsageError(f"feed {spec!r}: {e}") from e


def feeds_from_specs(specs: Sequence[str], base_dir: Path,
                     taken: Sequence[str] = ()) -> list[FeedConfig]:
    """Every `--feed` of the command line, named after its file, made unique against `taken`."""
    out: list[FeedConfig] = []
    seen: set[str] = set(taken)
    for spec in specs:
        feed = feed_from_spec(spec, base_dir)
        name, n = feed.name, 1
        while name in seen:
            n += 1
            name = f"{feed.name}-{n}"
        seen.add(name)
        out.append(feed.model_copy(update={"name": name}) if name != feed.name else feed)
    return out


def build_judge(policy: Policy, state_dir: Path, *, feed_specs: Sequence[str] = (),
                learned: LearnedHosts | None = None, previous: FeedSet | None = None) -> Built:
    """The judge of a policy, its feeds plus `--feed` specs, and the hosts learned in state_dir.

    `learned` is the proxy's own list, kept across reloads (it learns into it);
    without it the list is read from the state directory now. `previous` carries
    the last good copy of each feed over a reload. UsageError for a bad spec.
    """
    # --feed paths are the command line's: relative to the directory it runs in.
    extra = feeds_from_specs(feed_specs, Path.cwd(), [f.name for f in policy.feeds])
    feeds = FeedSet([*policy.feeds, *extra], state_dir / "feeds", previous=previous)
    index = feeds.build_index()
    if learned is None:
        learned = learned_hosts(state_dir)
    return Built(Judge(policy, index, unloaded_feeds=feeds.unloaded(), learned=learned), feeds)
