"""Tracking as a stage: per-source trackers and their events, for sources that ask for it."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from streamd.config import SourceConfig
from streamd.metrics import Metrics
from streamd.sinks.mqtt import MqttSink
from streamd.tracking.events import SourceEvents
from streamd.types import Result, TrackedObject

# (source, track id) -> a task the track's 'end' waits for (its snapshot), or None.
BeforeEnd = Callable[[str, int], "asyncio.Task[dict[str, Any] | None] | None"]


class TrackingStage:
    def __init__(self, sink: MqttSink, metrics: Metrics, before_end: BeforeEnd | None = None) -> None:
        self._sink = sink
        self._metrics = metrics
        self._before_end = before_end
        self.events: dict[str, SourceEvents] = {}
        self._last_frame: dict[str, int] = {}
        self.seconds = 0.0  # time spent tracking, for the bench and the shutdown log
        self._ids: dict[str, Iterator[int]] = {}  # per source, for the whole run
        self.frames = 0

    def wants_skipped(self, config: SourceConfig) -> bool:
        return config.tracking is not None  # tracks age in frames where nothing moved

    def source_started(self, config: SourceConfig) -> None:
        if config.tracking is None:
            return
        source = config.name
        self.events[source] = SourceEvents(
            config,
            lambda suffix, payload, retain: self._sink.publish(
                self._sink.topic(source, suffix), payload, retain=retain
            ),
            self._metrics,
            functools.partial(self._before_end, source) if self._before_end is not None else None,
            self._ids.setdefault(source, itertools.count(1)),
        )

    def source_finished(self, source: str) -> None:
        """Its last frame is through: every track of the source ends."""
        events = self.events.pop(source, None)
        if events is not None:
            events.finish(self._last_frame.get(source, 0))

    def finish_all(self) -> None:
        """Shutdown: every track of every source ends (their end events go out before MQTT closes)."""
        for source in list(self.events):
            self.source_finished(source)

    def on_result(self, result: Result) -> None:
        frame = result.frame
        self._last_frame[frame.source] = frame.seq + 1
        events = self.events.get(frame.source)
        if events is None or frame.skipped == "interval":
            return  # detect_interval: the tracker sees the frames it would have seen at a lower fps
        # A frame skipped for lack of motion is one where nothing moved: the tracks age as in a
        # frame without detections (so objects that left end in time), and min_interval makes
        # sure one standing still is seen again before its max_age.
        started = time.perf_counter()
        events.on_frame(frame.seq, frame.ts, frame.width, frame.height, result.detections)
        result.tracks = [
            TrackedObject(t.id, t.label, t.score, t.observed, t.age == 0, t.stationary)
            for t in events.tracker.tracks
            if t.confirmed and events.announced(t.id)
        ]
        self.seconds += time.perf_counter() - started
        self.frames += 1

    @property
    def ms_per_frame(self) -> float | None:
        return round(1000 * self.seconds / self.frames, 3) if self.frames else None
