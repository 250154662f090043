"""The real daemon, measured end to end to a real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamd.bench.common import (
    WARMUP_FRAMES,
    Progress,
    decoder_cpu_seconds,
    in_new_process,
    percentile,
    proc_status,
    rss_mb,
    thread_cpu_seconds,
)
from streamd.config import Config, is_file_uri
from streamd.daemon import Daemon
from streamd.logging import configure
from streamd.runtime.lifecycle import STOP_SIGNALS
from streamd.sinks.outbox import Message
from streamd.tracking.config import TrackingConfig
from streamd.types import Result


@dataclass
class PipelineRun:
    fps: float = 0.0
    frames: int = 0
    # Bounded, so a long soak measures the daemon's memory, not the bench's own bookkeeping.
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=50_000))
    cpu_percent: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    dropped: int = 0
    device: str = ""
    threads: int = 0
    tracking_ms_per_frame: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    snapshot_seconds: list[float] = field(default_factory=list)  # encode time of each snapshot
    # CPU milliseconds per frame of the event loop's thread (the interpreter's work per frame) and
    # of the reader threads and decoder processes (decode, resize, motion gate).
    loop_ms_per_frame: float = 0.0
    readers_ms_per_frame: float = 0.0
    # Per source, the frame numbers captured when the window opened and when it closed.
    captured: dict[str, tuple[int, int]] = field(default_factory=dict)

    def latency_ms(self) -> dict[str, float]:
        return {f"p{q}": round(percentile(self.latencies, q) * 1000, 2) for q in (50, 95, 99)}


def bench_config(config: Config, copies: int = 0, tracking: bool = False) -> Config:
    """The bench's own identity (instance ``*-bench``, memory-only MQTT buffer, no HTTP port), so it
    never touches a production daemon's topics or buffer file; ``copies`` replicates the first file
    source (the scale runs), ``tracking`` switches the tracker on for every source."""
    sources = list(config.sources)
    if copies:
        first = next(s for s in sources if is_file_uri(s.uri))
        sources = [first.model_copy(update={"name": f"{first.name}-{i}"}) for i in range(copies)]
    if tracking:
        sources = [s.model_copy(update={"tracking": TrackingConfig()}) for s in sources]
    mqtt = config.mqtt.model_copy(update={"instance": f"{config.mqtt.instance}-bench", "buffer_dir": ""})
    return config.model_copy(update={"sources": sources, "mqtt": mqtt})


async def measure_pipeline(
    config: Config,
    frames: int,
    label: str,
    speed: float | None = None,
    seconds: float | None = None,
    observe: Callable[[Result], None] | None = None,
    publish_empty: bool = True,
    listen: str = "",
) -> PipelineRun:
    """The real daemon; sources loop, files run unpaced (or paced at ``speed``) and lose nothing.

    Stops after ``frames`` acknowledged messages, or after ``seconds`` (the soak), sampling RSS.
    ``observe`` sees every Result inside the measured window (a stage at the end of the chain);
    with ``publish_empty`` off, a timed run opens its window after a warm-up of 3 s. ``listen``: the
    HTTP server's address (off by default: the bench measures the pipeline)."""
    sources = [
        s.model_copy(
            update={
                "loop": True,
                "realtime": speed is not None,
                "speed": speed or 1.0,
                "drop": "block" if speed is None else "oldest",
            }
        )
        for s in config.sources
    ]
    run_config = config.model_copy(
        update={
            "sources": sources,
            "mqtt": config.mqtt.model_copy(update={"publish_empty": publish_empty}),
            "http": config.http.model_copy(update={"listen": listen}),
        }
    )
    result = PipelineRun()
    window: dict[str, float] = {}
    acked = 0

    captured_at_open: dict[str, int] = {}

    def close_window() -> None:
        window["end"] = time.perf_counter()
        now = daemon.sources.captured()
        result.captured = {name: (captured_at_open.get(name, 0), seq) for name, seq in now.items()}
        decoders = decoder_cpu_seconds()  # other processes: not in this one's process_time()
        window["cpu_end"] = time.process_time() + decoders
        window["loop_cpu_end"] = thread_cpu_seconds("MainThread")
        window["readers_cpu_end"] = thread_cpu_seconds("streamd-src-") + decoders
        result.rss_end_mb = rss_mb()
        result.threads = proc_status("Threads")
        daemon.should_exit.set()

    def open_window() -> None:
        captured_at_open.update(daemon.sources.captured())
        window["start"] = time.perf_counter()
        decoders = decoder_cpu_seconds()
        window["cpu"] = time.process_time() + decoders
        window["loop_cpu"] = thread_cpu_seconds("MainThread")
        window["readers_cpu"] = thread_cpu_seconds("streamd-src-") + decoders
        result.rss_start_mb = rss_mb()

    def on_acked(message: Message, latency: float) -> None:
        nonlocal acked
        acked += 1
        if acked == WARMUP_FRAMES and "start" not in window:
            open_window()
        elif acked > WARMUP_FRAMES and "start" in window and "end" not in window:
            result.latencies.append(latency)
            if seconds is None and acked == WARMUP_FRAMES + frames:
                close_window()

    class Observer:
        """The bench, attached through the daemon's public hook."""

        def on_result(self, result: Result) -> None:
            if observe is not None and "start" in window and "end" not in window:
                observe(result)

        def on_acked(self, message: Message, latency: float) -> None:
            on_acked(message, latency)

    daemon = Daemon(run_config, observer=Observer())
    progress = Progress(label, int(seconds) if seconds else frames, "s" if seconds else "frames")

    async def report() -> None:
        next_sample = 0.0
        begun = time.perf_counter()
        while not daemon.should_exit.is_set():
            await asyncio.sleep(0.25)
            warm = seconds is not None and time.perf_counter() - begun >= 3.0 and daemon.engines.device is not None
            if "start" not in window and warm:
                open_window()
            if "start" not in window:
                continue
            running = time.perf_counter() - window["start"]
            if seconds is not None:
                progress.update(int(running))
                if running >= next_sample:
                    result.rss_samples.append((round(running, 1), round(rss_mb(), 1)))
                    next_sample += 10.0
                if running >= seconds:
                    close_window()
            else:
                progress.update(max(0, acked - WARMUP_FRAMES))

    reporter = asyncio.create_task(report())
    await daemon.serve()
    reporter.cancel()
    progress.update(int(seconds) if seconds else frames)
    result.tracking_ms_per_frame = daemon.tracking.ms_per_frame or 0.0
    result.snapshot_seconds = list(daemon.snapshots.seconds)
    elapsed = window.get("end", time.perf_counter()) - window.get("start", time.perf_counter())
    result.frames = len(result.latencies)
    result.fps = result.frames / elapsed if elapsed > 0 else 0.0
    cores = os.cpu_count() or 1
    result.cpu_percent = 100.0 * (window.get("cpu_end", 0.0) - window.get("cpu", 0.0)) / max(elapsed, 1e-6) / cores
    if result.frames and "loop_cpu_end" in window:  # the window closed: both ends measured
        result.loop_ms_per_frame = 1000.0 * (window["loop_cpu_end"] - window["loop_cpu"]) / result.frames
        result.readers_ms_per_frame = 1000.0 * (window["readers_cpu_end"] - window["readers_cpu"]) / result.frames
    result.device = daemon.engines.device or ""
    return result


def run_pipeline(config: Config, frames: int, label: str, **options: Any) -> PipelineRun:
    """:func:`measure_pipeline` in a new process (``common.in_new_process``), as a daemon runs
    in production."""
    return in_new_process(_run_pipeline, config, frames, label, options)


def _run_pipeline(config: Config, frames: int, label: str, options: dict[str, Any]) -> PipelineRun:
    configure("console", "warning")
    try:
        return asyncio.run(measure_pipeline(config, frames, label, **options))
    finally:  # a daemon's process keeps stop signals for a drain; the pool's must end on SIGTERM
        for stop in STOP_SIGNALS:
            signal.signal(stop, signal.SIG_DFL)
