"""What flows through the pipeline: the leaf module everything else imports, and that imports
nothing of streamd (so the tracker, the queue and the sinks never pull in OpenVINO or OpenCV).

sources/ make :class:`Frame` s -> queue.py -> inference/ turns each into a :class:`Result` ->
the stages in pipeline.py (tracking, presence, payload, MQTT) see every Result in capture order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in the original frame's pixels


@dataclass(slots=True)
class Region:
    """A crop of the frame the model sees on its own (motion regions): ``x, y, width, height`` in
    the frame's pixels, ``tensor`` the crop resized to the network's input."""

    x: int
    y: int
    width: int
    height: int
    tensor: Any


@dataclass(slots=True)
class Frame:
    source: str
    seq: int  # per-source sequence number, 0-based, gaps only where frames were dropped
    ts: float  # capture wall-clock time (epoch seconds), for payloads
    captured: float  # capture monotonic time, for latency
    width: int  # original frame size: boxes are reported in these pixels
    height: int
    # What the engine feeds the model, made in the reader thread (off the loop): an ov.Tensor
    # sharing the memory of a [1, H, W, 3] u8 array (the original, or host-resized).
    tensor: Any
    nbytes: int = 0  # size of the pixels held (the queue's memory bound counts it)
    # The decoded BGR frame itself, kept only for sources that take snapshots.
    image: np.ndarray | None = None
    skipped: str | None = None  # why it is not inferred (no_motion, interval); tensor is None then
    # Motion regions: the model sees these crops instead of the whole frame (tensor is None).
    regions: list[Region] | None = None
    started: float = 0.0  # monotonic time the inference started
    inference: float = 0.0  # seconds the device took


@dataclass(frozen=True, slots=True)
class Picture:
    """A decoded frame as a live view shows it: the full-size BGR image, with what the motion
    gate saw in it (moving areas, the crops it sent the detector)."""

    source: str
    seq: int
    ts: float
    image: np.ndarray
    skipped: str | None = None
    motion: tuple[Box, ...] = ()
    regions: tuple[tuple[int, int, int, int], ...] = ()  # x, y, width, height


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: Box

    def as_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, 4),
            "box": [round(v, 1) for v in self.box],
        }


@dataclass(frozen=True, slots=True)
class TrackedObject:
    """A confirmed track as the tracking stage leaves it on the Result for the stages after it."""

    id: int
    label: str
    score: float  # of the detection matched in this frame (the last one otherwise)
    box: Box  # that detection's box
    matched: bool  # seen in this frame (not only predicted)
    stationary: bool
    zones: tuple[str, ...] = ()  # the zones it is in now (debounced, as its enter/exit events say)
    crossed: tuple[str, ...] = ()  # the lines it has crossed so far
    first_seen: float = 0.0  # epoch seconds
    score_max: float = 0.0


@dataclass(slots=True)
class Result:
    """One inferred frame, handed down the stages in its source's capture order. Stages may
    narrow ``detections`` (filters) and fill ``tracks`` (tracking) for the ones after them."""

    frame: Frame
    detections: list[Detection]
    model: str  # the model's name, for payloads
    device: str  # where it ran
    tracks: list[TrackedObject] = field(default_factory=list)

    @property
    def skipped(self) -> str | None:
        """Why the frame was not inferred (motion gating); its detections are empty then."""
        return self.frame.skipped
