"""The per-source settings about objects: tracking, zones and lines, object filters (per label,
overridable per zone), object masks and snapshots. Part of :mod:`config`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SOURCE_NAME = re.compile(r"^[a-z0-9_-]+$")
# Names go into MQTT topics (at most 65,535 bytes, and brokers cap far lower), metric labels and
# the buffer's file name (255 bytes): short limits, checked here rather than by a refused publish.
MAX_NAME = 64

Coordinate = Annotated[float, Field(ge=0.0)]
Polygon = Annotated[list[tuple[Coordinate, Coordinate]], Field(min_length=3)]  # pixels, or 0..1 fractions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ObjectFilter(_Strict):
    """What a detection (or a track) must be to count, as Frigate's ``objects.filters``.

    Areas at most 1.0 are fractions of the frame's area, larger ones pixels. Ratios are
    width / height (a standing person is about 0.4)."""

    min_area: float = Field(default=0.0, ge=0.0)
    max_area: float | None = Field(default=None, gt=0.0)
    min_ratio: float = Field(default=0.0, ge=0.0)
    max_ratio: float | None = Field(default=None, gt=0.0)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)  # per detection
    # Median score over the track's last scores before its 'new' is published (tracking only).
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    required_zones: list[str] = Field(default_factory=list)  # no 'new' until it enters one

    @model_validator(mode="after")
    def _ranges(self) -> ObjectFilter:
        max_area = self.max_area
        if (
            max_area is not None
            and self.min_area > 0
            and _same_unit(self.min_area, max_area)
            and max_area < self.min_area
        ):
            raise ValueError(f"max_area ({self.max_area}) is below min_area ({self.min_area})")
        if self.max_ratio is not None and self.max_ratio < self.min_ratio:
            raise ValueError(f"max_ratio ({self.max_ratio}) is below min_ratio ({self.min_ratio})")
        return self


def _same_unit(a: float, b: float) -> bool:
    return (a <= 1.0) == (b <= 1.0)


class SnapshotConfig(_Strict):
    """Per track, the best frame (highest score, box not cut by the frame's edge) as a JPEG."""

    margin: float = Field(default=0.2, ge=0.0, le=2.0)  # added around the box, as a fraction of its size
    full_frame: bool = False  # also the whole frame with the box drawn, on .../snapshot/{label}/full
    quality: int = Field(default=85, ge=10, le=100)
    max_width: int = Field(default=640, ge=32, le=8192)  # larger crops are scaled down (bytes on the broker)
    labels: list[str] = Field(default_factory=list)  # empty: every tracked label
    save_dir: str = ""  # also write them here ("" = MQTT only)
    max_bytes: int = Field(default=256 << 20, ge=1 << 20)  # save_dir budget: the oldest go first
    max_age: float = Field(default=7 * 86400.0, gt=0.0, le=3650 * 86400.0)  # seconds a saved snapshot is kept

    _usable = field_validator("save_dir")(classmethod(lambda cls, v: usable_directory(v)))


def state_directory() -> Path:
    """Where streamd keeps what must outlive a restart: systemd's StateDirectory, else the XDG one."""
    base = os.environ.get("STATE_DIRECTORY") or os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(base.split(":")[0]) / ("" if os.environ.get("STATE_DIRECTORY") else "streamd")


class RecordingConfig(_Strict):
    """Clips around tracked objects: the camera's own compressed stream, no re-encode."""

    dir: str = ""  # "": recordings/ under the state directory (systemd's StateDirectory)
    pre_capture: float = Field(default=5.0, ge=0.0, le=60.0)  # seconds kept before the object appears
    post_capture: float = Field(default=5.0, ge=0.0, le=300.0)  # seconds after its track ends
    # A longer stay (a parked car) makes consecutive clips, each starting on a keyframe.
    max_seconds: float = Field(default=600.0, ge=1.0, le=86400.0)
    labels: list[str] = Field(default_factory=list)  # which tracks make a clip; empty: every tracked label
    retain_days: float = Field(default=7.0, gt=0.0, le=3650.0)
    max_bytes: int = Field(default=10_000_000_000, ge=1 << 20)  # this source's clips; the oldest go first
    # The pre-capture ring's memory bound (a 4 Mbit/s camera fills 5 s with 2.5 MB).
    ring_bytes: int = Field(default=64 << 20, ge=1 << 20)

    @property
    def directory(self) -> Path:
        return Path(self.dir).expanduser() if self.dir else state_directory() / "recordings"

    _usable = field_validator("dir")(classmethod(lambda cls, v: usable_directory(v)))


def usable_directory(value: str) -> str:
    """Created now if missing: a folder that cannot be one is a config error, not a log line a minute."""
    problem = directory_problem(Path(value).expanduser()) if value else None
    if problem:
        raise ValueError(problem)
    return value


def directory_problem(directory: Path) -> str | None:
    """Created if missing; None when this user can write there, else what is wrong with it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {directory}: {exc.strerror}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory} is not writable"
    return None


def topic_name(value: str) -> str:
    if not SOURCE_NAME.match(value):
        raise ValueError("must match [a-z0-9_-]+ (it is used in MQTT topics and metric labels)")
    if len(value) > MAX_NAME:
        raise ValueError(
            f"at most {MAX_NAME} characters (it is used in MQTT topics and metric labels), got {len(value)}"
        )
    return value


class TrackingConfig(_Strict):
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


class ZoneConfig(_Strict):
    name: str
    polygon: list[tuple[Coordinate, Coordinate]] = Field(min_length=3)  # pixels, or 0..1 fractions
    labels: list[str] = Field(default_factory=list)  # empty: every label
    min_frames: int = Field(default=3, ge=1, le=10_000)  # frames inside (or outside) before enter (or exit)
    # Per label, replacing the source's filter keys they set, for detections standing in the zone.
    filters: dict[str, ObjectFilter] = Field(default_factory=dict)

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))


class LineConfig(_Strict):
    name: str
    points: tuple[tuple[Coordinate, Coordinate], tuple[Coordinate, Coordinate]]
    labels: list[str] = Field(default_factory=list)

    _name = field_validator("name")(classmethod(lambda cls, v: topic_name(v)))


class MotionConfig(_Strict):
    """Detection only where something moves: frame differencing on a small grey copy of each frame
    (in the reader thread, beside the decode), against a background that adapts."""

    threshold: int = Field(default=30, ge=1, le=255)  # grey-level change that counts as motion
    # The smallest moving blob: pixels of the small frame, or (at most 1) a fraction of it.
    contour_area: float = Field(default=10.0, gt=0.0)
    frame_height: int = Field(default=100, ge=16, le=1080)  # the small copy's height
    # How fast the background follows the scene: 0.2 absorbs an object that stopped in ~7 frames.
    alpha: float = Field(default=0.2, gt=0.0, le=1.0)
    masks: list[Polygon] = Field(default_factory=list)  # motion here is ignored (clocks, trees)
    # While objects are present, infer at least this often, so one that stands still is kept.
    min_interval: float = Field(default=1.0, gt=0.0, le=3600.0)
    detect_interval: int = Field(default=1, ge=1, le=1000)  # infer at most every Nth frame
    # Infer crops around what moved (at least the network's input size, overlapping ones merged)
    # instead of the whole frame: a small person far away is seen at full resolution.
    regions: bool = False
    max_regions: int = Field(default=4, ge=1, le=16)
