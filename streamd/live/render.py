"""A picture with what streamd saw drawn on it, as JPEG: resized first (``h=``), then drawn at
that size, so a small view costs a small frame's work. Runs off the event loop."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from streamd.config import SourceConfig
from streamd.geometry import anchor, inside, to_pixels
from streamd.live.view import Seen
from streamd.types import Box, Picture

BOX = (0, 220, 0)  # BGR
ZONE = (255, 160, 0)
OCCUPIED = (0, 140, 255)
LINE = (255, 0, 255)
MASK = (80, 80, 80)
MOTION = (0, 0, 255)
REGION = (0, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Overlays:
    bbox: bool = False
    zones: bool = False
    masks: bool = False
    motion: bool = False
    timestamp: bool = False

    @property
    def any(self) -> bool:
        return self.bbox or self.zones or self.masks or self.motion or self.timestamp


def render(
    picture: Picture, seen: Seen | None, source: SourceConfig, overlays: Overlays, height: int | None, quality: int
) -> bytes:
    image = picture.image
    full_h, full_w = image.shape[:2]
    scale = 1.0
    if height is not None and height != full_h:
        scale = height / full_h
        canvas = cv2.resize(image, (max(1, round(full_w * scale)), height), interpolation=cv2.INTER_AREA)
    else:
        canvas = image.copy() if overlays.any else image
    thick = max(2, round(canvas.shape[0] / 360))
    objects = _objects(seen)
    if overlays.masks:
        _masks(canvas, source, full_w, full_h, scale)
    if overlays.zones:
        _zones(canvas, source, objects, full_w, full_h, scale, thick)
    if overlays.motion:
        for x1, y1, x2, y2 in picture.motion:
            _rect(canvas, (x1, y1, x2, y2), scale, MOTION, thick)
        for x, y, w, h in picture.regions:
            _rect(canvas, (x, y, x + w, y + h), scale, REGION, thick)
    if overlays.bbox:
        for _, caption, box in objects:
            _rect(canvas, box, scale, BOX, thick)
            _text(canvas, caption, (box[0] * scale, box[1] * scale - 4 * thick), BOX, thick)
    if overlays.timestamp:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(picture.ts))
        _text(canvas, f"{stamp}  #{picture.seq}", (8 * thick, 20 * thick), (255, 255, 255), thick)
    ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return jpeg.tobytes()


def _objects(seen: Seen | None) -> list[tuple[str, str, Box]]:
    """(label, caption, box) per object: tracks with their ids where the source tracks."""
    if seen is None:
        return []
    if seen.tracks:
        return [(t.label, f"{t.label} {t.score:.2f} #{t.id}", t.box) for t in seen.tracks]
    return [(d.label, f"{d.label} {d.score:.2f}", d.box) for d in seen.detections]


def _rect(canvas: np.ndarray, box: Box, scale: float, colour: tuple[int, int, int], thick: int) -> None:
    x1, y1, x2, y2 = (round(v * scale) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thick)


def _text(canvas: np.ndarray, text: str, at: tuple[float, float], colour: tuple[int, int, int], thick: int) -> None:
    x, y = round(at[0]), max(round(at[1]), 12 * thick)
    size = 0.45 * thick
    cv2.putText(canvas, text, (x, y), FONT, size, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, (x, y), FONT, size, colour, thick, cv2.LINE_AA)


def _masks(canvas: np.ndarray, source: SourceConfig, width: int, height: int, scale: float) -> None:
    polygons = list(source.object_masks) + (list(source.motion.masks) if source.motion is not None else [])
    if not polygons:
        return
    shade = canvas.copy()
    for polygon in polygons:
        points = (to_pixels(polygon, width, height) * scale).round().astype(np.int32)
        cv2.fillPoly(shade, [points], MASK)
    cv2.addWeighted(shade, 0.6, canvas, 0.4, 0, dst=canvas)


def _zones(
    canvas: np.ndarray,
    source: SourceConfig,
    objects: list[tuple[str, str, Box]],
    width: int,
    height: int,
    scale: float,
    thick: int,
) -> None:
    for zone in source.zones:
        polygon = to_pixels(zone.polygon, width, height)
        labels = set(zone.labels)
        occupied = any(inside(polygon, anchor(box)) for label, _, box in objects if not labels or label in labels)
        colour = OCCUPIED if occupied else ZONE
        points = (polygon * scale).round().astype(np.int32)
        cv2.polylines(canvas, [points], True, colour, thick * (2 if occupied else 1))
        _text(canvas, zone.name, (float(points[:, 0].min()) + 4, float(points[:, 1].min()) + 14 * thick), colour, thick)
    for line in source.lines:
        ends = (to_pixels(line.points, width, height) * scale).round().astype(np.int32)
        cv2.line(canvas, tuple(ends[0]), tuple(ends[1]), LINE, thick * 2)
        _text(canvas, line.name, (float(ends[0][0]), float(ends[0][1]) - 4), LINE, thick)
