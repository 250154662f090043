"""``streamd bench``: which measurement the arguments ask for, with a broker to publish to."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from streamd.bench.common import clean_launcher
from streamd.bench.decode import run_decode
from streamd.bench.free_model import free_model_path
from streamd.bench.int8 import run_compare_int8
from streamd.bench.motion import run_motion
from streamd.bench.pipeline import bench_config
from streamd.bench.recording import run_recording
from streamd.bench.report import render_soak, render_table, run_rounds, run_soak
from streamd.bench.sink import measure_sink
from streamd.bench.snapshots import run_snapshots
from streamd.bench.viewers import run_viewers
from streamd.bench.workers import render_workers, run_workers
from streamd.config import Config, is_file_uri
from streamd.demo.broker import Mosquitto, port_open
from streamd.logging import configure


def run_bench(
    config: Config,
    frames: int = 2000,
    as_json: bool = False,
    baseline: bool = False,
    rounds: int = 3,
    copies: int = 0,
    tracking: bool = False,
    soak: float | None = None,
    sink: int = 0,
    snapshots: bool = False,
    recording: bool = False,
    compare_int8: Path | None = None,
    motion: float | None = None,
    workers: int = 0,
    free_model: bool = False,
    seconds: float = 20.0,
    viewers: int = 0,
    decode: str | None = None,
) -> int:
    configure("console", "warning")
    config = bench_config(config, copies, tracking)
    if free_model:
        directory = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamd" / "bench"
        model = config.model.model_copy(
            update={"path": free_model_path(directory), "decoder": "tf-od", "labels": "coco91", "cache_dir": ""}
        )
        config = config.model_copy(update={"model": model})
    files = [s.uri for s in config.sources if is_file_uri(s.uri)]
    if not files:
        print("streamd bench: needs at least one file source to replay", file=sys.stderr)
        return 78
    broker: Mosquitto | None = None
    if not port_open(config.mqtt.host, config.mqtt.port):
        broker = Mosquitto().start()
        config = config.model_copy(
            update={"mqtt": config.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port})}
        )
    try:
        with clean_launcher():  # before the bench does any work of its own
            if decode is not None:
                from streamd.inference.model import prepare

                width, height = prepare(config.model).image.size
                report = run_decode(files, decode, (int(width), int(height)), rounds, frames)
            elif workers:
                report = run_workers(config, workers, rounds, seconds)
            elif viewers:
                report = run_viewers(config, viewers, seconds, rounds)
            elif sink:
                report = measure_sink(config, sink)
            elif motion is not None:
                directory = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamd" / "bench"
                report = run_motion(config, directory, motion, copies or 8, compare_int8)
            elif snapshots:
                report = run_snapshots(config, frames, rounds)
            elif recording:
                report = run_recording(config, frames, rounds)
            elif compare_int8 is not None:
                report = run_compare_int8(config, compare_int8, frames, rounds)
            elif soak:
                report = run_soak(config, soak)
            else:
                report = run_rounds(config, files, frames, baseline, rounds)
    finally:
        if broker is not None:
            broker.stop()
    if as_json:
        print(json.dumps(report, indent=2))
    elif workers:
        print(render_workers(report))
    else:
        print(
            json.dumps(report, indent=2)
            if sink or snapshots or recording or compare_int8 or motion or viewers or decode
            else render_soak(report)
            if soak
            else render_table(report)
        )
    return 0
