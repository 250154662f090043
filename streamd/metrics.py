"""The metrics contract (prefix ``streamd_``), one registry per daemon so tests can run several."""

from __future__ import annotations

import functools

from prometheus_client import (
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.process_collector import ProcessCollector

from streamd.config import SourceConfig, is_file_uri

# Inference on a CPU is ~5-50 ms; a GPU can be faster; a stalled device is much slower.
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
# Capture -> published spans queueing; a healthy pipeline is < 100 ms, a backed-up one seconds.
END_TO_END_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


DROP_REASONS = ("queue_full_oldest", "queue_full_newest", "queue_bytes", "shutdown")
# Files: missing, unreadable, corrupt, truncated. Streams and devices that do not open, by why
# (sources/diagnose.py): auth, refused, timeout, not_found, no_video, unreachable.
SOURCE_ERROR_KINDS = ("missing", "unreadable", "corrupt", "truncated")
STREAM_ERROR_KINDS = ("auth", "refused", "timeout", "not_found", "no_video", "unreachable")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=self.registry)
        r = self.registry
        self.frames_captured = Counter(
            "streamd_frames_captured", "Frames decoded from a source", ["source"], registry=r
        )
        self.frames_dropped = Counter(
            "streamd_frames_dropped", "Frames dropped before inference", ["source", "reason"], registry=r
        )
        self.frames_inferred = Counter(
            "streamd_frames_inferred", "Frames that went through the model", ["source"], registry=r
        )
        self.inference_seconds = Histogram(
            "streamd_inference_seconds", "Device time of one inference", buckets=INFERENCE_BUCKETS, registry=r
        )
        self.end_to_end_seconds = Histogram(
            "streamd_end_to_end_seconds",
            "Capture to MQTT publish acknowledged",
            ["source"],
            buckets=END_TO_END_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("streamd_queue_depth", "Frames waiting for inference", registry=r)
        self.queue_wait_seconds = Histogram(
            "streamd_queue_wait_seconds",
            "Capture to inference start (time spent queued)",
            ["source"],
            buckets=END_TO_END_BUCKETS,
            registry=r,
        )
        self.inflight_requests = Gauge(
            "streamd_inflight_requests", "Inference requests running on the device", registry=r
        )
        self.source_up = Gauge("streamd_source_up", "1 while the source delivers frames", ["source"], registry=r)
        self.source_reconnects = Counter(
            "streamd_source_reconnects", "Reconnect attempts per source", ["source"], registry=r
        )
        self.source_errors = Counter(
            "streamd_source_errors", "Unreadable or corrupt input per source", ["source", "kind"], registry=r
        )
        self.mqtt_published = Counter("streamd_mqtt_published", "MQTT publishes by outcome", ["outcome"], registry=r)
        self.mqtt_dropped = Counter("streamd_mqtt_dropped", "MQTT messages given up on", ["reason"], registry=r)
        self.mqtt_connected = Gauge("streamd_mqtt_connected", "1 while connected to the broker", registry=r)
        self.mqtt_buffered = Gauge("streamd_mqtt_buffered", "Messages waiting for the broker", registry=r)
        self.mqtt_buffer_capacity = Gauge(
            "streamd_mqtt_buffer_capacity", "Messages the buffer holds before dropping the oldest", registry=r
        )
        self.model_info = Gauge(
            "streamd_model_info", "The model that runs and where", ["model", "device", "shape", "precision"], registry=r
        )
        self.detections = Counter("streamd_detections", "Objects detected", ["source", "label"], registry=r)
        self.build = Info("streamd_build", "streamd version", registry=r)
        self.decode_info = Gauge(
            "streamd_source_decode_info",
            "1 on the device that decodes the source's video (requested: its decode setting)",
            ["source", "requested", "device"],
            registry=r,
        )

        self.mqtt_buffer_unwritable = Gauge(
            "streamd_mqtt_buffer_unwritable",
            "1 while the disk buffer refuses writes (full disk, I/O error) and messages wait in memory",
            registry=r,
        )

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(f"streamd_{name}", doc, list(labels), registry=r)

        # Motion gating, detect switched off (reasons: no_motion, interval, detect_off).
        self.frames_skipped = counter("frames_skipped", "Frames captured and not inferred", ("source", "reason"))
        # Object filters and masks, and tracks never announced (threshold, required_zones).
        self.detections_filtered = counter(
            "detections_filtered", "Detections removed by filters", ("source", "label", "reason")
        )
        self.processing_errors = counter(
            "processing_errors", "Frames a decoder or a stage failed on (see the log)", ("source", "stage")
        )
        self.control_messages = counter("control_messages", "Control topic messages by outcome", ("outcome",))
        self.tasks_failed = Counter(
            "streamd_tasks_failed",
            "Background tasks that ended unexpectedly (the process is not ready)",
            ["task"],
            registry=r,
        )
        # Children looked up once: ``labels()`` takes a lock and builds a key on every call, and
        # these are called for every frame or message.
        self.queue_wait_for = functools.cache(self.queue_wait_seconds.labels)
        self.inferred_for = functools.cache(self.frames_inferred.labels)
        self.captured_for = functools.cache(self.frames_captured.labels)
        self.detections_for = functools.cache(self.detections.labels)
        self.end_to_end_for = functools.cache(self.end_to_end_seconds.labels)
        self.published_ok = self.mqtt_published.labels("ok")

    def init_source(self, config: SourceConfig) -> None:
        """Create every per-source series at 0, so dashboards and alerts see 0, not "no data":
        those of the features this source has, and only those."""
        source = config.name
        stream = not is_file_uri(config.uri)
        self.frames_captured.labels(source)
        self.frames_inferred.labels(source)
        self.source_up.labels(source).set(0)
        self.source_reconnects.labels(source)
        for reason in DROP_REASONS:
            self.frames_dropped.labels(source, reason)
        for kind in STREAM_ERROR_KINDS if stream else SOURCE_ERROR_KINDS:
            self.source_errors.labels(source, kind)
        self.frames_skipped.labels(source, "detect_off")
        self.processing_errors.labels(source, "decode")
        if config.motion is not None:
            for reason in ("no_motion", "interval"):
                self.frames_skipped.labels(source, reason)
        for label, rule in config.filters.items():
            for reason, value in rule.model_dump().items():
                if value not in (None, [], 0, 0.0):
                    self.detections_filtered.labels(source, label, reason)

    def init_mqtt(self, capacity: int) -> None:
        self.mqtt_buffer_capacity.set(capacity)
        for outcome in ("ok", "error"):
            self.mqtt_published.labels(outcome)
        for reason in ("buffer_full", "shutdown", "rejected", "refused"):
            self.mqtt_dropped.labels(reason)
        for outcome in ("accepted", "rejected"):
            self.control_messages.labels(outcome)


__all__ = ["PROCESS_COLLECTOR", "Metrics"]
