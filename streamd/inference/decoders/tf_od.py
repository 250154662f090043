"""TensorFlow Object Detection API graphs (the default SSDLite model): NMS already in the graph."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openvino as ov

from streamd.inference.decoders.base import Decoder, output_index
from streamd.types import Detection


class TfObjectDetectionDecoder(Decoder):
    name = "tf-od"
    default_labels = "coco91"  # class ids are 1-based COCO paper ids: 1 = person
    # Quantised, "add" (class index + 1) turned person (1) into background (0).
    quantize_ignored = ("Postprocessor/.*", "add")

    @classmethod
    def matches(cls, model: ov.Model) -> bool:
        return any(n.startswith("detection_boxes") for o in model.outputs for n in o.get_names())

    def bind(self, outputs: Sequence[ov.Output], input_size: tuple[int, int]) -> None:
        super().bind(outputs, input_size)
        self._boxes = output_index(outputs, "detection_boxes")
        self._scores = output_index(outputs, "detection_scores")
        self._classes = output_index(outputs, "detection_classes")
        self._count = output_index(outputs, "num_detections")

    def decode(self, outputs: Sequence[np.ndarray], width: int, height: int) -> list[Detection]:
        count = int(outputs[self._count].reshape(-1)[0])
        scores = outputs[self._scores].reshape(-1)[:count]
        keep = np.flatnonzero(scores >= self.confidence)
        if keep.size == 0:
            return []
        boxes = outputs[self._boxes].reshape(-1, 4)[keep]  # ymin, xmin, ymax, xmax in [0, 1]
        classes = outputs[self._classes].reshape(-1)[keep].astype(np.int64)
        return [
            self._make(int(c), float(s), x1 * width, y1 * height, x2 * width, y2 * height, width, height)
            for c, s, (y1, x1, y2, x2) in zip(classes, scores[keep], boxes.tolist(), strict=True)
        ]
