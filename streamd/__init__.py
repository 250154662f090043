"""streamd: asynchronous video analytics daemon (sources -> queue -> OpenVINO -> MQTT)."""

import os

# FFmpeg inside OpenCV logs to stderr on its own, URLs (and their credentials) included;
# streamd reports source failures itself. Read when OpenCV first opens a capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# OpenCV's own warnings ("can't be used to capture by name") likewise: sources/diagnose.py says why.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

__version__ = "0.9.5"
