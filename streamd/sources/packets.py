"""One connection per camera or file: PyAV demuxes the stream, every compressed packet goes to
the recorder (if the source records) as it came, and the same packets are decoded for the
detector, on the CPU or a hardware device (``decoding.py``), as pictures converted only into
what is asked of them (``av_image.py``).

:class:`PacketCapture` offers the reading surface of ``cv2.VideoCapture`` that the source's
reader uses (``grab``/``retrieve``/``read``/``get``), so a recording source runs the same
reader loop. Measured before switching (``benchmarks/README.md``): PyAV's decode with the YUV
planes converted by ``cv2.cvtColor`` reads as fast as OpenCV's ``VideoCapture`` (640x480 H.264:
906 against 794 FPS; 1080p: 153 against 147), while PyAV's own ``to_ndarray("bgr24")`` is
slower (523 FPS at 640x480).
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av
import av.container
import av.video.frame
import av.video.stream
import cv2
from av.codec.hwaccel import HWAccel

from streamd.images import Decoded
from streamd.logging import get_logger
from streamd.redact import redact_uri
from streamd.sources.av_image import av_picture

log = get_logger(__name__)

# FFmpeg's decoder threads where the source does not say (``decode_threads = 0``). Frame threads
# cost CPU per frame and buy a speed one stream seldom needs (benchmarks/README.md, "The reader's
# cost, continued"): H.264 640x480 took 0.36-0.38 ms of CPU a frame with 2 threads against 0.27
# with one, 1080p 4.3-4.7 against 4.1-4.3, and one thread still decodes 640x480 at 3,600 FPS and
# 1080p at 230.
# Above 1280x720 a second thread halves the wait for each picture.
ONE_THREAD_UP_TO = 1280 * 720


def decoder_threads(requested: int, width: int, height: int) -> int:
    """``requested`` (``decode_threads``), or by the picture's size when 0."""
    return requested or (1 if width * height <= ONE_THREAD_UP_TO else 2)


@dataclass(frozen=True, slots=True)
class StoredPacket:
    """A compressed packet copied out of the demuxer (FFmpeg reuses and, on muxing, takes
    ownership of its own), with the wall-clock time it arrived."""

    data: bytes
    pts: int | None
    dts: int | None
    keyframe: bool
    time_base: Fraction
    wall: float


class StreamTemplate:
    """The stream's codec parameters, copied once per connection into a container of their own,
    so clips can be made from them after the camera's connection is gone."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self._holder = av.open(io.BytesIO(), "w", format="mp4")
        self.stream = self._holder.add_stream_from_template(stream)
        context = stream.codec_context
        self.codec = context.name
        self.width, self.height = context.width, context.height


class PacketSink(Protocol):
    """Where the reader thread hands the stream's packets (the recorder)."""

    def opened(self, template: StreamTemplate) -> None: ...

    def packet(self, packet: StoredPacket) -> None: ...


class PacketRelay:
    """The reader's end: packets go to the current sink, if any (the source's recorder; a new one
    when a detect switch comes back on), which hears the current stream's template first."""

    def __init__(self) -> None:
        self._sink: PacketSink | None = None
        self._template: StreamTemplate | None = None
        self._lock = threading.Lock()

    def attach(self, sink: PacketSink | None) -> None:
        with self._lock:
            self._sink = sink
            if sink is not None and self._template is not None:
                sink.opened(self._template)

    def opened(self, template: StreamTemplate) -> None:
        with self._lock:
            self._template = template
            if self._sink is not None:
                self._sink.opened(template)

    def packet(self, packet: StoredPacket) -> None:
        sink = self._sink
        if sink is not None:
            sink.packet(packet)


class PacketCapture:
    def __init__(
        self,
        uri: str,
        packets: PacketSink | None,
        timeout: float,
        transport: str,
        threads: int,
        hwaccel: HWAccel | None = None,
        on_fallback: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """``packets``: the recorder's relay, or None; ``threads``: FFmpeg's decoder threads (0:
        by the picture's size, :func:`decoder_threads`); ``hwaccel``: decode on that device, and
        tell ``on_fallback`` why not if it cannot (the stream is then decoded on the CPU)."""
        options = {"rtsp_transport": transport} if uri.startswith("rtsp") else {}
        self._packets = packets
        self._container: av.container.InputContainer | None = None
        self._frames: deque[av.video.frame.VideoFrame] = deque()
        self._frame: av.video.frame.VideoFrame | None = None
        self._on_fallback = on_fallback if hwaccel is not None else None  # said once, at the first frame
        try:
            try:
                self._container = av.open(uri, options=options, timeout=(timeout, timeout), hwaccel=hwaccel)
            except (av.FFmpegError, OSError) as exc:
                if hwaccel is None:
                    raise
                self._container = av.open(uri, options=options, timeout=(timeout, timeout))
                self._fell_back(str(exc))  # the device failed, not the camera
            self._stream = self._container.streams.video[0]
        except (av.FFmpegError, IndexError, OSError) as exc:  # the reader diagnoses and retries
            log.debug("packets_open_failed", error=str(exc).replace(uri, redact_uri(uri)))
            self.release()
            return
        context = self._stream.codec_context
        self._stream.thread_type = "AUTO"
        context.thread_count = decoder_threads(threads, context.width, context.height)
        self._demux: Iterator[av.Packet[av.video.stream.VideoStream]] = self._container.demux(self._stream)
        if packets is not None:
            packets.opened(StreamTemplate(self._stream))

    def _fell_back(self, reason: str) -> None:
        if self._on_fallback is not None:
            self._on_fallback(reason)
            self._on_fallback = None

    def isOpened(self) -> bool:  # cv2.VideoCapture's name
        return self._container is not None

    def get(self, prop: int) -> float:
        if self._container is None:
            return 0.0
        if prop == cv2.CAP_PROP_FPS:
            rate = self._stream.average_rate or self._stream.guessed_rate
            return float(rate) if rate else 0.0
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(self._stream.frames)
        if prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            context = self._stream.codec_context
            return float(context.width if prop == cv2.CAP_PROP_FRAME_WIDTH else context.height)
        return 0.0

    def grab(self) -> bool:
        """The next decoded frame, not converted yet; every packet read on the way goes to the sink."""
        while not self._frames:
            try:
                packet = next(self._demux)
            except (StopIteration, av.FFmpegError, OSError):
                return False
            if self._packets is not None and packet.size and packet.dts is not None:
                self._packets.packet(
                    StoredPacket(
                        bytes(packet), packet.pts, packet.dts, packet.is_keyframe, packet.time_base, time.time()
                    )
                )
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue  # a damaged packet: its frame is lost, the stream goes on
            self._frames.extend(f for f in frames if isinstance(f, av.video.frame.VideoFrame))
        self._frame = self._frames.popleft()
        if self._on_fallback is not None and not self._stream.codec_context.is_hwaccel:
            codec = self._stream.codec_context.name
            self._fell_back(f"the hardware decoder does not take this stream ({codec}): decoded on the CPU")
        self._on_fallback = None
        return True

    def frame(self) -> av.video.frame.VideoFrame | None:
        """The frame the last :meth:`grab` decoded, as PyAV gave it."""
        return self._frame

    def retrieve(self) -> tuple[bool, Decoded | None]:
        frame = self._frame
        return (True, av_picture(frame)) if frame is not None else (False, None)

    def read(self) -> tuple[bool, Decoded | None]:
        return self.retrieve() if self.grab() else (False, None)

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
