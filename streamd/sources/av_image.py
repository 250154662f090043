"""Decoded 4:2:0 pictures as :class:`~streamd.images.Decoded`: YUV 4:2:0 (what cameras and files
send; NV12 from a hardware decoder) is scaled plane by plane with OpenCV and converted to RGB or
BGR at the model's size; the full-size BGR frame is made only when something asks for it.

:class:`PlanarImage` holds the planes (views on PyAV's frame, or on the shared memory a decoder
process writes them to, ``decoder_process.py``); :func:`av_picture` wraps a PyAV frame."""

from __future__ import annotations

from collections.abc import Sequence

import av.video.frame
import cv2
import numpy as np

from streamd.images import BgrImage, Decoded, Size

PLANAR = ("yuv420p", "yuvj420p", "nv12")  # the layouts kept as planes; the rest is converted to BGR


def _plane(frame: av.video.frame.VideoFrame, index: int, rows: int, width: int) -> np.ndarray:
    """A plane's pixels without a copy (rows are ``line_size`` apart in FFmpeg's buffer)."""
    plane = frame.planes[index]
    pixels: np.ndarray = np.frombuffer(memoryview(plane), np.uint8)
    return pixels.reshape(rows, plane.line_size)[:, :width]


def _fit(plane: np.ndarray, target: np.ndarray, same: bool, halve: bool = True) -> None:
    """``plane`` into ``target`` (a view of the stacked picture), scaled to its size: the luma
    halved by exact 2x2 averages while it stays at least the target's size, then bilinear. The
    chroma (half the resolution already, and what a detector leans on least) goes straight to
    bilinear: averaging NV12's interleaved pair cost 1.6 ms a 1080p frame, the rest 0.6."""
    if same:
        target[:] = plane
        return
    height, width = target.shape[:2]
    while halve and plane.shape[1] >= 2 * width and plane.shape[0] >= 2 * height:
        plane = cv2.resize(plane, (plane.shape[1] // 2, plane.shape[0] // 2), interpolation=cv2.INTER_AREA)
    cv2.resize(plane, (width, height), dst=target, interpolation=cv2.INTER_LINEAR)


def _stacked_planes(layout: str, whole: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Views of the planes of a picture stacked in one ``(height * 3 / 2, width)`` buffer, in
    OpenCV's 4:2:0 layout: I420's y, u, v or NV12's y and interleaved uv."""
    flat = whole.reshape(-1)
    luma = width * height
    if layout == "nv12":
        return [whole[:height], flat[luma : luma * 3 // 2].reshape(height // 2, width)]
    quarter = luma // 4
    return [
        whole[:height],
        flat[luma : luma + quarter].reshape(height // 2, width // 2),
        flat[luma + quarter : luma + 2 * quarter].reshape(height // 2, width // 2),
    ]


def stacked_size(layout: str, width: int, height: int) -> int:
    """Bytes of a picture stacked as :meth:`PlanarImage.stack_into` writes it."""
    return width * height * 3 // 2 if layout in PLANAR else width * height * 3


class PlanarImage:
    """A 4:2:0 picture's planes: I420's (y, u, v) or NV12's (y, uv), each a 2-D view of its rows.
    ``whole``: the same picture already stacked in one buffer (OpenCV's 4:2:0 layout), if it is."""

    __slots__ = ("_bgr", "_layout", "_planes", "_whole", "height", "width")

    def __init__(
        self, layout: str, planes: Sequence[np.ndarray], width: int, height: int, whole: np.ndarray | None = None
    ) -> None:
        self._layout = "nv12" if layout == "nv12" else "yuv420p"
        self._planes = planes
        self.width, self.height = width, height
        self._whole = whole
        self._bgr: np.ndarray | None = None

    @classmethod
    def from_stacked(cls, layout: str, whole: np.ndarray, width: int, height: int) -> PlanarImage:
        """The planes of a picture stacked in one ``(height * 3 / 2, width)`` buffer."""
        return cls(layout, _stacked_planes(layout, whole, width, height), width, height, whole)

    def bgr(self) -> np.ndarray:
        if self._bgr is None:
            self._bgr = cv2.cvtColor(self._stacked(self.width, self.height), self._code(rgb=False))
        return self._bgr

    def scaled(self, size: Size, rgb: bool) -> np.ndarray:
        """A frame at least twice the size asked in both directions is scaled plane by plane
        (halved by exact 2x2 averages first, so nothing aliases) and converted at the small size;
        a smaller one is converted to BGR first, then resized, as OpenCV's reader did (planes
        resized on their own gave the demo's marginal frames visibly different scores)."""
        if not self._by_planes(size) or self._bgr is not None:
            return BgrImage(self.bgr()).scaled(size, rgb)
        return cv2.cvtColor(self._stacked(*size), self._code(rgb))

    def scaled_into(self, size: Size, rgb: bool, out: np.ndarray) -> None:
        """:meth:`scaled`'s bytes written into ``out`` (``(height, width, 3)`` u8), keeping no
        full-size BGR: the decoder process's way (nothing asks it for the picture again). The
        colour order is chosen at the conversion instead of swapped after the resize (equal
        bytes: the resize works on each channel alone)."""
        if self._by_planes(size) or (self.width, self.height) == size:
            cv2.cvtColor(self._stacked(*size), self._code(rgb), dst=out)
        else:
            whole = cv2.cvtColor(self._stacked(self.width, self.height), self._code(rgb))
            cv2.resize(whole, size, dst=out, interpolation=cv2.INTER_LINEAR)

    def _by_planes(self, size: Size) -> bool:
        big = self.width >= 2 * size[0] and self.height >= 2 * size[1]
        return big and size[0] % 2 == 0 and size[1] % 2 == 0

    def grey(self, size: Size) -> np.ndarray:
        return cv2.resize(self._planes[0], size, interpolation=cv2.INTER_LINEAR)

    def stack_into(self, out: np.ndarray) -> None:
        """The full-size picture into ``out`` (``(height * 3 / 2, width)`` u8), stacked."""
        if self._whole is not None:
            out[:] = self._whole
        else:
            self._stack(self.width, self.height, out)

    def _code(self, rgb: bool) -> int:
        if self._layout == "nv12":
            return cv2.COLOR_YUV2RGB_NV12 if rgb else cv2.COLOR_YUV2BGR_NV12
        return cv2.COLOR_YUV2RGB_I420 if rgb else cv2.COLOR_YUV2BGR_I420

    def _stacked(self, width: int, height: int) -> np.ndarray:
        """The planes at ``width`` x ``height``, stacked as OpenCV's 4:2:0 conversions take them."""
        if self._whole is not None and (width, height) == (self.width, self.height):
            return self._whole
        out = np.empty((height * 3 // 2, width), np.uint8)
        self._stack(width, height, out)
        return out

    def _stack(self, width: int, height: int, out: np.ndarray) -> None:
        same = (self.width, self.height) == (width, height)
        targets = _stacked_planes(self._layout, out, width, height)
        for index, (plane, target) in enumerate(zip(self._planes, targets, strict=True)):
            if index and self._layout == "nv12":  # U and V interleaved: scaled as pairs
                plane = plane.reshape(self.height // 2, self.width // 2, 2)
                target = target.reshape(height // 2, width // 2, 2)
            _fit(plane, target, same, halve=index == 0)


def layout_of(frame: av.video.frame.VideoFrame) -> str:
    """``yuv420p``, ``yuvj420p`` or ``nv12`` where the planes are kept; ``bgr24`` for the rest."""
    name = frame.format.name
    even = frame.width % 2 == 0 and frame.height % 2 == 0
    return name if even and name in PLANAR else "bgr24"


def av_picture(frame: av.video.frame.VideoFrame) -> Decoded:
    """A PyAV frame as a picture: its planes, not copied; other pixel formats converted to BGR."""
    layout = layout_of(frame)
    width, height = frame.width, frame.height
    if layout == "bgr24":
        return BgrImage(frame.to_ndarray(format="bgr24"))
    if layout == "nv12":
        planes = [_plane(frame, 0, height, width), _plane(frame, 1, height // 2, width)]
    else:
        planes = [_plane(frame, i, height // (1 if i == 0 else 2), width // (1 if i == 0 else 2)) for i in range(3)]
    return PlanarImage(layout, planes, width, height)
