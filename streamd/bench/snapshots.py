"""``streamd bench --snapshots``: what snapshots cost. The pipeline with tracking alone and with
tracking + snapshots, alternating in rounds on the same clip; the JPEG encode time of every
snapshot taken (in its worker thread)."""

from __future__ import annotations

import statistics
from typing import Any

from streamd.bench.pipeline import run_pipeline
from streamd.config import Config
from streamd.snapshots.config import SnapshotConfig
from streamd.tracking.config import TrackingConfig


def with_snapshots(config: Config, on: bool) -> Config:
    """Sources without tracking get it with ``max_age = 5``: on the demo clip every appearance of a
    person is then a track that ends, so a snapshot (the default 30 frames bridges the gaps)."""
    tracking = TrackingConfig(max_age=5)
    sources = [
        s.model_copy(update={"tracking": s.tracking or tracking, "snapshots": SnapshotConfig() if on else None})
        for s in config.sources
    ]
    return config.model_copy(update={"sources": sources})


def run_snapshots(config: Config, frames: int, rounds: int) -> dict[str, Any]:
    off: list[float] = []
    on: list[float] = []
    encode: list[float] = []
    for index in range(rounds):
        off.append(run_pipeline(with_snapshots(config, False), frames, f"off {index + 1}").fps)
        run = run_pipeline(with_snapshots(config, True), frames, f"on {index + 1}")
        on.append(run.fps)
        encode += run.snapshot_seconds
    ms = sorted(1000 * s for s in encode)
    return {
        "frames": frames,
        "rounds": rounds,
        "fps_snapshots_off": [round(v, 1) for v in off],
        "fps_snapshots_on": [round(v, 1) for v in on],
        "fps_ratio_on_off": round(statistics.median(on) / statistics.median(off), 3),
        "snapshots": len(ms),
        "encode_ms_p50": round(ms[len(ms) // 2], 3) if ms else None,
        "encode_ms_p95": round(ms[int(len(ms) * 0.95)], 3) if ms else None,
    }
