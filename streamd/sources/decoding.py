"""Where a source's video is decoded (``[[sources]] decode``): ``"cpu"``, ``"auto"`` (the first
hardware device this FFmpeg can open, else the CPU, silently) or a device type PyAV knows
(``"cuda"``, ``"qsv"``, ``"vaapi"``...). A requested device that cannot be opened is one
``decode_fallback`` warning with the reason, CPU decoding, and the metric's ``device`` label
saying so (as the inference device's fallback does)."""

from __future__ import annotations

import functools

import av.codec
from av.codec.hwaccel import HWAccel, hwdevices_available

from streamd.logging import get_logger
from streamd.metrics import Metrics

log = get_logger(__name__)

CPU = "cpu"
PROBE_CODECS = ("h264", "hevc")  # what cameras send: a device that decodes neither is no use


@functools.cache
def device_problem(device_type: str) -> str | None:
    """Why this device cannot decode here (None: it can), asked of FFmpeg once per process."""
    if device_type not in hwdevices_available():
        return f"this FFmpeg has no {device_type!r} device (it has: {', '.join(hwdevices_available()) or 'none'})"
    problems = []
    for codec in PROBE_CODECS:
        try:
            HWAccel(device_type, allow_software_fallback=False).create(av.codec.Codec(codec, "r"))
            return None
        except (av.FFmpegError, OSError, NotImplementedError, ValueError) as exc:
            problems.append(f"{codec}: {exc}")
    return f"{device_type} cannot be opened ({'; '.join(problems)})"


@functools.cache
def first_hardware() -> str | None:
    return next((t for t in hwdevices_available() if device_problem(t) is None), None)


class DecodeChoice:
    """One source's decoder, chosen at its first connection and kept (a fallback is said once)."""

    def __init__(self, source: str, requested: str, metrics: Metrics, quiet: bool = False) -> None:
        """``quiet``: no log line (``streamd check`` prints :attr:`reason` itself)."""
        self.source, self.requested = source, requested
        self._metrics = metrics
        self._quiet = quiet
        self.device: str | None = None  # decided at the first open
        self.reason: str | None = None  # why the requested device is not used

    def hwaccel(self) -> HWAccel | None:
        if self.device is None:
            self.device = self._decide()
            self._metrics.decode_info.labels(self.source, self.requested, self.device).set(1)
        return None if self.device == CPU else HWAccel(self.device, allow_software_fallback=True)

    def _decide(self) -> str:
        if self.requested == CPU:
            return CPU
        if self.requested == "auto":
            return first_hardware() or CPU
        problem = device_problem(self.requested)
        if problem is None:
            return self.requested
        self.fell_back(problem)
        return CPU

    def fell_back(self, reason: str) -> None:
        """The device failed this source: CPU decoding from now on, said once."""
        self.reason = reason
        if not self._quiet:
            log.warning("decode_fallback", source=self.source, requested=self.requested, reason=reason, device=CPU)
        self._metrics.decode_info.labels(self.source, self.requested, self.device or self.requested).set(0)
        self.device = CPU
        self._metrics.decode_info.labels(self.source, self.requested, CPU).set(1)
