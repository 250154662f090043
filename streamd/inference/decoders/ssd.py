"""Caffe/OMZ-style SSD with a ``DetectionOutput`` layer: one [1, 1, N, 7] output."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openvino as ov

from streamd.inference.decoders.base import Decoder, Preprocessing
from streamd.types import Detection


class SsdDecoder(Decoder):
    name = "ssd"
    default_labels = "coco91"
    preprocessing = Preprocessing(color_order="BGR")

    @classmethod
    def matches(cls, model: ov.Model) -> bool:
        if len(model.outputs) != 1:
            return False
        shape = model.outputs[0].get_partial_shape()
        static: bool = (
            shape.rank.is_static and shape.rank.get_length() == 4 and shape[3].is_static and shape[3].get_length() == 7
        )
        return static

    def decode(self, outputs: Sequence[np.ndarray], width: int, height: int) -> list[Detection]:
        rows = outputs[0].reshape(-1, 7)
        end = np.flatnonzero(rows[:, 0] < 0)  # image_id -1 ends the valid rows
        rows = rows[: end[0]] if end.size else rows
        rows = rows[rows[:, 2] >= self.confidence]
        return [
            self._make(int(label), float(score), x1 * width, y1 * height, x2 * width, y2 * height, width, height)
            for _, label, score, x1, y1, x2, y2 in rows.tolist()
        ]
