"""Per-source events from tracks: new / update / end, zone enter / exit, line crossings.

Runs on the event loop for each inferred frame (results arrive in capture order), and only
for sources with ``[sources.tracking]``: a source without it costs nothing here.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from streamd.config import SourceConfig
from streamd.geometry import Point, anchor, to_pixels
from streamd.timestamps import rfc3339
from streamd.tracking.metrics import TrackingMetrics
from streamd.tracking.tracker import Track, Tracker, TrackerConfig
from streamd.tracking.zones import Line, Zone
from streamd.types import Detection

# (topic suffix under {prefix}/{instance}/{source}/, payload, retained)
Publish = Callable[[str, str, bool], object]
# Asked when an announced track ends, with its id: a task whose result (keys such as "snapshot")
# the 'end' event carries (it is published once the task is done), or None to publish it at once.
BeforeEnd = Callable[[int], "asyncio.Task[dict[str, Any]] | None"]
EVENT_SCHEMA = "streamd/events/1"


class SourceEvents:
    def __init__(
        self,
        config: SourceConfig,
        publish: Publish,
        metrics: TrackingMetrics,
        before_end: BeforeEnd | None = None,
        ids: Iterator[int] | None = None,
    ) -> None:
        assert config.tracking is not None
        self.source = config.name
        self.config = config
        self.tracking = t = config.tracking
        self.tracker = Tracker(
            TrackerConfig(
                t.high, t.iou, t.min_hits, t.max_age, t.stationary_after, t.stationary_iou, t.stationary_max_age
            ),
            ids,
        )
        self._publish = publish
        self._metrics = metrics
        self.before_end = before_end
        # Confirmed tracks not yet announced: their label's threshold or required zones say wait.
        self._pending: set[int] = set()
        self.zones: list[Zone] = []
        self.lines: list[Line] = []
        self._sized = False
        self._frame_size = (0, 0)
        self._last_anchor: dict[int, Point] = {}
        self._last_update: dict[int, float] = {}
        self._occupancy: dict[tuple[str, str], tuple[int, int]] = {}  # (objects, stationary ones)
        self.counts: Counter[str] = Counter()  # events by type, for the tests and the shutdown log

    def _size(self, width: int, height: int) -> None:
        """Zones and lines may be fractions of the frame: resolved on the first frame."""
        self._frame_size = (width, height)
        self.zones = [
            Zone(z.name, to_pixels(z.polygon, width, height), frozenset(z.labels), z.min_frames)
            for z in self.config.zones
        ]
        self.lines = []
        for spec in self.config.lines:
            points = to_pixels(spec.points, width, height)
            self.lines.append(Line(spec.name, points[0], points[1], frozenset(spec.labels)))
        for zone in self.zones:
            for label in zone.labels:
                self._set_occupancy(zone.name, label, 0)
        for line in self.lines:
            self._publish(f"lines/{line.name}", json.dumps(dict(line.counts)), True)
        self._sized = True

    def on_frame(self, frame: int, ts: float, width: int, height: int, detections: list[Detection]) -> None:
        if not self._sized:
            self._size(width, height)
        step = self.tracker.step(detections, ts, frame)
        self._pending.update(track.id for track in step.born)
        for track in step.active:
            announced = track.id not in self._pending
            point = anchor(track.box)
            for zone in self.zones:
                if zone.applies(track.label):
                    change = zone.observe(track.id, point)
                    if change == "enter":
                        track.zones.add(zone.name)
                        if announced:
                            self._event("enter", track, frame, zone=zone.name)
                    elif change == "exit":
                        track.zones.discard(zone.name)
                        if announced:
                            self._event("exit", track, frame, zone=zone.name)
            if not announced and self._held_back_by(track) is None:
                self._pending.discard(track.id)
                self._event("new", track, frame)
                self._last_update[track.id] = ts
                announced = True
            before = self._last_anchor.get(track.id)
            self._last_anchor[track.id] = point
            if not announced:
                continue
            if before is not None:
                for line in self.lines:
                    if line.applies(track.label) and (direction := line.crossing(before, point)):
                        track.crossed.add(line.name)
                        self._event("cross", track, frame, line=line.name, direction=direction)
                        self._publish(f"lines/{line.name}", json.dumps(dict(line.counts)), True)
            if track in step.stopped:
                self._event("stationary", track, frame)
            elif track in step.moved:
                self._event("active", track, frame)
                self._last_update[track.id] = ts
            elif not track.stationary and ts - self._last_update.get(track.id, 0.0) >= self.tracking.update_interval:
                self._event("update", track, frame)
                self._last_update[track.id] = ts
        for track in step.ended:
            self._end(track, frame)
        self._refresh_occupancy()
        confirmed = [t for t in self.tracker.tracks if t.confirmed and t.id not in self._pending]
        self._metrics.tracks_active.labels(self.source).set(len(confirmed))
        self._metrics.tracks_stationary.labels(self.source).set(sum(t.stationary for t in confirmed))

    def announced(self, track_id: int) -> bool:
        return track_id not in self._pending

    def _held_back_by(self, track: Track) -> str | None:
        """Which of its label's track-level rules keeps a track from being announced, if any."""
        rule = self.config.filters.get(track.label)
        if rule is None:
            return None
        if track.median_score < rule.threshold:
            return "threshold"
        if rule.required_zones and not track.zones.intersection(rule.required_zones):
            return "required_zones"
        return None

    def finish(self, frame: int) -> None:
        """The source ended: close every track (and its zones)."""
        for track in self.tracker.finish():
            self._end(track, frame)
        self._refresh_occupancy()
        self._metrics.tracks_active.labels(self.source).set(0)
        self._metrics.tracks_stationary.labels(self.source).set(0)

    def _end(self, track: Track, frame: int) -> None:
        """Where the object was last *seen* (box and last_seen of that observation), not where
        the motion model predicts it went since. A track never announced ends silently, counted
        as filtered by the rule that held it back."""
        self._last_anchor.pop(track.id, None)
        self._last_update.pop(track.id, None)
        if track.id in self._pending:
            self._pending.discard(track.id)
            reason = self._held_back_by(track) or "required_zones"  # one of the two held it back
            self._metrics.filtered.labels(self.source, track.label, reason).inc()
            for zone in self.zones:
                zone.forget(track.id)
            return
        for zone in self.zones:
            if zone.forget(track.id):
                track.zones.discard(zone.name)
                self._event("exit", track, frame, observed=True, zone=zone.name)
        payload = self._payload("end", track, frame, observed=True)
        waiting = self.before_end(track.id) if self.before_end is not None else None
        if waiting is None:
            self._send(payload)
            return

        def send_with_extra(task: asyncio.Task[dict[str, Any]]) -> None:
            extra = None if task.cancelled() or task.exception() else task.result()
            self._send({**payload, **extra} if extra else payload)

        waiting.add_done_callback(send_with_extra)

    def _event(self, kind: str, track: Track, frame: int, observed: bool = False, **extra: Any) -> None:
        self._send(self._payload(kind, track, frame, observed, **extra))

    def _payload(self, kind: str, track: Track, frame: int, observed: bool = False, **extra: Any) -> dict[str, Any]:
        box = self._inside(track.observed) if observed else track.box
        payload = {
            "schema": EVENT_SCHEMA,
            "type": kind,
            "source": self.source,
            "id": track.id,
            "label": track.label,
            "score_max": round(track.score_max, 4),
            "box": [round(v, 1) for v in box],
            "zones": sorted(track.zones),
            "first_seen": rfc3339(track.first_seen),
            "last_seen": rfc3339(track.last_seen),
            "frame": frame,
            "stationary": track.stationary,
            **extra,
        }
        return payload

    def _send(self, payload: dict[str, Any]) -> None:
        kind = payload["type"]
        self.counts[kind] += 1
        self._metrics.track_events.labels(self.source, kind).inc()
        self._publish("events", json.dumps(payload, separators=(",", ":"), allow_nan=False), False)

    def _inside(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        width, height = self._frame_size
        x1, y1, x2, y2 = box
        return (
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
            min(max(x2, 0.0), width),
            min(max(y2, 0.0), height),
        )

    def _refresh_occupancy(self) -> None:
        """Per zone and label: how many announced objects are in it, and how many of them stand
        still (``zones/{zone}/{label}`` and ``.../stationary``, retained, on change)."""
        counts: Counter[tuple[str, str]] = Counter()
        still: Counter[tuple[str, str]] = Counter()
        for track in self.tracker.tracks:
            if track.id in self._pending:
                continue
            for name in track.zones:
                counts[(name, track.label)] += 1
                still[(name, track.label)] += track.stationary
        for key in set(counts) | set(self._occupancy):
            now = (counts.get(key, 0), still.get(key, 0))
            if now != self._occupancy.get(key):
                self._set_occupancy(key[0], key[1], *now)

    def _set_occupancy(self, zone: str, label: str, count: int, stationary: int = 0) -> None:
        before = self._occupancy.get((zone, label))
        self._occupancy[(zone, label)] = (count, stationary)
        self._metrics.zone_occupancy.labels(self.source, zone, label).set(count)
        topic = f"zones/{zone}/{label.replace(' ', '_')}"
        if before is None or before[0] != count:
            self._publish(topic, str(count), True)
        if before is None or before[1] != stationary:
            self._publish(f"{topic}/stationary", str(stationary), True)
