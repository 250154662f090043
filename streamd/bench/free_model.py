"""A detector that costs nothing: the default model's interface (TF Object Detection outputs,
u8 NHWC input of any size) and one constant person box, built in code. With it the pipeline
measures streamd's own cost per frame: everything but the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

BOX = (0.2, 0.3, 0.8, 0.6)  # ymin, xmin, ymax, xmax: the one detection, normalised
SCORE = 0.9
DETECTIONS = 100  # the slots the real SSDLite model has


def build_free_model() -> ov.Model:
    image = ops.parameter([-1, -1, -1, 3], ov.Type.u8, name="image_tensor")
    image.output(0).set_names({"image_tensor:0"})
    # One pixel, times zero: the outputs depend on the input (nothing is folded away or left
    # dangling) at the cost of reading a single byte.
    pixel = ops.strided_slice(image, [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0])
    zero = ops.multiply(ops.convert(ops.reshape(pixel, [1], False), ov.Type.f32), np.float32(0.0))
    boxes = np.zeros((1, DETECTIONS, 4), np.float32)
    boxes[0, 0] = BOX
    scores = np.zeros((1, DETECTIONS), np.float32)
    scores[0, 0] = SCORE
    classes = np.ones((1, DETECTIONS), np.float32)  # 1 = person (COCO paper ids)
    outputs = {
        "detection_boxes": ops.add(ops.constant(boxes), ops.reshape(zero, [1, 1, 1], False)),
        "detection_scores": ops.add(ops.constant(scores), ops.reshape(zero, [1, 1], False)),
        "detection_classes": ops.add(ops.constant(classes), ops.reshape(zero, [1, 1], False)),
        "num_detections": ops.add(ops.constant(np.ones(1, np.float32)), zero),
    }
    results = []
    for name, node in outputs.items():
        node.output(0).set_names({name, f"{name}:0"})
        results.append(ops.result(node))
    return ov.Model(results, [image], "free-detector")


def free_model_path(directory: Path) -> Path:
    """The model as IR in ``directory`` (written once)."""
    path = directory / "free-detector.xml"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        ov.save_model(build_free_model(), path)
    return path
