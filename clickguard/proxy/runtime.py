"""What the proxy's addons share: the judge in force, and the services around it.

`State` (policy, feeds, judge) is built completely off the event loop and
swapped in with one assignment; a policy or feed that fails to load leaves the
last good state serving and the error recorded for `feeds status` and the logs.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from cachetools import TLRUCache

from clickguard.audit.tally import Tally
from clickguard.audit.writer import AuditLog, OnFailure
from clickguard.decision.build import build_judge
from clickguard.decision.identity import Identity
from clickguard.decision.judge import Judge
from clickguard.errors import InputError, PolicyError
from clickguard.files import mtime
from clickguard.inspection.fingerprints import SHIPPED_FINGERPRINTS, FingerprintDB
from clickguard.inspection.pool import ReadingPool
from clickguard.intel.learned import STATE_FILE, LearnedHosts
from clickguard.intel.resolver import Resolver
from clickguard.intel.sources import FeedSet, write_status
from clickguard.mail.clicks import ClickTrail
from clickguard.policy.model import LoadedPolicy, Policy, load_policy
from clickguard.policy.sections import SyslogConfig
from clickguard.proxy.sharing import Sharing
from clickguard.tokens import load_or_create_key

logger = logging.getLogger(__name__)


class State(NamedTuple):
    """One consistent configuration: the policy, its feeds and fingerprints, the judge built from them."""

    loaded: LoadedPolicy
    feeds: FeedSet
    judge: Judge
    fingerprints: FingerprintDB


def load_fingerprints(policy: Policy) -> FingerprintDB:
    """The shipped fingerprints plus the policy's own files; PolicyError naming each problem."""
    extra = policy.inspect.fingerprints
    try:
        return FingerprintDB.load([SHIPPED_FINGERPRINTS, *extra]) if extra else FingerprintDB.default()
    except InputError as e:
        raise PolicyError(e.problems) from e


