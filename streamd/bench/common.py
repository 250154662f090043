"""What every measurement of the bench shares: progress lines, /proc readings, sample frames."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

WARMUP_FRAMES = 50


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


_LAUNCHER: list[ProcessPoolExecutor] = []  # the clean process, while :func:`clean_launcher` runs


@contextlib.contextmanager
def clean_launcher() -> Iterator[None]:
    """A process started before the bench does any work, from which :func:`in_new_process`
    starts every measured process. A process that has done heavy work passes something on to
    the processes it starts, for their whole life: after reopening OpenCV captures 9 times, the
    pipelines it started ran 1,476-1,576 FPS at 81-85 % CPU against 1,595-1,878 at 89-92 %
    (the same clip and model, alternating, each run from a fresh top-level process); started
    from a process launched before those reopens, 1,809-1,814 at 91 %. Their environment,
    limits, affinity, signal masks and timer slack were the same; the cause is not found
    (``benchmarks/README.md``, "The reader's cost, continued")."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as launcher:
        launcher.submit(int).result()  # started now
        _LAUNCHER.append(launcher)
        try:
            yield
        finally:
            _LAUNCHER.remove(launcher)


def in_new_process(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a new process: started from the clean launcher when there is one,
    so that nothing the bench measured before weighs on what it measures now (a daemon served in
    a process that had served one also ran 8-15 % slower)."""
    if _LAUNCHER:
        return _LAUNCHER[0].submit(_in_new_process, function, *args).result()
    return _in_new_process(function, *args)


def _in_new_process(function: Callable[..., T], *args: Any) -> T:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def proc_status(field: str) -> int:
    """A number from /proc/self/status (VmRSS in kB, Threads...), 0 where it is missing."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return 0


def stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds from a /proc ``stat`` file (a process's or a thread's); 0 if gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def thread_cpu_seconds(prefix: str) -> float:
    """CPU time of this process's threads whose name starts with ``prefix`` ("MainThread" is the
    event loop's): what each part of streamd costs per frame."""
    return sum(
        stat_cpu_seconds(Path(f"/proc/self/task/{thread.native_id}/stat"))
        for thread in threading.enumerate()
        if thread.name.startswith(prefix) and thread.native_id is not None
    )


def decoder_cpu_seconds() -> float:
    """CPU time of this process's decoder processes (``sources/decoder_process.py``), running
    now: the sources' decoding and conversions when they happen out of the daemon's process."""
    total = 0.0
    for children in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "streamd-decode":
                        total += stat_cpu_seconds(Path(f"/proc/{pid}/stat"))
    return total


def rss_mb() -> float:
    return proc_status("VmRSS") / 1024.0


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Progress:
    """A bar redrawn in place on a TTY; elsewhere (a log, CI) one line when a measurement ends.
    Its rate counts from the start (model compile and warm-up included), so it is labelled as
    such: the table's figures are measured in steady state (#37: 91.7/s here against 161.5)."""

    def __init__(self, label: str, total: int, unit: str = "frames") -> None:
        self.label, self.total, self.unit = label, total, unit
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last = 0.0
        self._finished = False

    def update(self, done: int) -> None:
        done = min(done, self.total)  # the last round's in-flight frames do not make 502/500
        finished = done >= self.total
        now = time.monotonic()
        if self._finished or (not finished and (not self.tty or now - self.last < 0.2)):
            return
        self.last, self._finished = now, finished
        fps = done / max(1e-6, now - self.started)
        if self.tty:
            bar = "#" * int(done / self.total * 30)
            line = f"\r{self.label:<22} [{bar:<30}] {done:>6}/{self.total} {self.unit} {fps:7.1f}/s incl. start-up"
            print(line, end="\n" if finished else "", file=sys.stderr)
        else:
            print(
                f"{self.label}: {done} {self.unit} in {now - self.started:.1f} s incl. start-up ({fps:.1f}/s; "
                "the table: steady state)",
                file=sys.stderr,
            )


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
