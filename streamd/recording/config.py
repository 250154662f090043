"""``[sources.recording]``: the recording feature's settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from streamd.config_objects import Strict, state_directory, usable_directory


class RecordingConfig(Strict):
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
