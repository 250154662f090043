"""The recording feature's metrics, on the daemon's registry (``StageContext.metrics.registry``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from streamd.recording.config import RecordingConfig

ERRORS = ("no_space", "unwritable", "write_error", "backlog", "crashed")


class RecordingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.clips = Counter(
            "streamd_clips",
            "Clips recorded and announced, one per track they show",
            ["source", "label"],
            registry=registry,
        )
        self.bytes = Gauge(
            "streamd_recording_bytes", "Bytes of this source's clips on disk", ["source"], registry=registry
        )
        self.errors = Counter(
            "streamd_recording_errors",
            "Recording refused by the disk (no_space, unwritable, write_error) or packets dropped (backlog)",
            ["source", "reason"],
            registry=registry,
        )

    def init_source(self, source: str, config: RecordingConfig) -> None:
        """Every series of a recording source, at 0."""
        self.bytes.labels(source)
        for reason in ERRORS:
            self.errors.labels(source, reason)
        for label in config.labels:
            self.clips.labels(source, label)
