"""The decoder interface: turn a model's raw outputs into Detections in frame pixels."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import openvino as ov

from streamd.inference.labels import label_of
from streamd.types import Detection


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """What the network expects of its image input, beyond size and layout."""

    color_order: str = "RGB"
    mean: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None


class DecoderError(Exception):
    pass


class Decoder(ABC):
    name: ClassVar[str]
    default_labels: ClassVar[str] = "coco80"
    preprocessing: ClassVar[Preprocessing] = Preprocessing()
    # Node name patterns INT8 quantisation must leave alone: the model's own post-processing
    # (box decoding, NMS, class ids), where 8-bit values break what the decoder reads.
    quantize_ignored: ClassVar[tuple[str, ...]] = ()

    def __init__(self, labels: tuple[str, ...], confidence: float) -> None:
        self.labels = labels
        self.confidence = confidence
        self.input_size = (0, 0)  # (width, height) the network sees, set by bind()

    @classmethod
    @abstractmethod
    def matches(cls, model: ov.Model) -> bool:
        """Whether ``model.decoder = "auto"`` should pick this decoder."""

    def adapt(self, model: ov.Model) -> ov.Model:
        """Graph surgery done once before compiling (e.g. appending NMS); default none."""
        return model

    def bind(self, outputs: Sequence[ov.Output], input_size: tuple[int, int]) -> None:
        """Resolve which output index holds what, once, so decode() does no name look-ups."""
        self.input_size = input_size

    @abstractmethod
    def decode(self, outputs: Sequence[np.ndarray], width: int, height: int) -> list[Detection]:
        """Outputs are in compiled-model order; width/height are the original frame's."""

    def _make(
        self, class_id: int, score: float, x1: float, y1: float, x2: float, y2: float, width: int, height: int
    ) -> Detection:
        return Detection(
            label_of(self.labels, class_id),
            class_id,
            score,
            (
                float(min(max(x1, 0.0), width)),
                float(min(max(y1, 0.0), height)),
                float(min(max(x2, 0.0), width)),
                float(min(max(y2, 0.0), height)),
            ),
        )


def output_index(outputs: Sequence[ov.Output], *prefixes: str) -> int:
    for prefix in prefixes:
        for i, out in enumerate(outputs):
            if any(name.startswith(prefix) for name in out.get_names()):
                return i
    raise DecoderError(f"the model has no output named {' or '.join(prefixes)}")
