"""A ByteTrack-style multi-object tracker, one per source, in numpy.

Why not a library: supervision brings matplotlib and PyAV into a headless daemon, norfair
brings its own filters and rich, and ``lap``/scipy would be added for assignments between a
handful of boxes per camera. ByteTrack's idea fits in this file: Kalman-predicted boxes,
a first association of high-score detections by IoU, a second one of the low-score detections
against the tracks left over (so a person half hidden keeps their id), birth after ``min_hits``
and death after ``max_age`` frames unseen. Matching is greedy by descending IoU, which equals
the optimal assignment except on near-ties, at a few tracks per camera.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from streamd.types import Box, Detection

# Constant-velocity model on (cx, cy, w, h) and their velocities; noise scaled by box size, as in SORT.
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)
SCORE_HISTORY = 10  # scores kept per track for its median


def _to_state(box: Box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dtype=np.float64)


def _to_box(z: np.ndarray) -> Box:
    cx, cy, w, h = (float(v) for v in z[:4])
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def iou_matrix(a: list[Box], b: list[Box]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    aa, bb = np.asarray(a)[:, None, :], np.asarray(b)[None, :, :]
    w = np.clip(np.minimum(aa[..., 2], bb[..., 2]) - np.maximum(aa[..., 0], bb[..., 0]), 0, None)
    h = np.clip(np.minimum(aa[..., 3], bb[..., 3]) - np.maximum(aa[..., 1], bb[..., 1]), 0, None)
    inter = w * h
    area_a = (aa[..., 2] - aa[..., 0]) * (aa[..., 3] - aa[..., 1])
    area_b = (bb[..., 2] - bb[..., 0]) * (bb[..., 3] - bb[..., 1])
    return np.asarray(inter / np.maximum(area_a + area_b - inter, 1e-9))


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        row, col = divmod(int(flat), iou.shape[1])
        if iou[row, col] < threshold:
            break
        if row not in used_rows and col not in used_cols:
            pairs.append((row, col))
            used_rows.add(row)
            used_cols.add(col)
    return pairs


@dataclass
class Track:
    id: int
    label: str
    class_id: int
    mean: np.ndarray
    covariance: np.ndarray
    score: float
    score_max: float
    first_seen: float
    last_seen: float
    first_frame: int
    last_frame: int
    hits: int = 1
    age: int = 0  # frames since last matched
    confirmed: bool = False
    zones: set[str] = field(default_factory=set)
    crossed: set[str] = field(default_factory=set)  # lines
    # The last detection matched to this track, as the model saw it: what an 'end' reports
    # (the Kalman box keeps moving for max_age frames after the object left).
    observed: Box = (0.0, 0.0, 0.0, 0.0)
    scores: deque[float] = field(default_factory=lambda: deque(maxlen=SCORE_HISTORY))
    # Where the object stopped and since when (seconds); stationary once it stayed long enough.
    still_box: Box = (0.0, 0.0, 0.0, 0.0)
    still_since: float = 0.0
    stationary: bool = False

    def __post_init__(self) -> None:
        if self.observed == (0.0, 0.0, 0.0, 0.0):
            self.observed = _to_box(self.mean)
        self.scores.append(self.score)
        self.still_box, self.still_since = self.observed, self.first_seen

    @property
    def median_score(self) -> float:
        """Frigate's 'threshold': the median of the last scores, robust to one lucky frame."""
        return float(np.median(self.scores))

    @property
    def box(self) -> Box:
        return _to_box(self.mean)

    def predict(self) -> None:
        if self.stationary:
            self.mean[4:] = 0.0  # a parked car does not drift away during a detection gap
        w, h = max(self.mean[2], 1.0), max(self.mean[3], 1.0)
        q = np.diag(np.square([w / 20, h / 20, w / 20, h / 20, w / 160, h / 160, w / 160, h / 160]))
        self.mean = _F @ self.mean
        self.covariance = _F @ self.covariance @ _F.T + q
        self.age += 1

    def update(self, detection: Detection, ts: float, frame: int) -> None:
        w, h = max(self.mean[2], 1.0), max(self.mean[3], 1.0)
        r = np.diag(np.square([w / 20, h / 20, w / 20, h / 20]))
        s = _H @ self.covariance @ _H.T + r
        gain = self.covariance @ _H.T @ np.linalg.inv(s)
        self.mean = self.mean + gain @ (_to_state(detection.box) - _H @ self.mean)
        self.covariance = (np.eye(8) - gain @ _H) @ self.covariance
        self.score = detection.score
        self.observed = detection.box
        self.score_max = max(self.score_max, detection.score)
        self.scores.append(detection.score)
        self.last_seen, self.last_frame = ts, frame
        self.hits += 1
        self.age = 0


