"""Dwell time, as a third-party streamd stage: how long each tracked object has stayed in an
area of the frame, an alert once it stays longer than ``alert_after`` seconds, and how long it
stayed when its track ends (also added to streamd's own ``end`` event under ``dwell``).

Everything here goes through streamd's public stage contract (``streamd.stages``): the settings
model is the ``[sources.dwell]`` section, the handler reads the tracks tracking leaves on each
result, and messages go out through the publisher under ``{prefix}/{instance}/{source}/dwell/``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamd.config import SourceConfig
from streamd.geometry import anchor, inside, to_pixels
from streamd.logging import get_logger
from streamd.publish import Publisher
from streamd.stages import SourceHandler, Stage
from streamd.types import Result

log = get_logger(__name__)


class DwellSettings(BaseModel):
    """``[sources.dwell]`` (the source needs ``[sources.tracking]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    alert_after: float = Field(default=30.0, gt=0.0, le=86400.0)  # seconds in the area before the alert
    labels: list[str] = Field(default_factory=lambda: ["person"])  # empty: every tracked label
    # The area (where an object stands: the bottom centre of its box), 0..1 fractions or pixels;
    # None: the whole frame.
    area: list[tuple[float, float]] | None = Field(default=None, min_length=3)


class DwellClock:
    """When each track entered the area, and whether its alert went out (pure: no I/O)."""

    def __init__(self, alert_after: float) -> None:
        self.alert_after = alert_after
        self.since: dict[int, float] = {}
        self.alerted: set[int] = set()
        self.last: dict[int, float] = {}

    def seen(self, track_id: int, ts: float, in_area: bool) -> float | None:
        """Seconds in the area when this sighting crosses ``alert_after`` (once per stay), else None."""
        if not in_area:
            self.since.pop(track_id, None)
            self.alerted.discard(track_id)
            return None
        start = self.since.setdefault(track_id, ts)
        self.last[track_id] = ts
        stayed = ts - start
        if stayed >= self.alert_after and track_id not in self.alerted:
            self.alerted.add(track_id)
            return stayed
        return None

    def gone(self, track_id: int) -> float | None:
        """The track ended: how long it had stayed in the area (None: it was not in it)."""
        start = self.since.pop(track_id, None)
        last = self.last.pop(track_id, None)
        self.alerted.discard(track_id)
        return None if start is None or last is None else last - start


class DwellStage(Stage):
    name = "dwell"
    settings = DwellSettings
    order = 500  # after tracking (300), snapshots and recording; before the detections payload

    def for_source(self, source: SourceConfig) -> SourceHandler | None:
        settings = self.settings_of(source)
        if settings is None:
            return None
        if source.tracking is None:  # it reads tracks: without tracking it would never say a thing
            log.warning("dwell_needs_tracking", source=source.name, note="add [sources.tracking]")
            return None
        return SourceDwell(source.name, settings, self.context.publisher)


class SourceDwell(SourceHandler):
    end_key = "dwell"  # streamd's end event carries {"seconds": ...}

    def __init__(self, source: str, settings: DwellSettings, publisher: Publisher) -> None:
        self._source = source
        self._settings = settings
        self._publisher = publisher
        self._clock = DwellClock(settings.alert_after)
        self._labels = frozenset(settings.labels)
        self._area: np.ndarray | None = None
        self._size = (0, 0)
        self._kinds: dict[int, str] = {}

    def _in_area(self, box: tuple[float, float, float, float], width: int, height: int) -> bool:
        if self._settings.area is None:
            return True
        if self._area is None or self._size != (width, height):
            self._area, self._size = to_pixels(self._settings.area, width, height), (width, height)
        return inside(self._area, anchor(box))

    def on_result(self, result: Result) -> None:
        frame = result.frame
        for track in result.tracks:
            if not track.matched or (self._labels and track.label not in self._labels):
                continue
            self._kinds[track.id] = track.label
            stayed = self._clock.seen(track.id, frame.ts, self._in_area(track.box, frame.width, frame.height))
            if stayed is not None:
                self._publish("alert", {"id": track.id, "label": track.label, "seconds": round(stayed, 3)})

    def track_ended(self, track_id: int) -> asyncio.Task[dict[str, Any] | None] | None:
        stayed = self._clock.gone(track_id)
        label = self._kinds.pop(track_id, None)
        if stayed is None or label is None:
            return None
        summary = {"id": track_id, "label": label, "seconds": round(stayed, 3)}
        self._publish(label.replace(" ", "_"), summary)
        return asyncio.get_running_loop().create_task(_value({"seconds": summary["seconds"]}))

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        topic = self._publisher.topic(self._source, f"dwell/{kind}")
        self._publisher.publish(topic, json.dumps(payload), qos=1)


async def _value(value: dict[str, Any]) -> dict[str, Any] | None:
    return value
