"""Detections from motion regions back in the frame: each region's boxes moved by its offset,
then duplicates where regions overlap removed (NMS per label)."""

from __future__ import annotations

import cv2
import numpy as np

from streamd.types import Detection, Region

OVERLAP_IOU = 0.5


def shift(detections: list[Detection], region: Region) -> list[Detection]:
    dx, dy = region.x, region.y
    return [
        Detection(d.label, d.class_id, d.score, (d.box[0] + dx, d.box[1] + dy, d.box[2] + dx, d.box[3] + dy))
        for d in detections
    ]


def merge(parts: list[list[Detection]]) -> list[Detection]:
    found = [d for part in parts for d in part]
    if len(parts) < 2 or len(found) < 2:
        return found
    kept: list[Detection] = []
    for label in {d.label for d in found}:
        same = [d for d in found if d.label == label]
        boxes = [[d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]] for d in same]
        keep = cv2.dnn.NMSBoxes(boxes, [d.score for d in same], 0.0, OVERLAP_IOU)
        kept += [same[int(i)] for i in np.asarray(keep).reshape(-1)]
    return sorted(kept, key=lambda d: -d.score)