@dataclass
class TrackerConfig:
    high: float = 0.5  # detections at or above start and extend tracks first
    iou: float = 0.3
    min_hits: int = 3
    max_age: int = 30
    stationary_after: float = 0.0  # seconds without moving; 0: never stationary
    stationary_iou: float = 0.7
    stationary_max_age: int = 300  # frames unseen before a stationary track ends

    def still(self, track: Track, ts: float) -> tuple[bool, bool]:
        """(stopped now, moved again) for a track matched at ``ts``; updates its reference."""
        if not self.stationary_after:
            return False, False
        moved = iou_matrix([track.observed], [track.still_box])[0, 0] < self.stationary_iou
        if moved:
            track.still_box, track.still_since = track.observed, ts
            if track.stationary:
                track.stationary = False
                return False, True
            return False, False
        if not track.stationary and ts - track.still_since >= self.stationary_after:
            track.stationary = True
            return True, False
        return False, False


@dataclass
class Step:
    """What one frame changed: tracks born (confirmed), updated, ended."""

    born: list[Track] = field(default_factory=list)
    active: list[Track] = field(default_factory=list)
    ended: list[Track] = field(default_factory=list)
    stopped: list[Track] = field(default_factory=list)  # became stationary in this frame
    moved: list[Track] = field(default_factory=list)  # was stationary, moves again


class Tracker:
    def __init__(self, config: TrackerConfig, ids: Iterator[int] | None = None) -> None:
        """``ids``: where new track ids come from; shared by the trackers a source has in one run
        (a detect OFF/ON or a reload makes a new tracker), so no id is ever given twice."""
        self.config = config
        self.tracks: list[Track] = []
        self._ids = ids if ids is not None else itertools.count(1)

    def step(self, detections: list[Detection], ts: float, frame: int) -> Step:
        cfg = self.config
        for track in self.tracks:
            track.predict()
        high = [d for d in detections if d.score >= cfg.high]
        low = [d for d in detections if d.score < cfg.high]
        unmatched_tracks = list(range(len(self.tracks)))
        result = Step()
        # First pass: high-score detections against every track (same label only).
        leftover_high = self._associate(high, unmatched_tracks, ts, frame)
        # Second pass: low-score detections keep the remaining tracks alive (ByteTrack's point).
        self._associate(low, unmatched_tracks, ts, frame)
        for detection in leftover_high:
            track = Track(
                next(self._ids),
                detection.label,
                detection.class_id,
                np.concatenate([_to_state(detection.box), np.zeros(4)]),
                np.diag([10.0] * 4 + [1e4] * 4),
                detection.score,
                detection.score,
                ts,
                ts,
                frame,
                frame,
            )
            self.tracks.append(track)
        alive = []
        for track in self.tracks:
            if not track.confirmed and track.hits >= cfg.min_hits:
                track.confirmed = True
                result.born.append(track)
            max_age = cfg.stationary_max_age if track.stationary else cfg.max_age
            if track.age > max_age or (not track.confirmed and track.age > 0):
                if track.confirmed:
                    result.ended.append(track)
                continue
            alive.append(track)
            if track.confirmed and track.age == 0:
                result.active.append(track)
                stopped, moved = cfg.still(track, ts)
                if stopped:
                    result.stopped.append(track)
                elif moved:
                    result.moved.append(track)
        self.tracks = alive
        return result

    def _associate(self, detections: list[Detection], free: list[int], ts: float, frame: int) -> list[Detection]:
        """Match ``detections`` to the tracks indexed by ``free`` (updated in place)."""
        if not detections or not free:
            return list(detections)
        boxes = [self.tracks[i].box for i in free]
        iou = iou_matrix(boxes, [d.box for d in detections])
        for row, track_index in enumerate(free):
            for col, det in enumerate(detections):
                if det.label != self.tracks[track_index].label:
                    iou[row, col] = 0.0
        matched = greedy_match(iou, self.config.iou)
        for row, col in matched:
            self.tracks[free[row]].update(detections[col], ts, frame)
        taken_rows = {row for row, _ in matched}
        taken_cols = {col for _, col in matched}
        free[:] = [t for k, t in enumerate(free) if k not in taken_rows]
        return [d for j, d in enumerate(detections) if j not in taken_cols]

    def finish(self) -> list[Track]:
        """The source ended: every confirmed track ends now."""
        ended = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return ended
