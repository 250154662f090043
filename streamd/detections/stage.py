"""The per-frame detections message: a pure function, and the stage that publishes it."""

from __future__ import annotations

import json
import time
from typing import Any

from streamd.config import SourceConfig
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.timestamps import rfc3339
from streamd.types import Result

PAYLOAD_SCHEMA = "streamd/detections/1"  # bumped on any incompatible payload change


def detections_payload(result: Result, full: bool, now: float) -> dict[str, Any]:
    """``streamd/schemas/detections.schema.json``; ``now`` is monotonic (latency, timings)."""
    frame = result.frame
    payload: dict[str, Any] = {
        "schema": PAYLOAD_SCHEMA,
        "source": frame.source,
        "frame": frame.seq,
        "ts": rfc3339(frame.ts),
        "latency_ms": round((now - frame.captured) * 1000.0, 2),
        "width": frame.width,
        "height": frame.height,
        "model": result.model,
        "device": result.device,
        "detections": [d.as_json() for d in result.detections],
    }
    if frame.skipped is not None:
        payload["skipped"] = frame.skipped
    if full and frame.skipped is None:
        payload["timings"] = {
            "queue_ms": round((frame.started - frame.captured) * 1000.0, 2),
            "inference_ms": round(frame.inference * 1000.0, 2),
            "result_ms": round((now - frame.started) * 1000.0, 2),
        }
    return payload


class DetectionsStage(Stage, SourceHandler):
    """The per-frame message on ``{source}/detections`` (its own handler for every source)."""

    name = "detections"
    order = 900

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self._config = context.config.mqtt
        self._sink = context.publisher
        self.published: dict[str, int] = {}  # frames per source, for the shutdown log
        self.wants_skipped = self._config.publish_empty  # a message for every frame, saying it was skipped

    def for_source(self, source: SourceConfig) -> SourceHandler:
        return self

    def on_result(self, result: Result) -> None:
        cfg = self._config
        if not cfg.publish_detections or (not result.detections and not cfg.publish_empty):
            return
        frame = result.frame
        payload = detections_payload(result, cfg.payload == "full", time.monotonic())
        self.published[frame.source] = self.published.get(frame.source, 0) + 1
        self._sink.publish(
            self._sink.topic(frame.source, "detections"),
            json.dumps(payload, separators=(",", ":"), allow_nan=False),
            source=frame.source,
            captured=frame.captured,
        )
