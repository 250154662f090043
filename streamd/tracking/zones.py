"""Zones (polygons) and lines in frame pixels; fractions in 0..1 scale with the frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamd.geometry import Point, inside


@dataclass
class Zone:
    name: str
    polygon: np.ndarray
    labels: frozenset[str]
    min_frames: int
    # per track id: (inside now?, consecutive frames that disagree with the debounced state)
    state: dict[int, tuple[bool, int]] = field(default_factory=dict)

    def applies(self, label: str) -> bool:
        return not self.labels or label in self.labels

    def contains(self, point: Point) -> bool:
        return inside(self.polygon, point)

    def observe(self, track_id: int, point: Point) -> str | None:
        """Debounced membership: 'enter' or 'exit' once ``min_frames`` frames agree."""
        inside_now = self.contains(point)
        inside, streak = self.state.get(track_id, (False, 0))
        if inside_now == inside:
            self.state[track_id] = (inside, 0)
            return None
        streak += 1
        if streak >= self.min_frames:
            self.state[track_id] = (inside_now, 0)
            return "enter" if inside_now else "exit"
        self.state[track_id] = (inside, streak)
        return None

    def forget(self, track_id: int) -> bool:
        """The track ended; returns whether it was inside (so an exit is due)."""
        inside, _ = self.state.pop(track_id, (False, 0))
        return inside


def _side(a: np.ndarray, b: np.ndarray, p: Point) -> float:
    return float((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))


@dataclass
class Line:
    """A directed segment a -> b. Crossing from its right to its left (as drawn on the image,
    y pointing down) counts as 'in', the other way as 'out'."""

    name: str
    a: np.ndarray
    b: np.ndarray
    labels: frozenset[str]
    counts: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})

    def applies(self, label: str) -> bool:
        return not self.labels or label in self.labels

    def crossing(self, before: Point, after: Point) -> str | None:
        s0, s1 = _side(self.a, self.b, before), _side(self.a, self.b, after)
        if s0 == 0 or s1 == 0 or (s0 > 0) == (s1 > 0):
            return None
        # The step must pass between a and b, not beyond the segment's ends.
        p, q = np.asarray(before), np.asarray(after)
        t0, t1 = _side(p, q, tuple(self.a)), _side(p, q, tuple(self.b))
        if (t0 > 0) == (t1 > 0):
            return None
        direction = "in" if s0 > 0 else "out"
        self.counts[direction] += 1
        return direction
