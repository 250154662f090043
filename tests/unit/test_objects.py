"""Filters, snapshot candidates, the control topics' parser and stationary tracks, without a model."""

from __future__ import annotations

import numpy as np
import pytest

from streamd.filters.config import ObjectFilter
from streamd.filters.objects import merged, rejection
from streamd.snapshots.config import SnapshotConfig
from streamd.snapshots.keeper import SnapshotKeeper
from streamd.tracking.tracker import Tracker, TrackerConfig
from streamd.types import Detection

FRAME_AREA = 640.0 * 480.0


def person(box: tuple[float, float, float, float], score: float = 0.9) -> Detection:
    return Detection("person", 1, score, box)


@pytest.mark.parametrize(
    ("rule", "box", "score", "reason"),
    [
        (ObjectFilter(min_score=0.95), (0, 0, 100, 200), 0.9, "min_score"),
        (ObjectFilter(min_area=0.1), (0, 0, 100, 200), 0.9, "min_area"),  # 20,000 px < 30,720
        (ObjectFilter(min_area=0.05), (0, 0, 100, 200), 0.9, None),  # 20,000 px >= 15,360
        (ObjectFilter(min_area=25_000), (0, 0, 100, 200), 0.9, "min_area"),  # pixels above 1.0
        (ObjectFilter(max_area=10_000), (0, 0, 100, 200), 0.9, "max_area"),
        (ObjectFilter(max_area=1.0), (0, 0, 640, 480), 0.9, None),  # the whole frame is allowed
        (ObjectFilter(min_ratio=0.6), (0, 0, 100, 200), 0.9, "min_ratio"),  # 0.5
        (ObjectFilter(max_ratio=0.4), (0, 0, 100, 200), 0.9, "max_ratio"),
        (ObjectFilter(min_ratio=0.4, max_ratio=0.6), (0, 0, 100, 200), 0.9, None),
    ],
)
def test_each_rule_removes_what_it_should_and_keeps_the_rest(
    rule: ObjectFilter, box: tuple[float, float, float, float], score: float, reason: str | None
) -> None:
    assert rejection(person(box, score), rule, FRAME_AREA) == reason


def test_a_zone_replaces_only_the_keys_it_sets() -> None:
    source = ObjectFilter(min_score=0.5, max_area=0.05)
    zone = ObjectFilter(max_area=0.5)
    both = merged(source, zone)
    assert both.min_score == 0.5 and both.max_area == 0.5
    assert merged(None, zone) is zone


def test_inverted_ranges_are_config_errors() -> None:
    with pytest.raises(ValueError, match="max_area"):
        ObjectFilter(min_area=500, max_area=100)
    with pytest.raises(ValueError, match="max_ratio"):
        ObjectFilter(min_ratio=1.0, max_ratio=0.5)


def test_the_best_snapshot_is_the_highest_score_the_edge_does_not_cut() -> None:
    keeper = SnapshotKeeper(SnapshotConfig(margin=0.0))
    image = np.arange(480 * 640 * 3, dtype=np.uint32).astype(np.uint8).reshape(480, 640, 3)
    assert keeper.observe(image, 1, 1.0, 7, "person", 0.99, (0, 50, 100, 250))  # cut by the left edge
    assert keeper.observe(image, 2, 2.0, 7, "person", 0.6, (100, 50, 200, 250)), "uncut beats cut"
    assert not keeper.observe(image, 3, 3.0, 7, "person", 0.99, (0, 50, 100, 250)), "cut never beats uncut"
    assert not keeper.observe(image, 4, 4.0, 7, "person", 0.5, (110, 50, 210, 250))
    assert keeper.observe(image, 5, 5.0, 7, "person", 0.8, (120, 60, 220, 260))
    best = keeper.take(7)
    assert best is not None and best.frame == 5 and best.score == 0.8
    assert best.crop.shape == (200, 100, 3) and np.array_equal(best.crop, image[60:260, 120:220])
    assert best.crop.base is None, "a copy: the frame's memory is not held"
    assert keeper.take(7) is None and not keeper.best, "one candidate per live track, gone with it"


def test_a_track_that_stops_moving_becomes_stationary_and_survives_gaps() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, max_age=2, stationary_after=2.0, stationary_max_age=10))
    box = (100.0, 100.0, 200.0, 300.0)
    stopped_at = None
    for frame in range(45):
        ts = frame * 0.1
        step = tracker.step([person(box)] if not 25 <= frame < 33 else [], ts, frame)
        if step.stopped:
            stopped_at = ts
        assert not step.ended, f"a gap of 8 frames (> max_age 2) ended a stationary track at frame {frame}"
    assert stopped_at is not None and 2.0 <= stopped_at <= 2.15
    track = tracker.tracks[0]
    assert track.stationary and track.id == 1
    step = tracker.step([person((130.0, 100.0, 230.0, 300.0))], 4.5, 45)  # IoU 0.54 with where it stood
    assert step.moved == [track] and not track.stationary, "it walks off: active again, same id"
