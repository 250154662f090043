"""Raw YOLO heads (v5: [1, N, 5+C]; v8/v11: [1, 4+C, N]) with NMS appended to the graph.

NMS runs as an OpenVINO ``NonMaxSuppression`` op (C++, and itself a CPU-pinned op under
HETERO), so Python only gathers the few kept boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from streamd.inference.decoders.base import Decoder, DecoderError, Preprocessing
from streamd.types import Detection

IOU_THRESHOLD = 0.45
MAX_PER_CLASS = 100


def _head_layout(shape: ov.PartialShape) -> str | None:
    """'v8' for [1, 4+C, N], 'v5' for [1, N, 5+C]; N (anchors) is always the larger dimension."""
    if not (shape.rank.is_static and shape.rank.get_length() == 3 and shape[1].is_static and shape[2].is_static):
        return None
    a, b = shape[1].get_length(), shape[2].get_length()
    if a >= 5 and b > a:
        return "v8"
    if b >= 6 and a > b:
        return "v5"
    return None


class YoloDecoder(Decoder):
    name = "yolo"
    preprocessing = Preprocessing(color_order="RGB", scale=(255.0, 255.0, 255.0))

    @classmethod
    def matches(cls, model: ov.Model) -> bool:
        return len(model.outputs) == 1 and _head_layout(model.outputs[0].get_partial_shape()) is not None

    def adapt(self, model: ov.Model) -> ov.Model:
        old_result = model.get_results()[0]
        head = old_result.input_value(0)
        layout = _head_layout(head.get_partial_shape())
        if layout is None:
            raise DecoderError(f"not a YOLO head: output shape {head.get_partial_shape()}")
        if layout == "v8":
            boxes = ops.transpose(ops.slice(head, [0], [4], [1], [1]), [0, 2, 1])  # [1, N, 4] cx,cy,w,h
            scores = ops.slice(head, [4], [2**31 - 1], [1], [1])  # [1, C, N]
        else:
            boxes = ops.slice(head, [0], [4], [1], [2])
            objectness = ops.slice(head, [4], [5], [1], [2])
            classes = ops.slice(head, [5], [2**31 - 1], [1], [2])
            scores = ops.transpose(ops.multiply(classes, objectness), [0, 2, 1])
        nms = ops.non_max_suppression(
            boxes,
            scores,
            max_output_boxes_per_class=ops.constant(np.array([MAX_PER_CLASS], dtype=np.int64)),
            iou_threshold=ops.constant(np.array([IOU_THRESHOLD], dtype=np.float32)),
            score_threshold=ops.constant(np.array([self.confidence], dtype=np.float32)),
            box_encoding="center",
            sort_result_descending=True,
            output_type="i32",
        )
        nms.set_friendly_name("streamd_yolo_nms")
        boxes.output(0).get_tensor().set_names({"streamd_boxes"})
        nms.output(0).get_tensor().set_names({"streamd_selected_indices"})
        nms.output(1).get_tensor().set_names({"streamd_selected_scores"})
        # Detach the raw head's Result entirely: a dangling consumer still shows in get_ops(), and
        # HETERO then looks for it among the results (CPU plugin: "cannot find op ... sink_port_0").
        old_result.input(0).replace_source_output(ops.constant(np.zeros(1, dtype=np.float32)).output(0))
        model.remove_result(old_result)
        model.add_results([ops.result(boxes), ops.result(nms.output(0)), ops.result(nms.output(1))])
        return model

    def decode(self, outputs: Sequence[np.ndarray], width: int, height: int) -> list[Detection]:
        boxes, selected, scored = outputs[0].reshape(-1, 4), outputs[1], outputs[2]
        keep = selected[:, 0] >= 0  # padded rows carry -1
        sx, sy = width / self.input_size[0], height / self.input_size[1]
        found = []
        for (_, class_id, index), (_, _, score) in zip(selected[keep].tolist(), scored[keep].tolist(), strict=True):
            cx, cy, w, h = boxes[int(index)].tolist()
            found.append(
                self._make(
                    int(class_id),
                    float(score),
                    (cx - w / 2) * sx,
                    (cy - h / 2) * sy,
                    (cx + w / 2) * sx,
                    (cy + h / 2) * sy,
                    width,
                    height,
                )
            )
        return found
