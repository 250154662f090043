"""The snapshots feature's metrics, on the daemon's registry (``StageContext.metrics.registry``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

OUTCOMES = ("published", "error", "save_error", "rejected")


class SnapshotMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.snapshots = Counter(
            "streamd_snapshots",
            "Snapshots by outcome (published, error, save_error, rejected)",
            ["source", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "streamd_snapshot_seconds",
            "JPEG encoding of one snapshot (in a worker thread)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
            registry=registry,
        )

    def init_source(self, source: str) -> None:
        """Every series of a source that takes snapshots, at 0 (dashboards see 0, not "no data")."""
        for outcome in OUTCOMES:
            self.snapshots.labels(source, outcome)
