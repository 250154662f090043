"""How a source's connection opens: PyAV where its packets are recorded (one connection for
decode and recording), OpenCV's V4L2 for a local camera, OpenCV's FFmpeg otherwise, with
FFmpeg's own timeouts so a dead camera fails the open or the read instead of blocking."""

from __future__ import annotations

import os
import threading

import cv2

from streamd.config import SourceConfig
from streamd.sources.packets import PacketCapture, PacketRelay
from streamd.sources.reading import Capture

# FFmpeg's decoder threads per source (FFmpeg's own default: one per core, per capture).
DEFAULT_DECODE_THREADS = 2

_FFMPEG_OPTIONS = threading.Lock()
# OpenCV and FFmpeg print their own errors to stderr, some with the URL they failed on
# (credentials included); streamd logs every failure itself, with the URL redacted.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def open_capture(cfg: SourceConfig, relay: PacketRelay | None) -> Capture:
    if relay is not None:
        threads = cfg.decode_threads or DEFAULT_DECODE_THREADS
        return PacketCapture(cfg.uri, relay, cfg.read_timeout, cfg.rtsp_transport, threads)
    if cfg.uri.startswith("/dev/video"):
        return cv2.VideoCapture(cfg.uri, cv2.CAP_V4L2)
    timeout_ms = int(cfg.read_timeout * 1000)
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        timeout_ms,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        timeout_ms,
        cv2.CAP_PROP_N_THREADS,
        cfg.decode_threads or DEFAULT_DECODE_THREADS,
    ]
    if not cfg.uri.startswith("rtsp"):
        return cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG, params)
    # The transport is an FFmpeg option that OpenCV reads from the environment at open time.
    with _FFMPEG_OPTIONS:
        previous = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{cfg.rtsp_transport}"
        try:
            return cv2.VideoCapture(cfg.uri, cv2.CAP_FFMPEG, params)
        finally:
            if previous is None:
                os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
            else:
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = previous
