"""The unit that flows from a source through the queue to the engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Frame:
    source: str
    seq: int  # per-source sequence number, 0-based, gaps only where frames were dropped
    ts: float  # capture wall-clock time (epoch seconds), for payloads
    captured: float  # capture monotonic time, for latency
    width: int  # original frame size: boxes are reported in these pixels
    height: int
    tensor: np.ndarray  # [1, H, W, 3] u8 BGR: the original, or host-resized to the network's size
