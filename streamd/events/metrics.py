"""The event history's own metrics, on the daemon's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class EventMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter("streamd_events_written", "Event rows written (inserted or updated)", registry=registry)
        self.errors = Counter(
            "streamd_event_write_errors", "Batches of event rows the database refused", ["reason"], registry=registry
        )
        self.dropped = Counter(
            "streamd_events_dropped", "Event row writes dropped: the queue was full", registry=registry
        )
        self.queued = Gauge("streamd_events_queue_depth", "Event row writes waiting", registry=registry)
        self.latency = Histogram(
            "streamd_event_write_seconds",
            "Time to write one batch of event rows",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
            registry=registry,
        )
