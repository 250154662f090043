"""``streamd bench --recording``: what recording costs. The pipeline with tracking alone (OpenCV's
reader), with recording switched on for a label never seen (PyAV's reader and the pre-capture
ring, no clip), and with recording on (every person's clip written), alternating in rounds on
the same clip, into a temporary directory."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from streamd.bench.pipeline import run_pipeline
from streamd.config import Config
from streamd.recording.config import RecordingConfig
from streamd.tracking.config import TrackingConfig

ARMS = ("off", "ring_only", "on")


def with_recording(config: Config, arm: str, directory: Path) -> Config:
    """Sources without tracking get it with ``max_age = 5`` (every appearance is a track that ends)."""
    recording = None
    if arm != "off":
        labels = ["person"] if arm == "on" else ["never-seen"]
        recording = RecordingConfig(dir=str(directory), pre_capture=2.0, post_capture=1.0, labels=labels)
    tracking = TrackingConfig(max_age=5)
    sources = [
        s.model_copy(update={"tracking": s.tracking or tracking, "recording": recording}) for s in config.sources
    ]
    return config.model_copy(update={"sources": sources})


def run_recording(config: Config, frames: int, rounds: int) -> dict[str, Any]:
    fps: dict[str, list[float]] = {arm: [] for arm in ARMS}
    clips = 0
    with tempfile.TemporaryDirectory(prefix="streamd-bench-rec-") as folder:
        directory = Path(folder)
        for index in range(rounds):
            for arm in ARMS:
                arm_config = with_recording(config, arm, directory)
                fps[arm].append(run_pipeline(arm_config, frames, f"{arm} {index + 1}").fps)
        clips = sum(1 for _ in directory.rglob("*.mp4"))
        stored = sum(p.stat().st_size for p in directory.rglob("*.mp4"))
    off, ring, on = (statistics.median(fps[arm]) for arm in ARMS)
    return {
        "frames": frames,
        "rounds": rounds,
        **{f"fps_{arm}": [round(v, 1) for v in fps[arm]] for arm in ARMS},
        "fps_ratio_on_off": round(on / off, 3),
        "fps_ratio_ring_only_off": round(ring / off, 3),
        "clips": clips,
        "clip_bytes": stored,
    }
