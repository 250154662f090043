"""PyAV's decoded frames as :class:`~streamd.images.Decoded`: YUV 4:2:0 (what cameras and files
send; NV12 from a hardware decoder) is scaled plane by plane with OpenCV and converted to RGB or
BGR at the model's size; the full-size BGR frame is made only when something asks for it."""

from __future__ import annotations

import av.video.frame
import cv2
import numpy as np

from streamd.images import BgrImage, Size


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


class AvImage:
    __slots__ = ("_bgr", "_frame", "_layout", "height", "width")

    def __init__(self, frame: av.video.frame.VideoFrame) -> None:
        self._frame = frame
        self.width, self.height = frame.width, frame.height
        name = frame.format.name
        even = self.width % 2 == 0 and self.height % 2 == 0
        self._layout = name if even and name in ("yuv420p", "yuvj420p", "nv12") else "other"
        self._bgr: np.ndarray | None = None

    def bgr(self) -> np.ndarray:
        if self._bgr is None:
            if self._layout == "other":
                self._bgr = self._frame.to_ndarray(format="bgr24")
            else:
                self._bgr = cv2.cvtColor(self._stacked(self.width, self.height), self._code(rgb=False))
        return self._bgr

    def scaled(self, size: Size, rgb: bool) -> np.ndarray:
        """A frame at least twice the size asked in both directions is scaled plane by plane
        (halved by exact 2x2 averages first, so nothing aliases) and converted at the small size;
        a smaller one is converted to BGR first, then resized, as OpenCV's reader did (planes
        resized on their own gave the demo's marginal frames visibly different scores)."""
        big = self.width >= 2 * size[0] and self.height >= 2 * size[1]
        if not big or self._bgr is not None or self._layout == "other" or size[0] % 2 or size[1] % 2:
            return BgrImage(self.bgr()).scaled(size, rgb)
        return cv2.cvtColor(self._stacked(*size), self._code(rgb))

    def grey(self, size: Size) -> np.ndarray:
        if self._layout == "other":
            return BgrImage(self.bgr()).grey(size)
        luma = _plane(self._frame, 0, self.height, self.width)
        return cv2.resize(luma, size, interpolation=cv2.INTER_LINEAR)

    def _code(self, rgb: bool) -> int:
        if self._layout == "nv12":
            return cv2.COLOR_YUV2RGB_NV12 if rgb else cv2.COLOR_YUV2BGR_NV12
        return cv2.COLOR_YUV2RGB_I420 if rgb else cv2.COLOR_YUV2BGR_I420

    def _stacked(self, width: int, height: int) -> np.ndarray:
        """The frame's planes at ``width`` x ``height``, stacked as OpenCV's 4:2:0 conversions take them."""
        frame, w, h = self._frame, self.width, self.height
        out = np.empty((height * 3 // 2, width), np.uint8)
        same = (w, h) == (width, height)
        _fit(_plane(frame, 0, h, w), out[:height], same)
        if self._layout == "nv12":  # one plane of interleaved U and V, half the rows
            pair = _plane(frame, 1, h // 2, w).reshape(h // 2, w // 2, 2)
            _fit(pair, out[height:].reshape(height // 2, width // 2, 2), same, halve=False)
            return out
        quarter = (height // 2) * (width // 2)
        flat = out.reshape(-1)
        for index in (1, 2):
            start = height * width + (index - 1) * quarter
            chroma = _plane(frame, index, h // 2, w // 2)
            _fit(chroma, flat[start : start + quarter].reshape(height // 2, width // 2), same, halve=False)
        return out
