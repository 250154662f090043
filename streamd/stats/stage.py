"""Per-frame counters and the ``{prefix}/{instance}/stats`` message: the first stage of the chain."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from streamd.config import SourceConfig
from streamd.runtime import systemd
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.timestamps import rfc3339
from streamd.types import Result

LATENCY_WINDOW = 512  # inference times kept for the stats topic's percentiles


class StatsStage(Stage, SourceHandler):
    """Counts every source's results (it is its own handler for every source)."""

    name = "stats"
    order = 200

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self._metrics = context.metrics
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.inferred: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.skipped: dict[str, dict[str, int]] = {}  # queue-side skips (detect_off), by reason

    def for_source(self, source: SourceConfig) -> SourceHandler:
        return self

    def on_result(self, result: Result) -> None:
        frame = result.frame
        if frame.skipped is not None:
            return  # counted where it was skipped (frames_skipped_total)
        self.latencies.append(frame.inference)
        self.inferred[frame.source] = self.inferred.get(frame.source, 0) + 1
        for detection in result.detections:
            self._metrics.detections_for(frame.source, detection.label).inc()

    def on_skip(self, source: str, reason: str) -> None:
        self._metrics.frames_skipped.labels(source, reason).inc()
        counts = self.skipped.setdefault(source, {})
        counts[reason] = counts.get(reason, 0) + 1

    def on_drop(self, source: str, reason: str) -> None:
        self._metrics.frames_dropped.labels(source, reason).inc()
        self.dropped[source] = self.dropped.get(source, 0) + 1

    async def report(
        self, interval: float, publish: Callable[[str], None], snapshot: Callable[[], dict[str, Any]]
    ) -> None:
        """Every ``interval``: per source the fps inferred and captured and the frames skipped by
        reason (a motion-gated camera is quiet, not stalled), inference percentiles and
        ``snapshot()`` (states, captured counts, gate skips, queue, device, MQTT buffer) as one
        JSON message; a STATUS= line for systemctl."""
        last: dict[str, int] = {}
        last_captured: dict[str, int] = {}
        since = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            # Rates over the window as it really was: a loaded loop wakes late, and dividing by
            # the nominal interval would inflate both rates.
            now_at = time.monotonic()
            window, since = max(now_at - since, 1e-3), now_at
            current = snapshot()
            fps: dict[str, float] = {}
            captured_fps: dict[str, float] = {}
            for name in current["states"]:
                now = self.inferred.get(name, 0)
                fps[name] = round((now - last.get(name, 0)) / window, 2)
                last[name] = now
                seen = current["captured"].get(name, 0)
                captured_fps[name] = round(max(0, seen - last_captured.get(name, 0)) / window, 2)
                last_captured[name] = seen
            skipped: dict[str, dict[str, int]] = {}
            for part in (current["skipped"], self.skipped):
                for name, reasons in part.items():
                    for reason, count in reasons.items():
                        skipped.setdefault(name, {})[reason] = skipped.get(name, {}).get(reason, 0) + count
            times = sorted(self.latencies)
            stats = {
                "ts": rfc3339(time.time()),
                "window_s": round(window, 3),  # what fps and captured_fps are measured over
                "fps": fps,
                "captured_fps": captured_fps,
                "skipped": skipped,
                "states": current["states"],
                "dropped": dict(self.dropped),
                "queue_depth": current["queue_depth"],
                "inference_ms_p50": round(times[len(times) // 2] * 1000, 2) if times else None,
                "inference_ms_p95": round(times[int(len(times) * 0.95)] * 1000, 2) if times else None,
                "device": current["device"],
                "mqtt_buffered": current["mqtt_buffered"],
            }
            publish(json.dumps(stats, separators=(",", ":")))
            up = sum(s == "streaming" for s in current["states"].values())
            systemd.notify(f"STATUS={sum(fps.values()):.1f} fps, {up}/{len(current['states'])} sources up")
