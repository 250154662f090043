"""The motion detector and gate on synthetic frames: noise is not motion, a moving block is, where
it is; masks mute it; keep-alive and detect_interval."""

from __future__ import annotations

import numpy as np

from streamd.sources.motion import MotionDetector, MotionGate
from streamd.sources.motion_config import MotionConfig

RNG = np.random.default_rng(1)
SCENE = RNG.integers(60, 200, (480, 640, 3), dtype=np.uint8)


def noisy(frame: np.ndarray) -> np.ndarray:
    return np.clip(frame + RNG.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)


def with_block(x: int) -> np.ndarray:
    frame = SCENE.copy()
    frame[200:300, x : x + 80] = 255
    return noisy(frame)


def test_noise_is_not_motion_and_a_moving_block_is_found_where_it_is() -> None:
    detector = MotionDetector(MotionConfig())
    assert detector.detect(noisy(SCENE)) == [(0.0, 0.0, 640.0, 480.0)], "the first frame: all of it is new"
    for _ in range(10):
        assert detector.detect(noisy(SCENE)) == []
    boxes = detector.detect(with_block(300))
    assert len(boxes) == 1
    x1, y1, x2, y2 = boxes[0]
    assert 280 <= x1 <= 305 and 375 <= x2 <= 400 and 180 <= y1 <= 205 and 295 <= y2 <= 320, boxes


def test_a_mask_mutes_motion_inside_it_only() -> None:
    detector = MotionDetector(MotionConfig(masks=[[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]]))
    detector.detect(noisy(SCENE))
    assert detector.detect(with_block(100)) == [], "inside the mask"
    assert detector.detect(with_block(400)), "outside it"


def test_the_gate_keeps_an_object_seen_every_min_interval_and_honours_detect_interval() -> None:
    gate = MotionGate(MotionConfig(min_interval=1.0))
    assert gate.decide(noisy(SCENE), 0.0) is None, "the first frame goes (nothing to compare with yet)"
    assert gate.decide(noisy(SCENE), 0.1) == "no_motion"
    gate.objects = 1  # the loop saw something
    assert gate.decide(noisy(SCENE), 0.5) == "no_motion"
    assert gate.decide(noisy(SCENE), 1.05) is None, "keep-alive: a still object is looked at again"
    assert gate.decide(noisy(SCENE), 1.2) == "no_motion"
    every_third = MotionGate(MotionConfig(detect_interval=3))
    decisions = [every_third.decide(with_block(10 + 20 * i), i / 15) for i in range(7)]
    assert decisions == [None, "interval", "interval", None, "interval", "interval", None]
