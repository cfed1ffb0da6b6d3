"""The ops listener's /metrics: every clickguard_… series, read from the proxy's state when scraped.

A registry of its own (not prometheus_client's global one, which would add the library's default
collectors and anything else imported into the process): `ClickguardCollector` reads the runtime
(feeds, audit writer, caches) and the `Tally` the request path counts into, and prometheus_client's
`ProcessCollector` adds the process's memory, CPU and open files. Nothing here runs per request.

Series: ``clickguard_requests_total``; ``clickguard_decisions_total{event,action}`` (one per audit
record); ``clickguard_reasons_total{action,reason}`` (one per reason code in a record);
``clickguard_inspection_seconds`` (histogram); ``clickguard_feed_entries{feed}``,
``clickguard_feed_age_seconds{feed}``, ``clickguard_index_entries``;
``clickguard_policy_loaded_timestamp_seconds``, ``clickguard_policy_reload_failing``;
``clickguard_audit_queue_depth``, ``clickguard_audit_write_seconds`` (histogram),
``clickguard_audit_written_total``, ``clickguard_audit_not_recorded_total``,
``clickguard_audit_sink_failing{sink}``, ``clickguard_audit_store_backlog``;
``clickguard_cache_entries{cache}``; ``clickguard_inspection_workers``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from clickguard.audit.tally import Histogram
from clickguard.proxy.runtime import Runtime


class Metrics:
    """The registry /metrics renders."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ClickguardCollector(runtime))
        ProcessCollector(registry=self.registry)  # process_… memory, CPU, open files

    def render(self) -> bytes:
        """The Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    """A tally histogram as a Prometheus one."""
    buckets, total = histogram.cumulative()
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


class ClickguardCollector(Collector):
    """Every clickguard_… series, read from the runtime when scraped."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """The series, as they stand now."""
        yield from self._decisions()
        yield from self._feeds()
        yield from self._audit()
        yield from self._caches()
        yield from self._shared()

    def _decisions(self) -> Iterator[Metric]:
        """Requests, decisions by event and action, reason codes by action, inspection time."""
        tally = self.runtime.tally
        yield CounterMetricFamily("clickguard_requests", "HTTP requests the proxy handled.",
                                  value=tally.requests)
        decisions = CounterMetricFamily("clickguard_decisions", "Decisions recorded (audit records), "
                                        "by event and action.", labels=["event", "action"])
        for (event, action), count in sorted(tally.decisions.items()):
            decisions.add_metric([event, action], count)
        yield decisions
        reasons = CounterMetricFamily("clickguard_reasons", "Reason codes given in recorded decisions, "
                                      "by action.", labels=["action", "reason"])
        for (action, code), count in sorted(tally.reasons.items()):
            reasons.add_metric([action, code], count)
        yield reasons
        yield _histogram("clickguard_inspection_seconds", "Time to read a held response body in "
                         "the inspection workers, queueing included.", tally.inspection)

    def _feeds(self) -> Iterator[Metric]:
        """Entries and age of each feed, the index's size, and when the policy was loaded."""
        state = self.runtime.state
        if state is None:
            return
        entries = GaugeMetricFamily("clickguard_feed_entries", "Indicators a feed put in the index.",
                                    labels=["feed"])
        age = GaugeMetricFamily("clickguard_feed_age_seconds", "Age of the feed copy serving now "
                                "(file time or fetch time); absent while a feed has none.", labels=["feed"])
        now = time.time()
        for status in state.feeds.status.values():
            entries.add_metric([status.name], status.entries)
            if status.data_time is not None:
                age.add_metric([status.name], max(0.0, now - status.data_time))
        yield entries
        yield age
        yield GaugeMetricFamily("clickguard_index_entries", "Entries in the reputation index.",
                                value=len(state.judge.index))
        yield GaugeMetricFamily("clickguard_policy_loaded_timestamp_seconds",
                                "When the policy in force was loaded (Unix time).",
                                value=state.loaded.loaded_at)
        yield GaugeMetricFamily("clickguard_policy_reload_failing", "1 while the last reload of a "
                                "changed policy failed (the last good one serves).",
                                value=1 if self.runtime.policy_error else 0)

    def _audit(self) -> Iterator[Metric]:
        """The audit writer: queue depth, write latency, records written and not, failing sinks."""
        rt = self.runtime
        audit = rt.audit
        yield GaugeMetricFamily("clickguard_audit_queue_depth", "Audit records waiting for the log "
                                "thread.", value=audit.queue_depth() if audit is not None else 0)
        yield _histogram("clickguard_audit_write_seconds", "Time until an audit record was recorded "
                         "(or refused), as the request waits for it.", rt.tally.audit_write)
        health = rt.audit_health()
        if health is None:
            return
        yield CounterMetricFamily("clickguard_audit_written", "Audit records recorded.",
                                  value=health["written"])
        yield CounterMetricFamily("clickguard_audit_not_recorded", "Audit records that could not "
                                  "be recorded.", value=health["not_recorded"])
        failing = GaugeMetricFamily("clickguard_audit_sink_failing", "1 while an audit sink fails.",
                                    labels=["sink"])
        for sink in ("log", "store"):
            if health[sink] is not None:
                failing.add_metric([sink], 1 if health[sink]["failing"] else 0)
        yield failing
        if health["store"] is not None:
            yield GaugeMetricFamily("clickguard_audit_store_backlog", "Records kept in memory for a "
                                    "failing store.", value=health["store"]["backlog"])

    def _caches(self) -> Iterator[Metric]:
        """Entries in the proxy's caches and tables, and the inspection workers."""
        rt = self.runtime
        sizes = GaugeMetricFamily("clickguard_cache_entries", "Entries in the proxy's caches.",
                                  labels=["cache"])
        for name, size in (("resolver", len(rt.resolver._answers)),
                           ("resolver_failures", len(rt.resolver._failures)),
                           ("learned_hosts", len(rt.learned)),
                           ("continue_grants", len(rt.grants)),
                           ("click_trail", len(rt.trail))):
            sizes.add_metric([name], size)
        yield sizes
        yield GaugeMetricFamily("clickguard_inspection_workers", "Inspection worker slots running.",
                                value=rt.readers.workers)

    def _shared(self) -> Iterator[Metric]:
        """The state shared with other workers and nodes (cluster.redis): connected, events, round trips."""
        shared = self.runtime.sharing.shared
        if shared is None:
            return
        yield GaugeMetricFamily("clickguard_shared_connected", "1 while Redis (cluster.redis) is reachable.",
                                value=1 if shared.connected else 0)
        events = CounterMetricFamily("clickguard_shared_events", "Shared-state events: published by this "
                                     "process, applied from others, refused (bad signature or shape), "
                                     "dropped (kept too long while Redis was down).", labels=["outcome"])
        for outcome, count in (("published", shared.published), ("applied", shared.applied),
                               ("refused", shared.refused), ("dropped", shared.dropped)):
            events.add_metric([outcome], count)
        yield events
        yield GaugeMetricFamily("clickguard_shared_unsent", "Changes kept for Redis, not yet written.",
                                value=shared.unsent)
        yield CounterMetricFamily("clickguard_shared_round_trips", "Commands (or pipelines) sent to Redis.",
                                  value=shared.round_trips)
