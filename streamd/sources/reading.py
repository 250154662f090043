"""What the reader thread reads through and waits on: the capture surface (OpenCV's, which
``PacketCapture`` offers on PyAV too), the engine's input for motion regions, and the turns that
file sources take to decode."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streamd.images import Decoded, InputTarget


def no_target() -> InputTarget | None:
    return None


@dataclass(frozen=True)
class EngineInput:
    """What the reader needs from the current engine: for motion regions, the network's (width,
    height) and a crop turned into the model's input; for a decoder process, the input it makes
    with every picture (``target``: None where the engine takes whole frames)."""

    input_size: Callable[[], tuple[int, int]]
    tensor: Callable[[np.ndarray], Any]
    target: Callable[[], InputTarget | None] = no_target


class Capture(Protocol):
    """What the reader reads through: ``cv2.VideoCapture``'s names (``opening.OpenCvCapture``
    for V4L2, ``packets.PacketCapture`` on PyAV for the rest), giving decoded pictures that are
    converted only into what is asked of them (``images.Decoded``)."""

    def isOpened(self) -> bool: ...  # cv2's names

    def get(self, prop: int) -> float: ...

    def grab(self) -> bool: ...

    def retrieve(self) -> tuple[bool, Decoded | None]: ...

    def read(self) -> tuple[bool, Decoded | None]: ...

    def release(self) -> None: ...


# Files never wait for data, so a hundred of them would decode all at once and starve the event
# loop and the model of CPU (and of the GIL). They take turns, half the cores' worth at once:
# with 100 looping files on 2 cores, inferred frames rose from 620 to 768 in the same 12 s and
# the probes stayed under 100 ms. Live sources do not take part: their reads wait on the network.
FILE_DECODES = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2) // 2))


@contextlib.contextmanager
def decode_slot(is_file: bool, stop: threading.Event) -> Iterator[bool]:
    """A turn to decode (files only); False if the source was stopped while waiting."""
    if not is_file:
        yield True
        return
    while not FILE_DECODES.acquire(timeout=0.5):
        if stop.is_set():
            yield False
            return
    try:
        yield True
    finally:
        FILE_DECODES.release()
