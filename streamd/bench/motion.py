"""``streamd bench --motion``: what motion gating saves and what it costs, on the scene most
cameras show: a static, noisy view where a person passes 10 % of the time (the bench makes the
clip). N copies play in real time at 15 fps, each arm for the same time, with and without
``[sources.motion]`` (and with the INT8 model too, given ``--compare-int8``).

Reported per arm: CPU seconds per camera-second (the whole process, every thread), so cameras
per core at 15 fps = 1 / that; frames inferred and skipped; person-present frames in which a
person was detected (a skipped one counts as missed), and passes in which any frame had the
person; and, per model, the share of those the gated arm keeps of the every-frame arm's."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from streamd.bench.pipeline import measure_pipeline
from streamd.config import Config, SourceConfig
from streamd.demo.clip import make_quiet_clip
from streamd.sources.motion_config import MotionConfig
from streamd.types import Result

FPS = 15.0


def quiet_clip(directory: Path) -> tuple[Path, list[bool]]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "quiet.mp4"
    truth = make_quiet_clip(path, fps=FPS)
    return path, truth


def arm_config(config: Config, clip: Path, sources: int, gated: bool, model: Path | None) -> Config:
    motion = MotionConfig() if gated else None
    copies = [
        SourceConfig(name=f"cam-{i}", uri=str(clip), realtime=True, loop=True, drop="oldest", motion=motion)
        for i in range(sources)
    ]
    update: dict[str, Any] = {"sources": copies}
    if model is not None:
        update["model"] = config.model.model_copy(update={"path": model})
    return config.model_copy(update=update)


def run_arm(config: Config, truth: list[bool], seconds: float, label: str) -> dict[str, Any]:
    """One arm, as a user runs it (no message for frames without detections)."""
    inferred = present_found = 0
    found: dict[tuple[str, int], bool] = {}  # (source, pass) -> person detected in it
    length = len(truth)

    def observe(result: Result) -> None:
        # Skipped frames do not reach the stages here (no tracking, no publish_empty): the window's
        # frames are counted from what the sources captured.
        nonlocal inferred, present_found
        frame = result.frame
        if frame.skipped is not None:
            return
        inferred += 1
        if truth[frame.seq % length]:
            hit = any(d.label == "person" for d in result.detections)
            present_found += hit
            key = (frame.source, frame.seq // length)
            found[key] = found.get(key, False) or hit

    run = asyncio.run(
        measure_pipeline(config, 0, label, speed=1.0, seconds=seconds, observe=observe, publish_empty=False)
    )
    cameras = len(config.sources)
    cores = os.cpu_count() or 1
    cpu_per_camera_second = run.cpu_percent / 100.0 * cores / cameras
    ranges = run.captured
    frames = sum(last - first for first, last in ranges.values())
    present = sum(truth[i % length] for first, last in ranges.values() for i in range(first, last))
    passes = {(name, i // length) for name, (a, b) in ranges.items() for i in range(a, b) if truth[i % length]}
    return {
        "cpu_seconds_per_camera_second": round(cpu_per_camera_second, 4),
        "cameras_per_core_at_15fps": round(1.0 / cpu_per_camera_second, 1) if cpu_per_camera_second else None,
        "frames_per_camera_second": round(frames / seconds / cameras, 2),
        "inferred": inferred,
        "skipped_or_dropped": frames - inferred,
        "person_frames": present,
        "person_frames_detected": present_found,
        "passes": len(passes),
        "passes_detected": sum(found.get(key, False) for key in passes),
    }


def run_motion(
    config: Config, directory: Path, seconds: float, sources: int, int8: Path | None = None
) -> dict[str, Any]:
    clip, truth = quiet_clip(directory)
    models: list[tuple[str, Path | None]] = [("fp", None)] + ([("int8", int8)] if int8 is not None else [])
    report: dict[str, Any] = {
        "clip": {"frames": len(truth), "fps": FPS, "person_share": round(sum(truth) / len(truth), 3)},
        "sources": sources,
        "seconds": seconds,
        "arms": {},
    }
    for name, model in models:
        for gated in (False, True):
            label = f"{name}, {'gated' if gated else 'every frame'}"
            report["arms"][label] = run_arm(arm_config(config, clip, sources, gated, model), truth, seconds, label)
    for name, _ in models:
        every, gated = report["arms"][f"{name}, every frame"], report["arms"][f"{name}, gated"]
        if every["cpu_seconds_per_camera_second"]:
            share = gated["cpu_seconds_per_camera_second"] / every["cpu_seconds_per_camera_second"]
            report[f"{name}_gated_cpu_share"] = round(share, 3)
        # What gating keeps of what the model finds when it sees every frame (frame and pass level).
        if every["person_frames_detected"]:
            kept = gated["person_frames_detected"] / every["person_frames_detected"]
            report[f"{name}_gated_person_frames_kept"] = round(kept, 3)
        if every["passes_detected"]:
            report[f"{name}_gated_passes_kept"] = round(gated["passes_detected"] / every["passes_detected"], 3)
    return report
