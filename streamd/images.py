"""A decoded picture, converted only into what is asked of it: the model's input at the model's
size, a small grey picture for the motion gate, or the full-size BGR frame (snapshots, motion
regions, the live view). Scaling first and converting colour at the small size costs a fraction
of converting the whole frame to BGR first (``benchmarks/README.md``, #36).

:class:`BgrImage` wraps what OpenCV decodes (already BGR); ``sources/av_image.py`` wraps
PyAV's frames (YUV planes, from the CPU or a hardware decoder)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import cv2
import numpy as np

Size = tuple[int, int]  # width, height
InputTarget = tuple[Size, bool]  # a model's input: its size, and whether it takes RGB (else BGR)


class PictureMissing(LookupError):
    """A decoder process handed over the model's input alone: nobody wanted the picture itself
    when it was decoded (a live viewer who just arrived sees the next one)."""


class Decoded(Protocol):
    width: int
    height: int

    def bgr(self) -> np.ndarray:
        """The full-size BGR frame (made once, then kept with the picture); may raise
        :class:`PictureMissing` (see there)."""
        ...

    def scaled(self, size: Size, rgb: bool) -> np.ndarray:
        """``size`` (width, height), RGB or BGR, u8 HWC: the model's input."""
        ...

    def grey(self, size: Size) -> np.ndarray:
        """``size``, one channel of luma: the motion gate's picture."""
        ...


class BgrImage:
    __slots__ = ("_image", "height", "width")

    def __init__(self, image: np.ndarray) -> None:
        self._image = image
        self.height, self.width = image.shape[:2]

    def bgr(self) -> np.ndarray:
        return self._image

    def scaled(self, size: Size, rgb: bool) -> np.ndarray:
        image = self._image
        if (self.width, self.height) != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if rgb else image

    def grey(self, size: Size) -> np.ndarray:
        # INTER_LINEAR: 0.13 ms for 640x480 here, INTER_AREA 1.0 ms (the motion gate blurs anyway).
        small = cv2.resize(self._image, size, interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


# A decoded picture -> what the engine feeds the model (made in the reader thread).
Transform = Callable[[Decoded], Any]


def one_thread_per_call() -> None:
    """OpenCV's own thread pool off: a frame's conversions are small jobs, the sources' threads
    (and worker processes) already spread over the cores, and on a 16-core host the pool's
    threads cost more CPU than they save (NVDEC 1080p H.264: 1.6 ms of CPU per frame to decode,
    9 more to scale with the pool, measured with ``streamd bench --decode``)."""
    cv2.setNumThreads(1)


def decoded(image: np.ndarray | Decoded) -> Decoded:
    return BgrImage(image) if isinstance(image, np.ndarray) else image
