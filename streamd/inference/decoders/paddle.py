"""PaddleDetection exports ending in ``MulticlassNms``: rows of (class, score, x1, y1, x2, y2).

Their extra inputs (``scale_factor``, ``im_shape``) are frozen to constants: the shape is fixed
and boxes are mapped back to the frame here, so the graph keeps a single image input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from streamd.inference.decoders.base import Decoder, Preprocessing
from streamd.types import Detection

NMS_TYPES = {"MulticlassNms", "MatrixNms"}


class PaddleDetectionDecoder(Decoder):
    name = "paddle-det"
    preprocessing = Preprocessing(color_order="RGB", mean=(123.675, 116.28, 103.53), scale=(58.395, 57.12, 57.375))

    @classmethod
    def matches(cls, model: ov.Model) -> bool:
        return any(op.get_type_name() in NMS_TYPES for op in model.get_ops())

    def adapt(self, model: ov.Model) -> ov.Model:
        image = next((p for p in model.get_parameters() if p.get_partial_shape().rank.get_length() == 4), None)
        for param in list(model.get_parameters()):
            name = param.get_friendly_name()
            if param is image or name not in ("scale_factor", "im_shape"):
                continue
            if name == "scale_factor":
                value = np.ones((1, 2), dtype=np.float32)
            else:
                value = np.zeros((1, 2), dtype=np.float32)  # replaced at bind time if ever read
                if image is not None and image.get_partial_shape().is_static:
                    dims = image.get_partial_shape().to_shape()
                    value = np.array([[dims[2], dims[3]]], dtype=np.float32)
            const = ops.constant(value.astype(param.get_element_type().to_dtype()))
            for target in list(param.output(0).get_target_inputs()):
                target.replace_source_output(const.output(0))
            model.remove_parameter(param)
        return model

    def decode(self, outputs: Sequence[np.ndarray], width: int, height: int) -> list[Detection]:
        rows = outputs[0].reshape(-1, 6)
        if len(outputs) > 1 and outputs[-1].size == 1:
            rows = rows[: int(outputs[-1].reshape(-1)[0])]
        rows = rows[(rows[:, 1] >= self.confidence) & (rows[:, 0] >= 0)]
        sx, sy = width / self.input_size[0], height / self.input_size[1]
        return [
            self._make(int(c), float(s), x1 * sx, y1 * sy, x2 * sx, y2 * sy, width, height)
            for c, s, x1, y1, x2, y2 in rows.tolist()
        ]
