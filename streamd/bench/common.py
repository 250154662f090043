"""What every measurement of the bench shares: progress lines, /proc readings, sample frames."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

WARMUP_FRAMES = 50


def proc_status(field: str) -> int:
    """A number from /proc/self/status (VmRSS in kB, Threads...), 0 where it is missing."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def rss_mb() -> float:
    return proc_status("VmRSS") / 1024.0


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Progress:
    """A progress bar on a TTY, a line every few seconds otherwise."""

    def __init__(self, label: str, total: int, unit: str = "frames") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < (0.2 if self.tty else 5.0) and done < self.total:
            return
        self.last = now
        fps = done / max(1e-6, now - self.started)
        share = min(1.0, done / self.total)
        if self.tty:
            bar = "#" * int(share * 30)
            print(
                f"\r{self.label:<22} [{bar:<30}] {done:>6}/{self.total} {self.unit} {fps:7.1f}/s",
                end="",
                file=sys.stderr,
            )
            if done >= self.total:
                print(file=sys.stderr)
        else:
            print(f"{self.label}: {done}/{self.total} {self.unit}, {fps:.1f}/s", file=sys.stderr)


def read_frames(uri: str, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
