"""Which frame of a track becomes its snapshot: the highest score whose box the frame's edge does
not cut. Only a candidate that beats the current best is copied (the crop with its margin, and
the whole frame when ``full_frame`` is on), so memory is one candidate per live track."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamd.snapshots.config import SnapshotConfig
from streamd.types import Box

EDGE = 2.0  # pixels: a box this close to the frame's edge is cut by it


@dataclass
class Candidate:
    track_id: int
    label: str
    score: float
    box: Box  # in frame pixels
    frame: int
    ts: float
    cut: bool
    crop: np.ndarray  # BGR, a copy
    crop_origin: tuple[int, int]  # where the crop's top-left corner lies in the frame
    full: np.ndarray | None = None  # the whole frame, a copy (full_frame only)


def is_cut(box: Box, width: int, height: int) -> bool:
    x1, y1, x2, y2 = box
    return x1 <= EDGE or y1 <= EDGE or x2 >= width - EDGE or y2 >= height - EDGE


def crop_bounds(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin / 2, (y2 - y1) * margin / 2
    left, top = max(int(x1 - mx), 0), max(int(y1 - my), 0)
    right, bottom = min(int(np.ceil(x2 + mx)), width), min(int(np.ceil(y2 + my)), height)
    return left, top, max(right, left + 1), max(bottom, top + 1)


class SnapshotKeeper:
    def __init__(self, config: SnapshotConfig) -> None:
        self.config = config
        self.best: dict[int, Candidate] = {}

    def observe(
        self, image: np.ndarray, frame: int, ts: float, track_id: int, label: str, score: float, box: Box
    ) -> bool:
        """Keep this observation if it beats the track's best; returns whether it did."""
        if self.config.labels and label not in self.config.labels:
            return False
        height, width = image.shape[:2]
        cut = is_cut(box, width, height)
        current = self.best.get(track_id)
        if current is not None and ((cut and not current.cut) or (cut == current.cut and score <= current.score)):
            return False  # an uncut box beats a cut one; otherwise the higher score wins
        left, top, right, bottom = crop_bounds(box, self.config.margin, width, height)
        self.best[track_id] = Candidate(
            track_id,
            label,
            score,
            box,
            frame,
            ts,
            cut,
            image[top:bottom, left:right].copy(),
            (left, top),
            image.copy() if self.config.full_frame else None,
        )
        return True

    def take(self, track_id: int) -> Candidate | None:
        return self.best.pop(track_id, None)

    def clear(self) -> None:
        self.best.clear()
