"""Decoded 4:2:0 pictures as :class:`~streamd.images.Decoded`: YUV 4:2:0 (what cameras and files
send; NV12 from a hardware decoder) is scaled plane by plane with OpenCV and converted to RGB or
BGR at the model's size; the full-size BGR frame is made only when something asks for it.

:class:`PlanarImage` holds the planes (views on PyAV's frame, or on the shared memory a decoder
process writes them to, ``decoder_process.py``); :func:`av_picture` wraps a PyAV frame.

4:2:0 is turned into RGB by libswscale, as OpenCV's ``VideoCapture`` does it (BT.601, the range
the stream signals): the same bytes as OpenCV's reader, so the model sees what it saw when
streamd read with OpenCV, and full-range cameras (``yuvj420p``) keep their colours (OpenCV's
``cvtColor`` takes every 4:2:0 picture as limited range: up to 22 levels off). NV12 (hardware
decoders) is restacked as I420 first: the same bytes as the picture decoded on the CPU."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import av.video.frame
import cv2
import numpy as np
from av.video.frame import VideoFrame
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from streamd.images import BgrImage, Decoded, Size

PLANAR = ("yuv420p", "yuvj420p", "nv12")  # the layouts kept as planes; the rest is converted to BGR
# What a conversion reuses, kept per thread and kind (size, range, colour order): libswscale's
# contexts (one made anew for every frame cost 0.05 ms of a 640x480 frame's 0.3, slower than
# OpenCV's conversion; one asked for another kind is rebuilt) and NV12's I420 scratch buffers
# (fresh ones for every 1080p frame cost 2,900 page faults: 6.4 ms against 0.8).
_per_thread = threading.local()
KEPT_CONVERSIONS = 8
T = TypeVar("T")


def _kept(kind: tuple[object, ...], make: Callable[[], T]) -> T:
    """This thread's object for this kind of conversion, made once (a stream that keeps changing
    size keeps no more than ``KEPT_CONVERSIONS``)."""
    kept: dict[tuple[object, ...], Any] | None = getattr(_per_thread, "kept", None)
    if kept is None:
        kept = _per_thread.kept = {}
    found = kept.get(kind)
    if found is None:
        if len(kept) >= KEPT_CONVERSIONS:
            kept.clear()
        found = kept[kind] = make()
    return cast(T, found)


def _plane(frame: av.video.frame.VideoFrame, index: int, rows: int, width: int) -> np.ndarray:
    """A plane's pixels without a copy (rows are ``line_size`` apart in FFmpeg's buffer)."""
    plane = frame.planes[index]
    pixels: np.ndarray = np.frombuffer(memoryview(plane), np.uint8)
    return pixels.reshape(rows, plane.line_size)[:, :width]


def _swscale(source: VideoFrame, layout: str, rgb: bool) -> np.ndarray:
    """4:2:0 to RGB (or BGR) as OpenCV's reader converts it: libswscale, BT.601, limited range
    unless the layout says full; one thread (the sources already spread over the cores). A view
    of FFmpeg's buffer, whose rows may be padded (what leaves the picture is made contiguous)."""
    reformatter = _kept((source.width, source.height, layout, rgb), VideoReformatter)
    converted = reformatter.reformat(
        source,
        format="rgb24" if rgb else "bgr24",
        src_colorspace=Colorspace.ITU601,
        src_color_range=ColorRange.JPEG if layout == "yuvj420p" else ColorRange.MPEG,
        threads=1,
    )
    plane = converted.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(converted.height, plane.line_size)
    return rows[:, : converted.width * 3].reshape(converted.height, converted.width, 3)


