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
        self._threshold = float(np.float32(self.confidence))  # compared as float32, as numpy compared it

    def decode(self, outputs: Sequence[np.ndarray], width: int, height: int) -> list[Detection]:
        # In Python, not numpy: for a handful of detections numpy's per-call overhead was most of
        # the cost (9 us a frame on the event loop, now 4).
        count = int(outputs[self._count].reshape(-1)[0])
        scores = outputs[self._scores].reshape(-1)[:count].tolist()
        keep = [index for index, score in enumerate(scores) if score >= self._threshold]
        if not keep:
            return []
        last = keep[-1] + 1  # the graph sorts by score: what is kept comes first
        boxes = outputs[self._boxes].reshape(-1, 4)[:last].tolist()  # ymin, xmin, ymax, xmax in [0, 1]
        classes = outputs[self._classes].reshape(-1)[:last].tolist()
        detections = []
        for i in keep:
            y1, x1, y2, x2 = boxes[i]
            detections.append(
                self._make(int(classes[i]), scores[i], x1 * width, y1 * height, x2 * width, y2 * height, width, height)
            )
        return detections
