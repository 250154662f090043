"""Tracker, zone and line rules on hand-made detections."""

from __future__ import annotations

import json

import numpy as np

from streamd.config import SourceConfig
from streamd.metrics import Metrics
from streamd.timestamps import rfc3339
from streamd.tracking.config import TrackingConfig
from streamd.tracking.events import SourceEvents
from streamd.tracking.metrics import TrackingMetrics
from streamd.tracking.tracker import Tracker, TrackerConfig
from streamd.tracking.zones import Line, Zone
from streamd.types import Detection


def person(x: float, score: float = 0.9) -> Detection:
    return Detection("person", 1, score, (x, 100.0, x + 80.0, 300.0))


def test_occlusion_shorter_than_max_age_keeps_the_id_and_low_scores_extend_tracks() -> None:
    tracker = Tracker(TrackerConfig(min_hits=2, max_age=5))
    ids = []
    for frame in range(30):
        x = 10.0 * frame
        if 10 <= frame < 14:
            detections = []  # hidden
        elif 20 <= frame < 25:
            detections = [person(x, score=0.3)]  # half hidden: only a weak detection
        else:
            detections = [person(x)]
        step = tracker.step(detections, float(frame), frame)
        ids += [t.id for t in step.active]
        assert not step.ended
    assert set(ids) == {1}
    assert len(tracker.finish()) == 1


def test_a_track_ends_after_max_age_and_a_new_person_gets_a_new_id() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, max_age=3))
    tracker.step([person(0)], 0.0, 0)
    ended = []
    for frame in range(1, 6):
        ended += tracker.step([], float(frame), frame).ended
    assert [t.id for t in ended] == [1]
    assert [t.id for t in tracker.step([person(0)], 6.0, 6).born] == [2]


def test_zone_membership_is_debounced() -> None:
    zone = Zone("z", np.array([[0, 0], [100, 0], [100, 100], [0, 100]], dtype=np.float32), frozenset(), 3)
    seen = [
        zone.observe(1, p) for p in [(50, 50), (50, 50), (50, 50), (150, 50), (50, 50), (150, 50), (150, 50), (150, 50)]
    ]
    assert seen == [None, None, "enter", None, None, None, None, "exit"]


def test_line_counts_only_crossings_between_its_ends() -> None:
    line = Line("l", np.array([100.0, 0.0]), np.array([100.0, 200.0]), frozenset())
    assert line.crossing((50, 100), (150, 100)) == "in"
    assert line.crossing((150, 100), (50, 100)) == "out"
    assert line.crossing((50, 300), (150, 300)) is None  # passes below the segment
    assert line.crossing((50, 100), (60, 100)) is None
    assert line.counts == {"in": 1, "out": 1}


def test_end_reports_the_last_observed_box_inside_the_frame_not_the_prediction() -> None:
    published: list[tuple[str, str, bool]] = []
    config = SourceConfig(name="cam", uri="a.mp4", tracking=TrackingConfig(min_hits=2, max_age=30))
    metrics = Metrics()
    events = SourceEvents(
        config, lambda *m: published.append(m), TrackingMetrics(metrics.registry, metrics.detections_filtered)
    )
    # Walking right 40 px a frame, leaving a 640-wide frame at frame 13; then nothing for max_age.
    last = None
    for frame in range(45):
        x = 40.0 * frame
        detections = [Detection("person", 1, 0.9, (x, 100.0, min(x + 80.0, 640.0), 300.0))] if x < 560 else []
        if detections:
            last = (frame, detections[0].box)
        events.on_frame(frame, 1000.0 + frame / 15, 640, 480, detections)
    ended = [json.loads(p) for t, p, _ in published if t == "events" and json.loads(p)["type"] == "end"]
    assert len(ended) == 1
    assert last is not None
    assert ended[0]["box"] == [round(v, 1) for v in last[1]]
    assert ended[0]["box"][0] >= 0 and ended[0]["box"][2] <= 640
    assert ended[0]["last_seen"] == rfc3339(1000.0 + last[0] / 15)
