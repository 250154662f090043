"""``[sources.snapshots]``: the snapshots feature's settings."""

from __future__ import annotations

from pydantic import Field, field_validator

from streamd.config_objects import Strict, usable_directory


class SnapshotConfig(Strict):
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
