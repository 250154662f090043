"""Motion gating, in the reader thread: a frame where nothing moved is not inferred.

Frame differencing on a small grey copy (``frame_height`` rows, blurred) against a running-average
background (``alpha``), thresholded, dilated; moving blobs smaller than ``contour_area`` and motion
inside ``masks`` are ignored; the same approach as Frigate's motion detector. The gate then says
why a frame is skipped, or lets it through: on motion, and, while objects are present (the
loop tells it, :attr:`MotionGate.objects`), at least every ``min_interval`` seconds, so an object
that stands still is still seen. ``detect_interval`` lets at most every Nth frame through.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamd.geometry import to_pixels
from streamd.images import Decoded, decoded
from streamd.sources.motion_config import MotionConfig
from streamd.stages import SourceHandler
from streamd.types import Box, Result


class MotionDetector:
    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._background: np.ndarray | None = None
        self._mask: np.ndarray | None = None  # 0 where motion is ignored, in the small frame
        self._scale = 1.0
        self._kernel = np.ones((3, 3), np.uint8)

    def _setup(self, width: int, height: int) -> tuple[int, int]:
        small_h = min(self.config.frame_height, height)
        self._scale = height / small_h
        small_w = max(1, round(width / self._scale))
        self._mask = None
        if self.config.masks:
            mask = np.full((small_h, small_w), 255, np.uint8)
            for polygon in self.config.masks:
                points = to_pixels(polygon, width, height) / self._scale
                cv2.fillPoly(mask, [points.round().astype(np.int32)], 0)
            self._mask = mask
        return small_w, small_h

    def detect(self, picture: np.ndarray | Decoded) -> list[Box]:
        """Moving areas, as boxes in the frame's pixels (empty: nothing moved). Only a small grey
        picture is made of the frame (from the decoder's luma plane where there is one)."""
        image = decoded(picture)
        height, width = image.height, image.width
        if self._background is None or round(width / self._scale) != self._background.shape[1]:
            small_w, small_h = self._setup(width, height)
            self._background = None
        else:
            small_h, small_w = self._background.shape
        grey = cv2.GaussianBlur(image.grey((small_w, small_h)), (3, 3), 0).astype(np.float32)
        if self._background is None:
            # Nothing to compare with: the whole frame counts as moving, so what is already in
            # the scene at start (a parked car, someone sitting) is seen once and tracked.
            self._background = grey
            return [(0.0, 0.0, float(width), float(height))]
        delta = cv2.absdiff(grey, self._background)
        cv2.accumulateWeighted(grey, self._background, self.config.alpha)
        moving: np.ndarray = np.where(delta > self.config.threshold, 255, 0).astype(np.uint8)
        if self._mask is not None:
            moving = cv2.bitwise_and(moving, self._mask)
        dilated = cv2.dilate(moving, self._kernel, iterations=2)
        contours, _ = cv2.findContours(dilated, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.config.contour_area
        if min_area <= 1.0:
            min_area *= small_w * small_h
        boxes: list[Box] = []
        for contour in contours:
            if cv2.contourArea(contour) >= min_area:
                x, y, w, h = cv2.boundingRect(contour)
                s = self._scale
                boxes.append((x * s, y * s, min((x + w) * s, width), min((y + h) * s, height)))
        return boxes


class MotionGate:
    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self.detector = MotionDetector(config)
        self.objects = 0  # set by the loop after each inferred frame: tracks (or detections) present
        self.boxes: list[Box] = []
        self._last_inferred = float("-inf")
        self._since_inferred = config.detect_interval  # the first frame may go

    def decide(self, image: np.ndarray | Decoded, now: float) -> str | None:
        """None: infer this frame; otherwise why not (``no_motion``, ``interval``). The moving
        areas stay in :attr:`boxes` (for regions)."""
        self.boxes = self.detector.detect(image)
        moving = bool(self.boxes)
        self._since_inferred += 1
        if self._since_inferred < self.config.detect_interval:
            return "interval"
        keep_alive = self.objects > 0 and now - self._last_inferred >= self.config.min_interval
        if not moving and not keep_alive:
            return "no_motion"
        self._last_inferred = now
        self._since_inferred = 0
        return None


def regions(
    boxes: list[Box], frame_size: tuple[int, int], net_size: tuple[int, int], limit: int, margin: float = 0.25
) -> list[tuple[int, int, int, int]] | None:
    """Crops (x, y, w, h) covering the moving ``boxes``: each box plus ``margin``, grown to at
    least the network's size and its aspect ratio, kept inside the frame; overlapping crops are
    merged until none overlap. None when the whole frame is the better choice (no motion, or the
    crops would cover most of it, or more than ``limit`` remain)."""
    width, height = frame_size
    net_w, net_h = net_size
    if not boxes or (width <= net_w and height <= net_h):
        return None

    def fit(x1: float, y1: float, x2: float, y2: float, grow: float = 0.0) -> tuple[float, float, float, float]:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        w, h = (x2 - x1) * (1 + grow), (y2 - y1) * (1 + grow)
        scale = max(w / net_w, h / net_h, 1.0)
        w, h = min(net_w * scale, width), min(net_h * scale, height)
        x = min(max(cx - w / 2, 0.0), width - w)
        y = min(max(cy - h / 2, 0.0), height - h)
        return x, y, x + w, y + h

    crops = [fit(*box, grow=margin) for box in boxes]
    merged = True
    while merged and len(crops) > 1:
        merged = False
        for i in range(len(crops)):
            for j in range(i + 1, len(crops)):
                a, b = crops[i], crops[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    crops[i] = fit(min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del crops[j]
                    merged = True
                    break
            if merged:
                break
    area = sum((c[2] - c[0]) * (c[3] - c[1]) for c in crops)
    if len(crops) > limit or area >= 0.6 * width * height:
        return None
    return [(round(c[0]), round(c[1]), round(c[2] - c[0]), round(c[3] - c[1])) for c in crops]


class MotionFeedback(SourceHandler):
    """The last handler of a motion-gated source's route: tells its gate whether objects are
    present (tracks, or detections where there is no tracking), which keeps ``min_interval``
    inference going."""

    def __init__(self, gate: MotionGate) -> None:
        self._gate = gate

    def on_result(self, result: Result) -> None:
        if result.skipped is None:
            self._gate.objects = max(len(result.tracks), len(result.detections))  # read by the reader thread
