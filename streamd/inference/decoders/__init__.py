"""Decoders behind one interface, picked by ``model.decoder`` or from the model's outputs."""

from __future__ import annotations

import openvino as ov

from streamd.inference.decoders.base import Decoder, DecoderError, Preprocessing
from streamd.inference.decoders.classification import ClassificationDecoder
from streamd.inference.decoders.paddle import PaddleDetectionDecoder
from streamd.inference.decoders.ssd import SsdDecoder
from streamd.inference.decoders.tf_od import TfObjectDetectionDecoder
from streamd.inference.decoders.yolo import YoloDecoder
from streamd.types import Detection

# Most specific first: auto-detection takes the first that matches.
DECODERS: tuple[type[Decoder], ...] = (
    TfObjectDetectionDecoder,
    PaddleDetectionDecoder,
    SsdDecoder,
    YoloDecoder,
    ClassificationDecoder,
)


def decoder_class(name: str, model: ov.Model) -> type[Decoder]:
    if name != "auto":
        return next(d for d in DECODERS if d.name == name)
    for cls in DECODERS:
        if cls.matches(model):
            return cls
    shapes = ", ".join(str(o.get_partial_shape()) for o in model.outputs)
    raise DecoderError(f'cannot tell the decoder from the outputs ({shapes}); set it, e.g. decoder = "yolo"')


__all__ = ["DECODERS", "Decoder", "DecoderError", "Detection", "Preprocessing", "decoder_class"]
