"""``streamd bench --decode DEVICE``: what decoding costs on DEVICE against the CPU, in the same
run, alternating: each file source read through the reader's own path (``PacketCapture``, the
picture scaled to the model's input as the engine asks for it), CPU milliseconds per frame (this
process's, every thread: FFmpeg's decoder threads included) and frames per second. With
``save``, the model-size pictures of both are written (``<save>/<clip>-<device>.npz``) so a run
on a machine without the model can be compared by detections where the model runs."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamd.images import one_thread_per_call
from streamd.metrics import Metrics
from streamd.sources.decoding import CPU, DecodeChoice
from streamd.sources.packets import PacketCapture


def decode_once(
    path: str, device: str, size: tuple[int, int], frames: int, keep: list[np.ndarray] | None = None
) -> dict[str, Any]:
    choice = DecodeChoice(Path(path).stem, device, Metrics(), quiet=True)
    hwaccel = choice.hwaccel()
    capture = PacketCapture(path, None, 10.0, "tcp", 0, hwaccel, choice.fell_back)
    if not capture.isOpened():
        raise RuntimeError(f"cannot open {path}")
    count = 0
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        while count < frames:
            ok, picture = capture.read()
            if not ok or picture is None:
                break
            scaled = picture.scaled(size, rgb=True)
            if keep is not None:
                keep.append(scaled)
            count += 1
    finally:
        capture.release()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "frames": count,
        "fps": count / wall if wall else 0.0,
        "cpu_ms_per_frame": 1000 * cpu / max(count, 1),
        "device": choice.device,
        "fallback": choice.reason,
    }


def run_decode(
    paths: list[str], device: str, size: tuple[int, int], rounds: int = 3, frames: int = 600, save: Path | None = None
) -> dict[str, Any]:
    one_thread_per_call()  # as the daemon runs
    report: dict[str, Any] = {"device": device, "model_input": list(size), "rounds": rounds, "clips": {}}
    for path in paths:
        arms: dict[str, list[dict[str, Any]]] = {CPU: [], device: []}
        for index in range(rounds):
            for arm in (CPU, device):
                keep: list[np.ndarray] | None = [] if save is not None and index == 0 else None
                arms[arm].append(decode_once(path, arm, size, frames, keep))
                if keep:
                    assert save is not None
                    save.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(save / f"{Path(path).stem}-{arm}.npz", frames=np.stack(keep))
        summary: dict[str, Any] = {
            arm: {
                "fps": round(statistics.median(r["fps"] for r in runs), 1),
                "cpu_ms_per_frame": round(statistics.median(r["cpu_ms_per_frame"] for r in runs), 3),
                "decoded_on": runs[-1]["device"],
                "fallback": runs[-1]["fallback"],
            }
            for arm, runs in arms.items()
        }
        cpu_ms, device_ms = summary[CPU]["cpu_ms_per_frame"], summary[device]["cpu_ms_per_frame"]
        summary["cpu_ratio_cpu_over_device"] = round(cpu_ms / device_ms, 2) if device_ms else None
        report["clips"][Path(path).name] = summary
    return report
