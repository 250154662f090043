"""The unit that flows from a source through the queue to the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Frame:
    source: str
    seq: int  # per-source sequence number, 0-based, gaps only where frames were dropped
    ts: float  # capture wall-clock time (epoch seconds), for payloads
    captured: float  # capture monotonic time, for latency
    width: int  # original frame size: boxes are reported in these pixels
    height: int
    # What the engine feeds the model, made in the reader thread (off the loop): an ov.Tensor
    # sharing the memory of a [1, H, W, 3] u8 BGR array (the original, or host-resized).
    tensor: Any
    nbytes: int = 0  # size of the pixels held (the queue's memory bound counts it)
    started: float = 0.0  # monotonic time the inference started
    inference: float = 0.0  # seconds the device took
