"""JPEG encoding, run in a worker thread (never on the loop). OpenCV's wheels encode with
libjpeg-turbo; ``streamd bench --snapshots`` measures what one snapshot costs."""

from __future__ import annotations

import cv2
import numpy as np

from streamd.snapshots.keeper import Candidate


def jpeg(image: np.ndarray, quality: int, max_width: int) -> bytes:
    if image.shape[1] > max_width:
        height = max(1, round(image.shape[0] * max_width / image.shape[1]))
        image = cv2.resize(image, (max_width, height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


def encode(candidate: Candidate, quality: int, max_width: int) -> tuple[bytes, bytes | None]:
    """The crop, and the full frame with the box drawn (when kept)."""
    crop = jpeg(candidate.crop, quality, max_width)
    full = None
    if candidate.full is not None:
        frame = candidate.full
        x1, y1, x2, y2 = (round(v) for v in candidate.box)
        thickness = max(2, frame.shape[1] // 320)
        cv2.rectangle(frame, (x1, y1), (x2, y2), (0, 200, 0), thickness)
        full = jpeg(frame, quality, max(max_width, 1280))
    return crop, full