def _nv12_as_i420(luma: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """NV12's luma and chroma pairs (``(height / 2, width / 2, 2)``) stacked as I420, in this
    thread's scratch buffer: read it before the next conversion of the same size."""
    height, width = luma.shape
    out = _kept(("i420", width, height), lambda: np.empty((height * 3 // 2, width), np.uint8))
    out[:height] = luma
    cv2.split(pairs, _stacked_planes("yuv420p", out, width, height)[1:])  # into out's U and V
    return out


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
    ``layout``: ``yuv420p``, ``yuvj420p`` (full range) or ``nv12``; ``whole``: the same picture
    already stacked in one buffer (OpenCV's 4:2:0 layout), if it is; ``frame``: the PyAV 4:2:0
    frame the planes are views of (None: made from it when first needed; the model's input
    converted straight from the frame needs none)."""

    __slots__ = ("_bgr", "_frame", "_layout", "_planes", "_whole", "height", "width")

    def __init__(
        self,
        layout: str,
        planes: Sequence[np.ndarray] | None,
        width: int,
        height: int,
        whole: np.ndarray | None = None,
        frame: VideoFrame | None = None,
    ) -> None:
        self._layout = layout if layout in PLANAR else "yuv420p"
        self._planes = planes
        self.width, self.height = width, height
        self._whole = whole
        self._frame = frame
        self._bgr: np.ndarray | None = None

    @classmethod
    def from_stacked(cls, layout: str, whole: np.ndarray, width: int, height: int) -> PlanarImage:
        """The planes of a picture stacked in one ``(height * 3 / 2, width)`` buffer."""
        return cls(layout, _stacked_planes(layout, whole, width, height), width, height, whole)

    def bgr(self) -> np.ndarray:
        if self._bgr is None:
            self._bgr = np.ascontiguousarray(self._converted(self.width, self.height, rgb=False))
        return self._bgr

    def scaled(self, size: Size, rgb: bool) -> np.ndarray:
        """A frame at least twice the size asked in both directions is scaled plane by plane
        (halved by exact 2x2 averages first, so nothing aliases) and converted at the small size;
        a smaller one is converted to BGR first, then resized: OpenCV's reader and resize, byte
        for byte (planes resized on their own changed the demo's detections on 8 % of frames)."""
        if not self._by_planes(size) or self._bgr is not None:
            return BgrImage(self.bgr()).scaled(size, rgb)
        return np.ascontiguousarray(self._converted(*size, rgb))

    def scaled_into(self, size: Size, rgb: bool, out: np.ndarray) -> None:
        """:meth:`scaled`'s bytes written into ``out`` (``(height, width, 3)`` u8), keeping no
        full-size BGR: the decoder process's way (nothing asks it for the picture again). The
        colour order is chosen at the conversion instead of swapped after the resize (equal
        bytes: the resize works on each channel alone)."""
        if self._by_planes(size) or (self.width, self.height) == size:
            out[:] = self._converted(*size, rgb)
        else:
            whole = self._converted(self.width, self.height, rgb)
            cv2.resize(whole, size, dst=out, interpolation=cv2.INTER_LINEAR)

    def _by_planes(self, size: Size) -> bool:
        big = self.width >= 2 * size[0] and self.height >= 2 * size[1]
        return big and size[0] % 2 == 0 and size[1] % 2 == 0

    def grey(self, size: Size) -> np.ndarray:
        return cv2.resize(self._plane_views()[0], size, interpolation=cv2.INTER_LINEAR)

    def stack_into(self, out: np.ndarray) -> None:
        """The full-size picture into ``out`` (``(height * 3 / 2, width)`` u8), stacked."""
        if self._whole is not None:
            out[:] = self._whole
        else:
            self._stack(self.width, self.height, out)

    def _plane_views(self) -> Sequence[np.ndarray]:
        if self._planes is None:
            assert self._frame is not None
            frame, width, height = self._frame, self.width, self.height
            chroma = [_plane(frame, i, height // 2, width // 2) for i in (1, 2)]
            self._planes = [_plane(frame, 0, height, width), *chroma]
        return self._planes

    def _converted(self, width: int, height: int, rgb: bool) -> np.ndarray:
        """The planes at ``width`` x ``height`` in RGB or BGR, by libswscale: straight from PyAV's
        frame, or from the planes stacked (a view of them, not a copy). NV12 (a hardware
        decoder's) is laid out as I420 first, its chroma pairs split (0.1 ms at 1080p; libswscale
        converts NV12 itself seven times slower): the same bytes as the picture decoded on the CPU."""
        whole = (width, height) == (self.width, self.height)
        if self._layout == "nv12":
            small = None if whole else self._stacked(width, height)
            luma, chroma = self._plane_views() if small is None else _stacked_planes("nv12", small, width, height)
            planar = _nv12_as_i420(luma, chroma.reshape(height // 2, width // 2, 2))
            return _swscale(VideoFrame.from_numpy_buffer(planar, "yuv420p"), "yuv420p", rgb)
        if whole and self._frame is not None and self._whole is None:
            return _swscale(self._frame, self._layout, rgb)
        return _swscale(VideoFrame.from_numpy_buffer(self._stacked(width, height), self._layout), self._layout, rgb)

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
        for index, (plane, target) in enumerate(zip(self._plane_views(), targets, strict=True)):
            if index and self._layout == "nv12":  # U and V interleaved: scaled as pairs
                plane = plane.reshape(self.height // 2, self.width // 2, 2)
                target = target.reshape(height // 2, width // 2, 2)
            _fit(plane, target, same, halve=index == 0)


def layout_of(frame: av.video.frame.VideoFrame) -> str:
    """``yuv420p``, ``yuvj420p`` (full range, also when a ``yuv420p`` frame says so) or ``nv12``
    where the planes are kept; ``bgr24`` for the rest."""
    name = frame.format.name
    if name == "yuv420p" and frame.color_range == ColorRange.JPEG:
        name = "yuvj420p"
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
        return PlanarImage(layout, planes, width, height)
    return PlanarImage(layout, None, width, height, frame=frame)
