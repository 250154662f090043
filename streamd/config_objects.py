"""What every feature's config model shares: the strict base, names that go into topics,
polygons, directories. Each feature's own model lives in its package (``tracking/config.py``,
``snapshots/config.py``...); :mod:`config` composes them into a source's settings."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

SOURCE_NAME = re.compile(r"^[a-z0-9_-]+$")
# Names go into MQTT topics (at most 65,535 bytes, and brokers cap far lower), metric labels and
# the buffer's file name (255 bytes): short limits, checked here rather than by a refused publish.
MAX_NAME = 64

Coordinate = Annotated[float, Field(ge=0.0)]
Polygon = Annotated[list[tuple[Coordinate, Coordinate]], Field(min_length=3)]  # pixels, or 0..1 fractions


class Strict(BaseModel):
    """Every config model's base: unknown keys refused, frozen, and no inf or nan anywhere (every
    number has a range an operator can reason about)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def state_directory() -> Path:
    """Where streamd keeps what must outlive a restart: systemd's StateDirectory, else the XDG one."""
    base = os.environ.get("STATE_DIRECTORY") or os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(base.split(":")[0]) / ("" if os.environ.get("STATE_DIRECTORY") else "streamd")


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
