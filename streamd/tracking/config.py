"""``[sources.tracking]``, ``[[sources.zones]]`` and ``[[sources.lines]]``: the tracking feature's settings."""

from __future__ import annotations

from pydantic import Field, field_validator

from streamd.config_objects import Coordinate, Strict, topic_name
from streamd.filters.config import ObjectFilter


class TrackingConfig(Strict):
    high: float = Field(default=0.5, ge=0.0, le=1.0)  # score that starts a track (lower ones only extend)
    iou: float = Field(default=0.3, gt=0.0, le=1.0)
    min_hits: int = Field(default=3, ge=1, le=1000)  # frames before a track is born (and announced)
    max_age: int = Field(default=30, ge=1, le=100_000)  # frames unseen before a track ends
    update_interval: float = Field(default=1.0, ge=0.0, le=86400.0)  # seconds between 'update' events of a track
    # A track whose box stays put (IoU with where it was when it stopped >= stationary_iou) this
    # many seconds is stationary: no more 'update's, and gaps up to stationary_max_age frames
    # do not end it. 0 turns it off.
    stationary_after: float = Field(default=10.0, ge=0.0, le=86400.0)
    stationary_iou: float = Field(default=0.7, gt=0.0, le=1.0)
    stationary_max_age: int = Field(default=300, ge=1, le=1_000_000)


class ZoneConfig(Strict):
    name: str
    polygon: list[tuple[Coordinate, Coordinate]] = Field(min_length=3)  # pixels, or 0..1 fractions
    labels: list[str] = Field(default_factory=list)  # empty: every label
    min_frames: int = Field(default=3, ge=1, le=10_000)  # frames inside (or outside) before enter (or exit)
    # Per label, replacing the source's filter keys they set, for detections standing in the zone.
    filters: dict[str, ObjectFilter] = Field(default_factory=dict)

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))


class LineConfig(Strict):
    name: str
    points: tuple[tuple[Coordinate, Coordinate], tuple[Coordinate, Coordinate]]
    labels: list[str] = Field(default_factory=list)

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))
