"""Loads the policy and feeds, reloads them when they change, fetches URL feeds in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from mitmproxy import ctx, exceptions

from clickguard.decision.build import feeds_from_specs
from clickguard.errors import PolicyError, UsageError
from clickguard.intel.sources import FeedStatus, feed_session
from clickguard.policy.cluster import parse_redis_url
from clickguard.policy.model import FeedConfig
from clickguard.proxy.runtime import Runtime
from clickguard.shipped import DEFAULT_POLICY

logger = logging.getLogger(__name__)


class FetchSchedule:
    """When each URL feed is fetched next; a failing feed is retried sooner, and said so once.

    A fetch that fails is tried again after the retry interval, doubling with each failure up
    to the feed's refresh interval. The first failure is logged (with "never fetched" when no
    copy was ever loaded: an offline start serves with what it has); later failures are not,
    until the feed works again, which is logged too. `clickguard feeds status` shows each error.
    """

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    def due(self, feeds: Sequence[FeedConfig], now: float) -> list[FeedConfig]:
        """The feeds whose next fetch is due (every feed at the first call)."""
        return [feed for feed in feeds if self._next.get(feed.name, 0.0) <= now]

    def done(self, feed: FeedConfig, status: FeedStatus, now: float, retry: float) -> None:
        """Schedule a feed's next fetch after one attempt, logging a change between working and failing."""
        failures = self._failures.get(feed.name, 0)
        if status.last_error is None:
            if failures:
                logger.info("feed %s: fetched again after %d failed attempts", feed.name, failures)
            self._failures[feed.name] = 0
            self._next[feed.name] = now + feed.refresh
            return
        if not failures:
            never = " (never fetched: serving without it)" if status.data_time is None else ""
            logger.warning("%s%s; retrying, this is said once until it works", status.last_error, never)
        self._failures[feed.name] = failures + 1
        self._next[feed.name] = now + min(feed.refresh, max(retry, 0.001) * 2.0 ** min(failures, 30))


