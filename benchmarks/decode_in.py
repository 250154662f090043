"""Where a source decodes (#36): ``decode_in = "thread"`` (the reader thread, in the daemon's
process) against ``"process"`` (a decoder process of its own), alternating rounds of the real
daemon on the demo clip (looping, unpaced, every frame published and acknowledged): FPS and CPU
per frame of the event loop's thread and of the readers (their threads plus decoder processes),
with the free model (streamd's own cost) and the real one.

    python benchmarks/decode_in.py [--rounds 3] [--frames 4000] [--real-frames 1500]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from streamd.bench.common import cpu_model
from streamd.bench.free_model import free_model_path
from streamd.bench.pipeline import bench_config, run_pipeline
from streamd.config import Config
from streamd.config_file import load_config
from streamd.images import one_thread_per_call
from streamd.logging import configure


def with_decode_in(config: Config, where: str) -> Config:
    sources = [s.model_copy(update={"decode_in": where}) for s in config.sources]
    return config.model_copy(update={"sources": sources})


def arms(config: Config, frames: int, rounds: int, label: str) -> dict[str, Any]:
    runs: dict[str, list[Any]] = {"thread": [], "process": []}
    for n in range(rounds):
        for where in runs:
            run = run_pipeline(with_decode_in(config, where), frames, f"{label} {where} {n + 1}")
            runs[where].append(run)
    report: dict[str, Any] = {}
    for where, done in runs.items():
        report[where] = {
            "fps": round(statistics.median(r.fps for r in done), 1),
            "fps_rounds": [round(r.fps, 1) for r in done],
            "loop_ms_per_frame": round(statistics.median(r.loop_ms_per_frame for r in done), 3),
            "readers_ms_per_frame": round(statistics.median(r.readers_ms_per_frame for r in done), 3),
            "cpu_percent": round(statistics.median(r.cpu_percent for r in done), 1),
        }
    report["process_over_thread"] = round(report["process"]["fps"] / report["thread"]["fps"], 3)
    return report


def main() -> None:  # each run in a process of its own (streamd.bench.pipeline.run_pipeline)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=4000)
    parser.add_argument("--real-frames", type=int, default=1500)
    parser.add_argument("-c", "--config", type=Path, default=Path.home() / ".cache/streamd/demo/streamd.toml")
    args = parser.parse_args()
    configure("console", "warning")
    one_thread_per_call()  # as the daemon runs
    config = bench_config(load_config(args.config))
    free = config.model.model_copy(
        update={
            "path": free_model_path(Path.home() / ".cache/streamd/bench"),
            "decoder": "tf-od",
            "labels": "coco91",
            "cache_dir": "",
        }
    )
    report = {
        "cpu": cpu_model(),
        "free_model": arms(config.model_copy(update={"model": free}), args.frames, args.rounds, "free"),
        "real_model": arms(config, args.real_frames, args.rounds, "real"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
