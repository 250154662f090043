"""Polygons in frame pixels, shared by the motion gate (its masks), the object filters (masks)
and tracking (zones, lines): a neutral module, so none of them imports another's feature."""

from __future__ import annotations

import cv2
import numpy as np

Point = tuple[float, float]


def to_pixels(points: list[Point] | tuple[Point, ...], width: int, height: int) -> np.ndarray:
    """All coordinates within 0..1: fractions of the frame; otherwise pixels."""
    array = np.asarray(points, dtype=np.float32)
    if float(array.max()) <= 1.0:
        array = array * np.array([width, height], dtype=np.float32)
    return array


def anchor(box: tuple[float, float, float, float]) -> Point:
    """Where an object stands: the bottom centre of its box (feet, wheels)."""
    return ((box[0] + box[2]) / 2, box[3])


def inside(polygon: np.ndarray, point: Point) -> bool:
    return cv2.pointPolygonTest(polygon.reshape(-1, 1, 2), point, False) >= 0
