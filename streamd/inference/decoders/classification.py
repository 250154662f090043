"""Classifiers: top-k classes of a [1, C] output, each reported with the whole frame as its box."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import openvino as ov

from streamd.inference.decoders.base import Decoder
from streamd.types import Detection


class ClassificationDecoder(Decoder):
    name = "classification"
    top_k = 5

    @classmethod
    def matches(cls, model: ov.Model) -> bool:
        if len(model.outputs) != 1:
            return False
        shape = model.outputs[0].get_partial_shape()
        static: bool = bool(shape.rank.is_static and shape.rank.get_length() == 2)
        return static

    def decode(self, outputs: Sequence[np.ndarray], width: int, height: int) -> list[Detection]:
        logits = outputs[0].reshape(-1).astype(np.float32)
        if logits.min() < 0.0 or logits.sum() > 1.01:  # raw logits: turn into probabilities
            exp = np.exp(logits - logits.max())
            logits = exp / exp.sum()
        top = np.argsort(logits)[::-1][: self.top_k]
        return [
            self._make(int(c), float(logits[c]), 0.0, 0.0, width, height, width, height)
            for c in top
            if logits[c] >= self.confidence
        ]
