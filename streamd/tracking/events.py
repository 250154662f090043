"""Per-source events from tracks: new / update / end, zone enter / exit, line crossings.

Runs on the event loop for each inferred frame (results arrive in capture order), and only
for sources with ``[sources.tracking]``: a source without it costs nothing here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from streamd.config import SourceConfig
from streamd.metrics import Metrics
from streamd.timestamps import rfc3339
from streamd.tracking.tracker import Track, Tracker, TrackerConfig
from streamd.tracking.zones import Line, Point, Zone, anchor, to_pixels
from streamd.types import Detection

# (topic suffix under {prefix}/{instance}/{source}/, payload, retained)
Publish = Callable[[str, str, bool], None]
EVENT_SCHEMA = "streamd/events/1"


class SourceEvents:
    def __init__(self, config: SourceConfig, publish: Publish, metrics: Metrics) -> None:
        assert config.tracking is not None
        self.source = config.name
        self.config = config
        self.tracking = config.tracking
        self.tracker = Tracker(
            TrackerConfig(self.tracking.high, self.tracking.iou, self.tracking.min_hits, self.tracking.max_age)
        )
        self._publish = publish
        self._metrics = metrics
        self.zones: list[Zone] = []
        self.lines: list[Line] = []
        self._sized = False
        self._frame_size = (0, 0)
        self._last_anchor: dict[int, Point] = {}
        self._last_update: dict[int, float] = {}
        self._occupancy: dict[tuple[str, str], int] = {}
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
        for track in step.born:
            self._event("new", track, frame)
            self._last_update[track.id] = ts
        for track in step.active:
            point = anchor(track.box)
            for zone in self.zones:
                if zone.applies(track.label):
                    change = zone.observe(track.id, point)
                    if change == "enter":
                        track.zones.add(zone.name)
                        self._event("enter", track, frame, zone=zone.name)
                    elif change == "exit":
                        track.zones.discard(zone.name)
                        self._event("exit", track, frame, zone=zone.name)
            before = self._last_anchor.get(track.id)
            if before is not None:
                for line in self.lines:
                    if line.applies(track.label) and (direction := line.crossing(before, point)):
                        self._event("cross", track, frame, line=line.name, direction=direction)
                        self._publish(f"lines/{line.name}", json.dumps(dict(line.counts)), True)
            self._last_anchor[track.id] = point
            if track not in step.born and ts - self._last_update.get(track.id, 0.0) >= self.tracking.update_interval:
                self._event("update", track, frame)
                self._last_update[track.id] = ts
        for track in step.ended:
            self._end(track, frame)
        self._refresh_occupancy()
        self._metrics.tracks_active.labels(self.source).set(sum(t.confirmed for t in self.tracker.tracks))

    def finish(self, frame: int) -> None:
        """The source ended: close every track (and its zones)."""
        for track in self.tracker.finish():
            self._end(track, frame)
        self._refresh_occupancy()
        self._metrics.tracks_active.labels(self.source).set(0)

    def _end(self, track: Track, frame: int) -> None:
        """Where the object was last *seen* (box and last_seen of that observation), not where
        the motion model predicts it went since."""
        for zone in self.zones:
            if zone.forget(track.id):
                track.zones.discard(zone.name)
                self._event("exit", track, frame, observed=True, zone=zone.name)
        self._event("end", track, frame, observed=True)
        self._last_anchor.pop(track.id, None)
        self._last_update.pop(track.id, None)

    def _event(self, kind: str, track: Track, frame: int, observed: bool = False, **extra: Any) -> None:
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
            **extra,
        }
        self.counts[kind] += 1
        self._metrics.track_events.labels(self.source, kind).inc()
        self._publish("events", json.dumps(payload, separators=(",", ":")), False)

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
        counts: Counter[tuple[str, str]] = Counter()
        for track in self.tracker.tracks:
            for name in track.zones:
                counts[(name, track.label)] += 1
        for key in set(counts) | set(self._occupancy):
            if counts.get(key, 0) != self._occupancy.get(key):
                self._set_occupancy(key[0], key[1], counts.get(key, 0))

    def _set_occupancy(self, zone: str, label: str, count: int) -> None:
        self._occupancy[(zone, label)] = count
        self._metrics.zone_occupancy.labels(self.source, zone, label).set(count)
        self._publish(f"zones/{zone}/{label.replace(' ', '_')}", str(count), True)