class Grants:
    """Continues granted on warn pages: (client, user, host) may pass until a deadline.

    `shared`, when set, is told of every grant, so that other workers and nodes honour it
    (`apply` takes theirs).
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self._until: TLRUCache[tuple[str, str | None, str], float] = TLRUCache(
            maxsize, ttu=lambda _key, until, _now: until, timer=time.time)
        self.shared: Callable[[str, str | None, str, float], None] | None = None

    def __len__(self) -> int:
        return len(self._until)

    def grant(self, client: str, user: str | None, host: str, until: float) -> None:
        """Let this client reach this host without warning until `until` (Unix time)."""
        self.apply(client, user, host, until)
        if self.shared is not None:
            self.shared(client, user, host, until)

    def apply(self, client: str, user: str | None, host: str, until: float) -> None:
        """A grant (another node's, or this one's): the later deadline holds."""
        if until > max(self._until.get((client, user, host), 0.0), time.time()):
            self._until[(client, user, host)] = until

    def active(self, client: str, user: str | None, host: str) -> bool:
        """True while a continue for this client and host holds."""
        return (client, user, host) in self._until


class Runtime:
    """The proxy's shared state and services; constructed without touching a file (`build` reads them)."""

    def __init__(self, *, state_dir: Path, certs_dir: Path) -> None:
        self.certs_dir = certs_dir
        self.state: State | None = None
        self.policy_path: Path | None = None
        self.feed_specs: list[str] = []  # --feed FORMAT:PATH, added to the policy's feeds
        self.audit_override: Path | None = None  # --audit-log, over the policy's audit.log
        self.store_override: Path | None = None  # --audit-store, over the policy's audit.store
        self.policy_error: str | None = None
        self.resolver = Resolver()
        self.grants = Grants()
        self.trail = ClickTrail()
        self.tally = Tally()  # counts for the ops listener's /metrics (proxy/ops.py)
        self.sharing = Sharing(self)  # with other workers and nodes, through Redis (cluster.redis)
        self.use_state_dir(state_dir)
        self.audit: AuditLog | None = None  # None when the policy turns both sinks off
        # Held response bodies are decoded and read here, never on the event loop (see Guard): in
        # worker processes, so a hostile page's reading neither holds the GIL against the loop nor
        # outlives its deadline. Only the reading goes there; the judging (the index, the learned
        # hosts) stays in this process. Nothing starts before `start_inspectors` or the first job.
        # Sized and bounded by the options clickguard_inspect_workers and _deadline_ms.
        self.readers = ReadingPool(2)
        self.inspect_deadline = 5.0  # seconds an inspection may take; then on_check_error decides
        self._sinks: tuple[Path | None, Path | None] | None = None  # (log, store) the writer follows
        self._key: bytes | None = None
        self._watched: dict[Path, float | None] = {}

    def use_state_dir(self, state_dir: Path) -> None:
        """Keep feed caches, status and learned hosts here (learned hosts are read at the next build)."""
        self.state_dir = state_dir
        # Shared by every judge built from now on: what the proxy learns survives reloads.
        self.learned = LearnedHosts(state_dir / STATE_FILE)
        self._learned_read = False

    @property
    def key(self) -> bytes:
        """The token signing key, created in the certs directory at first use."""
        if self._key is None:
            self._key = load_or_create_key(self.certs_dir / "clickguard.key")
        return self._key

    @property
    def judge(self) -> Judge:
        """The judge in force."""
        assert self.state is not None, "no policy loaded"
        return self.state.judge

    def judge_for(self, client: str, user: str | None, identity: object = None) -> Judge:
        """The judge of the policy group the user (or their directory groups) or the client is in.

        ``identity``: flow.metadata["clickguard_identity"], an `Identity` when the proxy
        authenticated the flow; ``user`` counts alone when there is none (mitmproxy's proxyauth).
        """
        if isinstance(identity, Identity):
            return self.judge.for_client(client, identity.user, identity.ldap_groups)
        return self.judge.for_client(client, user)

    @property
    def fingerprints(self) -> FingerprintDB:
        """The appliance fingerprints in force."""
        assert self.state is not None, "no policy loaded"
        return self.state.fingerprints

    def build(self) -> State:
        """Load the policy and its feeds and build a new state; PolicyError if the policy is bad."""
        assert self.policy_path is not None
        loaded = load_policy(self.policy_path)
        fingerprints = load_fingerprints(loaded.policy)
        if not self._learned_read:
            self.learned.load()
            self._learned_read = True
        previous = self.state.feeds if self.state is not None else None
        judge, feeds = build_judge(loaded.policy, self.state_dir, feed_specs=self.feed_specs,
                                   learned=self.learned, previous=previous)
        return State(loaded, feeds, judge, fingerprints)

    def install(self, state: State) -> None:
        """Swap a newly built state in, and follow the audit log and store it names."""
        watched = {self.policy_path: mtime(self.policy_path)} if self.policy_path else {}
        policy = state.loaded.policy  # its feeds, fingerprints, page templates and logo
        for path in [*state.feeds.watched_files(), *policy.inspect.fingerprints, *policy.pages.watched()]:
            watched[path] = mtime(path)
        self._watched = watched
        self.state = state
        self.readers.use_fingerprints(state.fingerprints)  # workers restart with it only if it changed
        self.policy_error = None
        # The index is a few large containers holding a million entries: keep the cyclic
        # GC from walking them again and again while the proxy serves. Collect first, so
        # no garbage cycle alive right now is frozen with it (reloads are rare).
        gc.collect()
        gc.freeze()
        audit = state.loaded.policy.audit
        self._follow_audit(self.audit_override or audit.log, self.store_override or audit.store,
                           audit.retention, audit.on_failure, audit.syslog)
        self.publish_status()

    def _follow_audit(self, log: Path | None, store: Path | None, retention: float | None,
                      on_failure: OnFailure, syslog: SyslogConfig | None) -> None:
        """Write decisions where the policy says; new paths get a new writer, the old one is flushed."""
        sinks = (log.absolute() if log else None, store.absolute() if store else None)
        wanted = bool(log or store or syslog)  # syslog alone still needs a writer to send from
        if sinks == self._sinks and (self.audit is not None) == wanted:
            if self.audit is not None:
                self.audit.retention = retention  # the writer reads it at its next prune
                self.audit.on_failure = on_failure
                self.audit.use_syslog(syslog)
            return
        new = AuditLog(*sinks, retention=retention, on_failure=on_failure, syslog=syslog) if wanted else None
        if new is not None:
            new.start()  # OSError for a file that cannot be opened: the old writer keeps writing
        if not (log or store):
            logger.warning("audit: log and store are both off; decisions are not recorded%s",
                           " (only sent to syslog, best effort)" if syslog else "")
        old, self.audit, self._sinks = self.audit, new, sinks
        if old is not None:
            old.close()

    @property
    def store_path(self) -> Path | None:
        """The audit store in force, None if off; readers use store.connect(path, readonly=True)."""
        return self.audit.store_path if self.audit is not None else None

    def changed(self) -> bool:
        """True when the policy file or a feed file changed since the state was built."""
        return any(mtime(path) != seen for path, seen in self._watched.items())

    def reload(self) -> str | None:
        """Rebuild if anything changed; returns the error that kept the last good state, if any."""
        try:
            state = self.build()
        except PolicyError as e:
            self.policy_error = str(e)
            # Remember what we saw, so a broken file is reported once, not every poll.
            self._watched = {p: mtime(p) for p in self._watched}
            return self.policy_error
        self.install(state)
        return None

    async def record(self, entry: dict[str, object]) -> bool:
        """Write one audit record; False if it was not recorded and the policy serves anyway.

        AuditError if it was not recorded and the policy refuses what it cannot
        record (audit.on_failure: closed). The writer logs why a sink failed.
        """
        self.tally.decided(entry)
        if self.audit is None:
            return True
        started = time.perf_counter()
        try:
            return await self.audit.write(entry)
        finally:
            self.tally.audit_write.observe(time.perf_counter() - started)

    def audit_health(self) -> dict[str, Any] | None:
        """The audit writer's health (each sink failing or not, its last error), None with no writer."""
        return self.audit.health() if self.audit is not None else None

    def publish_status(self) -> None:
        """Write the feeds' and the audit sinks' status where `clickguard feeds status` reads it."""
        if self.state is not None:
            # The status is informational: failing to publish it must not stop the proxy.
            with contextlib.suppress(OSError):
                write_status(self.state_dir / "feeds-status.json", self.state.feeds,
                             audit=self.audit_health())
            # And for the other nodes (cluster.redis): `clickguard feeds status --redis` shows every node's.
            self.sharing.put_status({"written_at": time.time(), "feeds": self.state.feeds.snapshot(),
                                     "audit": self.audit_health()})

    def use_inspectors(self, workers: int, *, processes: bool = True) -> None:
        """Read held bodies in this many worker processes (or threads) from now on.

        Fewer workers: the extra ones stop once idle for a minute. Processes to threads or back
        (a comparison, see bench/hostile.py): a new pool; readings under way in the old fail.
        """
        if processes == self.readers.processes:
            self.readers.resize(workers)
            return
        old, self.readers = self.readers, ReadingPool(workers, processes=processes)
        if self.state is not None:
            self.readers.use_fingerprints(self.state.fingerprints)
        old.close()

    def start_inspectors(self) -> None:
        """Start the inspection workers now, so the first held body does not wait for one."""
        self.readers.start()

    def close(self) -> None:
        """Stop the audit writer (flushing what is queued), the inspection workers and the sharing."""
        self.readers.close()
        self.sharing.close()
        if self.audit is not None:
            self.audit.close()
            self.audit = None
        self._sinks = None