class Config:
    """Owns the policy: loads it at start, reloads on change, keeps the last good one on error."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._fetches = FetchSchedule()
        self._audit_seen: object = None  # the audit health last published: a change publishes again

    def load(self, loader: object) -> None:
        """Register clickguard's options."""
        add = loader.add_option  # type: ignore[attr-defined]
        add("clickguard_policy", str, str(DEFAULT_POLICY),
            "Policy file (YAML) of clickguard, by default the shipped one; reloaded when it changes.")
        add("clickguard_feeds", Sequence[str], [],
            "Extra reputation feeds as FORMAT:PATH or FORMAT:URL (formats: ip, ipsum, urlhaus_csv, "
            "spamhaus_drop, maltrail, domains, urls), added to the policy's feeds.")
        add("clickguard_audit_log", str, "",
            "Audit log (JSON Lines); overrides the policy's audit.log (default var/audit.jsonl).")
        add("clickguard_audit_store", str, "",
            "Audit store (SQLite) the reports read; overrides the policy's audit.store "
            "(default var/audit.sqlite).")
        add("clickguard_state_dir", str, "var",
            "Directory for feed caches and the feeds status file.")
        add("clickguard_reload_ms", int, 1000,
            "Milliseconds between checks of the policy and feed files for changes.")
        add("clickguard_redis", str, "",
            "redis://HOST:PORT/DB that workers and nodes share state in (learned Thingbots, continue "
            "grants, click trails, dashboard sessions and lock-outs, feed status); overrides the "
            "policy's cluster.redis; read at start.")
        add("clickguard_feed_retry_ms", int, 60_000,
            "Milliseconds before a failed URL feed fetch is tried again, doubling with each failure up to "
            "the feed's refresh interval.")
        add("clickguard_inspect_deadline_ms", int, 5000,
            "Milliseconds a response's inspection may take; past it the policy's on_check_error decides "
            "and the audit record says timeout.")
        add("clickguard_inspect_workers", int, 2,
            "Worker processes kept ready to read held response bodies (off the event loop, each "
            "reading within the deadline); up to four times as many start while readings run long.")
        add("clickguard_inspect_processes", bool, True,
            "Read held bodies in worker processes; false reads them in threads of the proxy, as "
            "before (to compare: a thread shares the GIL with the event loop and cannot be stopped "
            "at its deadline).")

    def configure(self, updated: set[str]) -> None:
        """Apply clickguard's options; a bad policy at start-up is an option error."""
        rt = self.runtime
        if "confdir" in updated:
            rt.certs_dir = Path(ctx.options.confdir).expanduser()
        if "clickguard_state_dir" in updated:
            rt.use_state_dir(Path(ctx.options.clickguard_state_dir))
        if "clickguard_audit_log" in updated:
            rt.audit_override = Path(ctx.options.clickguard_audit_log) \
                if ctx.options.clickguard_audit_log else None
        if "clickguard_audit_store" in updated:
            rt.store_override = Path(ctx.options.clickguard_audit_store) \
                if ctx.options.clickguard_audit_store else None
        if "clickguard_inspect_deadline_ms" in updated:
            if ctx.options.clickguard_inspect_deadline_ms <= 0:
                raise exceptions.OptionsError("clickguard_inspect_deadline_ms: must be positive")
            rt.inspect_deadline = ctx.options.clickguard_inspect_deadline_ms / 1000
        if updated & {"clickguard_inspect_workers", "clickguard_inspect_processes"}:
            if ctx.options.clickguard_inspect_workers <= 0:
                raise exceptions.OptionsError("clickguard_inspect_workers: must be positive")
            rt.use_inspectors(ctx.options.clickguard_inspect_workers,
                              processes=ctx.options.clickguard_inspect_processes)
        if "clickguard_feeds" in updated:
            try:
                feeds_from_specs(ctx.options.clickguard_feeds, Path.cwd())
            except UsageError as e:
                raise exceptions.OptionsError(f"clickguard_feeds: {e}") from e
            rt.feed_specs = list(ctx.options.clickguard_feeds)
        keys = {"clickguard_policy", "clickguard_feeds", "clickguard_audit_log", "clickguard_audit_store",
                "clickguard_state_dir"}
        if updated & keys:
            rt.policy_path = Path(ctx.options.clickguard_policy)
            try:
                state = rt.build()
            except PolicyError as e:
                if rt.state is None:
                    raise exceptions.OptionsError(f"clickguard_policy: {e}") from e
                logger.error("policy not applied, the last good one keeps serving:\n%s", e)
                return
            rt.install(state)
            self._log_state()

    def _log_state(self) -> None:
        """One log line about the state in force."""
        state = self.runtime.state
        assert state is not None
        feeds = ", ".join(f"{s.name}={s.entries}" for s in state.feeds.status.values())
        logger.info("clickguard: policy %s (sha256 %s…), %d reputation entries [%s]",
                    state.loaded.path, state.loaded.sha256[:12], len(state.judge.index), feeds)
        for status in state.feeds.status.values():
            if status.last_error:
                logger.warning("feed %s: %s", status.name, status.last_error)

    def _apply_proxy_options(self) -> None:
        """Options clickguard needs from mitmproxy: judge before connecting; no ignore_hosts; body bound."""
        state = self.runtime.state
        assert state is not None
        updates: dict[str, object] = {}
        if ctx.options.connection_strategy != "lazy":
            # Eager would connect to a server when the browser sends CONNECT, before the
            # request is judged; clickguard never contacts a target before judging it.
            updates["connection_strategy"] = "lazy"
        if ctx.options.ignore_hosts:
            # mitmproxy passes a tunnel through when its CONNECT host, its SNI *or* its Host header
            # matches: a denied host dressed as an excluded one would pass. intercept.exclude is
            # applied by Guard.tls_clienthello instead, which requires every name to be excluded.
            updates["ignore_hosts"] = []
        # Bodies up to the inspection bound are held and inspected whole; longer ones stream
        # from their headers on, sniffed on the way (see Guard.responseheaders).
        inspect = state.loaded.policy.inspect
        if inspect.enabled and ctx.options.stream_large_bodies != str(inspect.max_body):
            updates["stream_large_bodies"] = str(inspect.max_body)
        if updates:
            ctx.options.update(**updates)

    def running(self) -> None:
        """Start the inspection workers and the background maintenance task."""
        self._apply_proxy_options()
        self.runtime.start_inspectors()
        self._share()
        self._session = feed_session()  # proxies from the environment, default timeouts, no cookies
        self._task = asyncio.create_task(self._maintain(), name="clickguard-maintain")
        # logrotate's postrotate sends SIGHUP (which would otherwise end the process): reopen the log.
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reopen_audit_log)

    def _share(self) -> None:
        """Share state through Redis when --redis or the policy's cluster.redis names one (read at start)."""
        rt = self.runtime
        assert rt.state is not None
        url = ctx.options.clickguard_redis or rt.state.loaded.policy.cluster.redis
        if url:
            try:
                parse_redis_url(url)
            except ValueError as e:
                raise exceptions.OptionsError(f"clickguard_redis: {e}") from e
            rt.sharing.start(url, rt.key, asyncio.get_running_loop())
            rt.publish_status()  # this node's feed status, for the others

    def _reopen_audit_log(self) -> None:
        """SIGHUP: the audit log is opened again at its next write (rotation is also noticed unsignalled)."""
        if self.runtime.audit is not None:
            self.runtime.audit.reopen()
        logger.info("SIGHUP: the audit log is reopened")

    async def done(self) -> None:
        """Stop background work and flush the audit log."""
        with contextlib.suppress(RuntimeError):  # no running loop: running() never ran
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
        self.runtime.close()

    def _audit_changed(self) -> bool:
        """Whether a sink started or stopped failing, or failed again, since the status was last published."""
        health = self.runtime.audit_health() or {}
        sinks = (health.get("log"), health.get("store"), health.get("syslog"))
        # Syslog's drops too: during an outage they grow while it stays failing (once a poll at most).
        seen = tuple((s["failing"], s["failures"], s.get("dropped")) for s in sinks if s)
        changed, self._audit_seen = seen != self._audit_seen, seen
        return changed

    async def _maintain(self) -> None:
        """Reload changed files and fetch due URL feeds, forever."""
        while True:
            await asyncio.sleep(ctx.options.clickguard_reload_ms / 1000)
            rt = self.runtime
            rebuild = rt.changed()
            if rt.sharing.learned_changed:  # hosts other nodes learned: kept here across restarts too
                rt.sharing.learned_changed = False
                await asyncio.to_thread(rt.learned.save, rt.learned.encoded())
            if rt.state is not None and self._session is not None:
                feeds = rt.state.feeds
                due = self._fetches.due(feeds.url_feeds(), time.monotonic())
                upstream = rt.state.loaded.policy.upstream  # the parent proxy, if the policy names one
                results = await asyncio.gather(*(feeds.fetch(self._session, f, upstream=upstream)
                                                 for f in due))
                for feed in due:
                    self._fetches.done(feed, feeds.status[feed.name], time.monotonic(),
                                       ctx.options.clickguard_feed_retry_ms / 1000)
                rebuild = rebuild or any(results)
                if due:
                    rt.publish_status()
            if self._audit_changed():
                rt.publish_status()
            if rebuild:
                error = await asyncio.to_thread(rt.reload)
                if error:
                    logger.error("policy not applied, the last good one keeps serving:\n%s", error)
                else:
                    self._apply_proxy_options()
                    self._log_state()
