"""Object filters and object masks: false positives leave the Result before stats, tracking,
presence and payloads see it, and every one removed is counted
(``streamd_detections_filtered_total{source,label,reason}``).

A detection's anchor (bottom centre: where it stands) decides masks and zone overrides, as in
the zones themselves. Track-level filters (``threshold``, ``required_zones``) are applied by
the events (tracking/events.py), which know the track's history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamd.config import SourceConfig
from streamd.filters.config import ObjectFilter
from streamd.geometry import anchor, inside, to_pixels
from streamd.metrics import Metrics
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.types import Detection, Result

PER_DETECTION = ("min_score", "min_area", "max_area", "min_ratio", "max_ratio")


@dataclass
class _ZoneFilters:
    polygon: np.ndarray
    filters: dict[str, ObjectFilter]


def merged(base: ObjectFilter | None, override: ObjectFilter) -> ObjectFilter:
    """A zone's filter replaces only the keys it sets."""
    if base is None:
        return override
    return base.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


def rejection(detection: Detection, rule: ObjectFilter, frame_area: float) -> str | None:
    """Which per-detection rule ``detection`` breaks (the first), or None."""
    x1, y1, x2, y2 = detection.box
    width, height = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
    area = width * height
    if detection.score < rule.min_score:
        return "min_score"
    if area < (rule.min_area * frame_area if rule.min_area <= 1.0 else rule.min_area):
        return "min_area"
    if rule.max_area is not None and area > (rule.max_area * frame_area if rule.max_area <= 1.0 else rule.max_area):
        return "max_area"
    ratio = width / height if height > 0 else float("inf")
    if ratio < rule.min_ratio:
        return "min_ratio"
    if rule.max_ratio is not None and ratio > rule.max_ratio:
        return "max_ratio"
    return None


class SourceFilter:
    """One source's rules, resolved to pixels on its first frame (fractions scale with it)."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self._size: tuple[int, int] | None = None
        self.masks: list[np.ndarray] = []
        self.zones: list[_ZoneFilters] = []

    def _resolve(self, width: int, height: int) -> None:
        self._size = (width, height)
        self.masks = [to_pixels(polygon, width, height) for polygon in self.config.object_masks]
        self.zones = [
            _ZoneFilters(to_pixels(zone.polygon, width, height), dict(zone.filters))
            for zone in self.config.zones
            if zone.filters
        ]

    def reason(self, detection: Detection, width: int, height: int) -> str | None:
        if self._size != (width, height):
            self._resolve(width, height)
        point = anchor(detection.box)
        if any(inside(mask, point) for mask in self.masks):
            return "mask"
        rule = self.config.filters.get(detection.label)
        for zone in self.zones:
            override = zone.filters.get(detection.label)
            if override is not None and inside(zone.polygon, point):
                rule = merged(rule, override)
        if rule is None:
            return None
        return rejection(detection, rule, float(width * height))


class ObjectFilterStage(Stage):
    """Per-source and per-zone rules on detections, and object masks: first in the chain."""

    name = "filters"
    order = 100

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self._metrics = context.metrics

    def for_source(self, config: SourceConfig) -> SourceFilterHandler | None:
        if config.filters or config.object_masks or any(z.filters for z in config.zones):
            return SourceFilterHandler(SourceFilter(config), self._metrics)
        return None  # no rules: the source's results pass untouched, at no cost


class SourceFilterHandler(SourceHandler):
    def __init__(self, rules: SourceFilter, metrics: Metrics) -> None:
        self._rules = rules
        self._metrics = metrics

    def on_result(self, result: Result) -> None:
        if not result.detections:
            return
        frame = result.frame
        kept: list[Detection] = []
        for detection in result.detections:
            reason = self._rules.reason(detection, frame.width, frame.height)
            if reason is None:
                kept.append(detection)
            else:
                self._metrics.detections_filtered.labels(frame.source, detection.label, reason).inc()
        result.detections = kept
