"""How a source's connection opens: PyAV for files and network cameras, in a decoder process of
its own (``decoder_process.py``) or, for a source that records, in the reader thread (one
connection gives the recorder its packets and the detector its frames), decoded on the CPU or a
hardware device and converted only into what is asked of them; OpenCV's V4L2 for a local camera.
FFmpeg's own timeouts make a dead camera fail the open or the read instead of blocking."""

from __future__ import annotations

from collections.abc import Callable

import cv2

from streamd.config import SourceConfig
from streamd.images import BgrImage, Decoded, InputTarget
from streamd.sources.decoder_process import DecoderProcess, ProcessCapture
from streamd.sources.decoding import CPU, DecodeChoice
from streamd.sources.packets import PacketCapture, PacketRelay
from streamd.sources.reading import Capture, EngineInput

# OpenCV and FFmpeg print their own errors to stderr, some with the URL they failed on
# (credentials included); streamd logs every failure itself, with the URL redacted.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class OpenCvCapture:
    """A V4L2 camera through OpenCV, its BGR frames as :class:`~streamd.images.Decoded`."""

    def __init__(self, uri: str) -> None:
        self._capture = cv2.VideoCapture(uri, cv2.CAP_V4L2)

    def isOpened(self) -> bool:
        return bool(self._capture.isOpened())

    def get(self, prop: int) -> float:
        return float(self._capture.get(prop))

    def grab(self) -> bool:
        return bool(self._capture.grab())

    def retrieve(self) -> tuple[bool, Decoded | None]:
        ok, image = self._capture.retrieve()
        return (True, BgrImage(image)) if ok and image is not None else (False, None)

    def read(self) -> tuple[bool, Decoded | None]:
        ok, image = self._capture.read()
        return (True, BgrImage(image)) if ok and image is not None else (False, None)

    def release(self) -> None:
        self._capture.release()


def in_decoder_process(cfg: SourceConfig, device: str | None) -> bool:
    """Whether the source is read through a decoder process (``decode_in``), decoding on
    ``device``: not a V4L2 camera, not a source that records (its recorder takes the packets in
    this process), and with "auto" only when decoding on the CPU."""
    if cfg.uri.startswith("/dev/video") or cfg.recording is not None or cfg.decode_in == "thread":
        return False
    return cfg.decode_in == "process" or (device or CPU) == CPU


def open_capture(
    cfg: SourceConfig,
    relay: PacketRelay | None,
    decoding: DecodeChoice,
    decoder: DecoderProcess | None = None,
    target: InputTarget | None = None,
    wants_pictures: Callable[[], bool] = lambda: True,
) -> Capture:
    """``relay``: the recorder's, which takes the packets in this process (the source is read in
    its thread); ``decoder``: the source's decoder process (None: read in the thread);
    ``target``: the model's input the decoder process makes with each picture;
    ``wants_pictures()``: whether the pictures themselves must come with it, now."""
    if cfg.uri.startswith("/dev/video"):
        return OpenCvCapture(cfg.uri)
    threads = cfg.decode_threads  # 0: by the picture's size (packets.decoder_threads)
    hwaccel = decoding.hwaccel()
    if decoder is not None and in_decoder_process(cfg, decoding.device):
        device = None if decoding.device == CPU else decoding.device
        timeout, transport = cfg.read_timeout, cfg.rtsp_transport
        fell_back = decoding.fell_back
        return ProcessCapture(decoder, cfg.uri, timeout, transport, threads, device, fell_back, target, wants_pictures)
    return PacketCapture(cfg.uri, relay, cfg.read_timeout, cfg.rtsp_transport, threads, hwaccel, decoding.fell_back)


class SourceDecoder:
    """How one source's streams open: where each is decoded (``decode_in``: the source's decoder
    process, kept from one stream to the next, or the reader thread) and, for a decoder process,
    the model's input it makes with every picture (not where a motion gate or sampling decides
    which pictures become one)."""

    def __init__(
        self,
        cfg: SourceConfig,
        relay: PacketRelay | None,
        decoding: DecodeChoice,
        engine_input: EngineInput | None,
        gated: bool,
    ) -> None:
        self._cfg, self._relay, self._decoding = cfg, relay, decoding
        self._engine_input = None if gated or cfg.max_fps > 0 else engine_input
        self._process = DecoderProcess(cfg.name) if cfg.decode_in != "thread" else None
        self._opened_for: InputTarget | None = None  # the model's input the open stream is decoded for

    def target(self) -> InputTarget | None:
        return self._engine_input.target() if self._engine_input is not None else None

    def open(self, wants_pictures: Callable[[], bool]) -> Capture:
        self._opened_for = target = self.target()
        return open_capture(self._cfg, self._relay, self._decoding, self._process, target, wants_pictures)

    def stale(self) -> bool:
        """A reload changed the model's input since the stream opened (its pictures are needed)."""
        return self._opened_for is not None and self.target() != self._opened_for

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
