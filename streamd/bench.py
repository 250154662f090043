"""``streamd bench``: the pipeline measured against the model's own ceiling, in one run.

(a) ceiling: the bare model at its fixed shape, an AsyncInferQueue over pre-allocated inputs
    and no Python work per frame, with the optimal request count and with the pipeline's own
    (the better is the ceiling), and ``benchmark_app`` on the same model, shape and precision;
(b) decode only: the configured file sources read as fast as OpenCV can, one thread each;
(c) pipeline: the real daemon (decode -> queue -> infer -> decode -> MQTT to a real broker);
(d) latency: the pipeline again with sources paced at 80 % of (c)'s throughput;
(e) with ``--baseline``, the loop a newcomer writes with the libraries' defaults.
(a), (c) and (e) alternate in rounds; ``ratio`` = (c) / min(max((a), benchmark_app), (b)).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from streamd.config import Config, TrackingConfig, is_file_uri
from streamd.daemon import Daemon
from streamd.demo.broker import Mosquitto, port_open
from streamd.inference.model import PreparedModel, compile_variant, prepare
from streamd.logging import configure
from streamd.metrics import Metrics
from streamd.sinks.mqtt import Message, MqttSink
from streamd.verify import reference_input

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


def compile_bare(prepared: PreparedModel) -> tuple[ov.CompiledModel, str]:
    """The network alone, placed and compiled exactly as the daemon's, without pre-processing."""
    variant = compile_variant(prepared, None, bare=True)
    return variant.compiled, variant.placement.device


def measure_ceiling(
    compiled: ov.CompiledModel, inputs: list[np.ndarray], frames: int, label: str, requests: int = 0
) -> float:
    """The bare model kept busy by ``requests`` requests (0: OPTIMAL_NUMBER_OF_INFER_REQUESTS)."""
    requests = requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, requests)
    tensors = [ov.Tensor(x) for x in inputs]  # pre-allocated: no per-frame Python work
    for i in range(requests * 4):
        queue.start_async({0: tensors[i % len(tensors)]})
    queue.wait_all()
    progress = Progress(label, frames)
    started = time.perf_counter()
    for i in range(frames):
        queue.start_async({0: tensors[i % len(tensors)]})
        if i % 64 == 0:
            progress.update(i)
    queue.wait_all()
    fps = frames / (time.perf_counter() - started)
    progress.update(frames)
    return fps


def run_benchmark_app(prepared: PreparedModel, device: str, seconds: int = 10) -> float | None:
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(tool).exists():
        return None
    info = prepared.image
    shape = f"{info.name}[{','.join(map(str, info.shape))}]"
    hint = prepared.config.performance_hint.lower()
    cmd = [tool, "-m", str(prepared.config.path), "-d", device, "-hint", hint, "-shape", shape, "-t", str(seconds)]
    if prepared.config.precision != "auto":
        cmd += ["-infer_precision", prepared.config.precision]
    print(f"benchmark_app: {' '.join(cmd)}", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    match = re.search(r"Throughput:\s+([\d.]+)\s+FPS", result.stdout)
    return float(match.group(1)) if match else None


def measure_decode(uris: list[str], frames: int) -> float:
    """All file sources at once, one thread each, as the daemon reads them."""
    per_source = max(1, frames // len(uris))
    counts = [0] * len(uris)

    def read(i: int, uri: str) -> None:
        cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
        while counts[i] < per_source:
            if not cap.grab():
                cap.release()
                cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
                continue
            cap.retrieve()
            counts[i] += 1
        cap.release()

    threads = [threading.Thread(target=read, args=(i, u)) for i, u in enumerate(uris)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


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
    config: Config, frames: int, label: str, speed: float | None = None, seconds: float | None = None
) -> PipelineRun:
    """The real daemon; sources loop, files run unpaced (or paced at ``speed``) and lose nothing.

    Stops after ``frames`` acknowledged messages, or after ``seconds`` (the soak), sampling RSS."""
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
            "mqtt": config.mqtt.model_copy(update={"publish_empty": True}),
            "metrics": config.metrics.model_copy(update={"listen": ""}),
        }
    )
    daemon = Daemon(run_config)
    result = PipelineRun()
    window: dict[str, float] = {}
    acked = 0

    def close_window() -> None:
        window["end"] = time.perf_counter()
        window["cpu_end"] = time.process_time()
        result.rss_end_mb = rss_mb()
        result.threads = proc_status("Threads")
        daemon.should_exit.set()

    def on_acked(message: Message, latency: float) -> None:
        nonlocal acked
        acked += 1
        if acked == WARMUP_FRAMES:
            window["start"] = time.perf_counter()
            window["cpu"] = time.process_time()
            result.rss_start_mb = rss_mb()
        elif acked > WARMUP_FRAMES and "end" not in window:
            result.latencies.append(latency)
            if seconds is None and acked == WARMUP_FRAMES + frames:
                close_window()

    daemon.sink.on_acked = on_acked
    progress = Progress(label, int(seconds) if seconds else frames, "s" if seconds else "frames")

    async def report() -> None:
        next_sample = 0.0
        while not daemon.should_exit.is_set():
            await asyncio.sleep(0.25)
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
    elapsed = window.get("end", time.perf_counter()) - window.get("start", time.perf_counter())
    result.frames = len(result.latencies)
    result.fps = result.frames / elapsed if elapsed > 0 else 0.0
    cores = os.cpu_count() or 1
    result.cpu_percent = 100.0 * (window.get("cpu_end", 0.0) - window.get("cpu", 0.0)) / max(elapsed, 1e-6) / cores
    result.device = daemon.engine.device if daemon.engine else ""
    return result


def measure_baseline(config: Config, frames: int, label: str = "(e) baseline") -> float:
    """What a competent newcomer writes with the libraries' defaults: ``core.compile_model`` on
    the CPU with no properties (OpenVINO's own default hint and precision), the input reshaped to
    the size it receives, one thread: cv2 read -> cvtColor -> resize -> ``infer`` -> decode ->
    paho publish at the configured QoS (acknowledged before the run ends)."""
    core = ov.Core()
    model = core.read_model(str(config.model.path))
    prepared = prepare(config.model.model_copy(update={"device": "CPU", "precision": "auto"}), core)
    model.reshape({prepared.image.name: prepared.image.shape})
    compiled = core.compile_model(model, "CPU")
    request = compiled.create_infer_request()
    prepared.decoder.bind(compiled.outputs, prepared.image.size)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"streamd-bench-baseline-{os.getpid()}")
    client.connect(config.mqtt.host, config.mqtt.port)
    client.loop_start()
    uri = next(s.uri for s in config.sources if is_file_uri(s.uri))
    cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
    rgb = prepared.preprocessing.color_order == "RGB"
    progress = Progress(label, frames)
    done = 0
    started = 0.0
    last: paho.MQTTMessageInfo | None = None
    while done < frames + WARMUP_FRAMES:
        ok, image = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
            continue
        if done == WARMUP_FRAMES:
            started = time.perf_counter()
        x = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if rgb else image, prepared.image.size)
        outputs = list(request.infer(x[np.newaxis]).values())
        detections = prepared.decoder.decode(outputs, image.shape[1], image.shape[0])
        payload = json.dumps({"frame": done, "detections": [d.as_json() for d in detections]})
        last = client.publish("streamd/bench/baseline", payload, qos=config.mqtt.qos)
        done += 1
        if done > WARMUP_FRAMES:
            progress.update(done - WARMUP_FRAMES)
    if last is not None:
        last.wait_for_publish(30)
    fps = frames / (time.perf_counter() - started)
    cap.release()
    client.loop_stop()
    client.disconnect()
    return fps


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
) -> int:
    configure("console", "warning")
    config = bench_config(config, copies, tracking)
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
        if sink:
            report = measure_sink(config, sink)
        elif soak:
            report = _soak(config, soak)
        else:
            report = _bench(config, files, frames, baseline, rounds)
    finally:
        if broker is not None:
            broker.stop()
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(json.dumps(report, indent=2) if sink else render_soak(report) if soak else render_table(report))
    return 0


async def _sink_run(config: Config, messages: int, buffer_dir: str, outage: Mosquitto | None) -> dict[str, float]:
    """Publish ``messages`` detection-sized payloads; with ``outage``, all while the broker is down."""
    mqtt = config.mqtt.model_copy(update={"buffer_dir": buffer_dir, "buffer": messages + 10})
    sink = MqttSink(mqtt, Metrics())
    sink.start()
    await sink.connected.wait()
    payload = json.dumps(
        {
            "schema": "streamd/detections/1",
            "source": "bench",
            "frame": 1,
            "ts": "2026-11-25T15:55:30.338Z",
            "latency_ms": 31.2,
            "width": 640,
            "height": 480,
            "model": "ssdlite_mobilenet_v2_person",
            "device": "CPU",
            "detections": [{"label": "person", "class_id": 1, "score": 0.94, "box": [6.0, 114.0, 162.0, 346.0]}],
        }
    )
    result: dict[str, float] = {}
    if outage is not None:
        outage.stop()
        while sink.connected.is_set():  # noqa: ASYNC110 - a bench loop, polled on purpose
            await asyncio.sleep(0.01)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(messages):
        sink.publish(f"streamd/{mqtt.instance}/bench/detections", payload)
        if i % 200 == 0:
            await asyncio.sleep(0)
    if outage is not None:
        result["store_per_s"] = messages / (time.perf_counter() - started)
        result["store_cpu_us"] = 1e6 * (time.process_time() - cpu) / messages
        outage.start()
        started, cpu = time.perf_counter(), time.process_time()
    while sink.counts["published"] < messages:  # noqa: ASYNC110 - a bench loop, polled on purpose
        await asyncio.sleep(0.01)
    result["delivered_per_s"] = messages / (time.perf_counter() - started)
    result["cpu_us_per_message"] = 1e6 * (time.process_time() - cpu) / messages
    await sink.close(30)
    return {k: round(v, 1) for k, v in result.items()}


def measure_sink(config: Config, messages: int) -> dict[str, Any]:
    """The MQTT sink alone: QoS as configured, memory buffer vs the SQLite buffer across an outage."""
    with Mosquitto() as broker, tempfile.TemporaryDirectory() as tmp:
        local = config.model_copy(
            update={"mqtt": config.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port})}
        )
        return {
            "messages": messages,
            "qos": config.mqtt.qos,
            "connected_memory_buffer": asyncio.run(_sink_run(local, messages, "", None)),
            "connected_disk_buffer": asyncio.run(_sink_run(local, messages, tmp, None)),
            "outage_then_flush_disk_buffer": asyncio.run(_sink_run(local, messages, tmp, broker)),
        }


def _soak(config: Config, seconds: float) -> dict[str, Any]:
    """The pipeline at full load for ``seconds``: does RSS stay flat?"""
    run = asyncio.run(measure_pipeline(config, 0, "soak", seconds=seconds))
    samples = run.rss_samples
    times = np.array([t for t, _ in samples])
    rss = np.array([m for _, m in samples])
    # Slope over the second half: the first minutes include allocator and cache warm-up.
    half = times >= times[-1] / 2 if len(times) > 4 else np.ones_like(times, dtype=bool)
    slope = float(np.polyfit(times[half], rss[half], 1)[0]) * 3600 if half.sum() >= 2 else 0.0
    return {
        "seconds": seconds,
        "sources": len(config.sources),
        "fps": round(run.fps, 1),
        "frames": run.frames,
        "latency_ms": run.latency_ms(),
        "rss_start_mb": float(rss[0]) if len(rss) else None,
        "rss_end_mb": float(rss[-1]) if len(rss) else None,
        "rss_slope_mb_per_hour_second_half": round(slope, 2),
        "threads": run.threads,
        "rss_samples": samples,
    }


def render_soak(r: dict[str, Any]) -> str:
    return (
        f"soak: {r['seconds']:.0f} s, {r['sources']} source(s), {r['frames']} frames at {r['fps']} FPS, "
        f"latency {r['latency_ms']}\n"
        f"RSS {r['rss_start_mb']} MB -> {r['rss_end_mb']} MB; slope over the second half "
        f"{r['rss_slope_mb_per_hour_second_half']} MB/h; {r['threads']} threads"
    )


def _bench(config: Config, files: list[str], frames: int, baseline: bool, rounds: int) -> dict[str, Any]:
    prepared = prepare(config.model)
    samples = read_frames(files[0], 64)
    if not samples:
        raise SystemExit(f"streamd bench: cannot read frames from {files[0]}")
    bare = compile_variant(prepared, None, bare=True)
    compiled, device = bare.compiled, bare.placement.device
    optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    pipeline_requests = bare.requests  # what the daemon's engine uses (model.infer_requests or 2x optimal)
    real_inputs = [reference_input(prepared, image) for image in samples]
    rng = np.random.default_rng(0)
    random_inputs = [rng.integers(0, 256, real_inputs[0].shape).astype(real_inputs[0].dtype) for _ in range(8)]
    # Shared, noisy machines drift by +-10 % within a minute: every measurement runs once per
    # round, in turn, and the ratios use the medians, so all of them see the same machine.
    per_round: dict[str, list[float]] = {"ceiling_optimal": [], "ceiling_pipeline_requests": [], "pipeline": []}
    if shutil.which("benchmark_app") or Path(sys.executable).with_name("benchmark_app").exists():
        per_round["benchmark_app"] = []
    if baseline:
        per_round["baseline"] = []
    pipelines: list[PipelineRun] = []
    for n in range(1, rounds + 1):
        tag = f"{n}/{rounds}"
        if baseline:
            per_round["baseline"].append(measure_baseline(config, max(300, frames // 3), f"(e) baseline {tag}"))
        per_round["ceiling_optimal"].append(
            measure_ceiling(compiled, real_inputs, frames, f"(a) ceiling x{optimal} {tag}", optimal)
        )
        per_round["ceiling_pipeline_requests"].append(
            measure_ceiling(compiled, real_inputs, frames, f"(a) ceiling x{pipeline_requests} {tag}", pipeline_requests)
        )
        if "benchmark_app" in per_round:
            found = run_benchmark_app(prepared, device)
            if found is not None:
                per_round["benchmark_app"].append(found)
        run = asyncio.run(measure_pipeline(config, frames, f"(c) pipeline {tag}"))
        pipelines.append(run)
        per_round["pipeline"].append(run.fps)
    medians = {k: statistics.median(v) for k, v in per_round.items() if v}
    pipeline = sorted(pipelines, key=lambda run: run.fps)[len(pipelines) // 2]
    ceiling = max(medians["ceiling_optimal"], medians["ceiling_pipeline_requests"])
    best_bare = max(ceiling, medians.get("benchmark_app", 0.0))
    ceiling_random = measure_ceiling(compiled, random_inputs, frames, "(a) ceiling, random input")
    del compiled
    decode = measure_decode(files, frames * 2)
    clip_fps = cv2.VideoCapture(files[0], cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FPS) or 25.0
    rate = 0.8 * pipeline.fps
    speed = rate / (clip_fps * len(files))
    paced = asyncio.run(measure_pipeline(config, max(200, frames // 2), "(d) latency at 80 %", speed=speed))
    report: dict[str, Any] = {
        "model": prepared.name,
        "device": device,
        "precision": bare.precision_label,
        "shape": prepared.image.shape,
        "preprocess": prepared.preprocess_mode,
        "sources": len(config.sources),
        "frames": frames,
        "machine": {"cpus": os.cpu_count(), "openvino": ov.get_version(), "cpu": _cpu_model()},
        "requests": {"optimal": optimal, "pipeline": pipeline_requests},
        "ceiling_fps": round(ceiling, 1),
        "ceiling_optimal_requests_fps": round(medians["ceiling_optimal"], 1),
        "ceiling_pipeline_requests_fps": round(medians["ceiling_pipeline_requests"], 1),
        "ceiling_random_input_fps": round(ceiling_random, 1),
        "benchmark_app_fps": round(medians["benchmark_app"], 1) if "benchmark_app" in medians else None,
        "decode_fps": round(decode, 1),
        "pipeline": {
            "fps": round(pipeline.fps, 1),
            "latency_ms": pipeline.latency_ms(),
            "cpu_percent": round(pipeline.cpu_percent, 1),
            "rss_mb": round(pipeline.rss_end_mb, 1),
            "threads": pipeline.threads,
            "fps_per_core": round(pipeline.fps / (pipeline.cpu_percent / 100 * (os.cpu_count() or 1)), 1)
            if pipeline.cpu_percent
            else None,
            "tracking_ms_per_frame": round(pipeline.tracking_ms_per_frame, 3) or None,
        },
        "latency_at_80_percent": {
            "offered_fps": round(rate, 1),
            "fps": round(paced.fps, 1),
            "latency_ms": paced.latency_ms(),
        },
        "rounds": {k: [round(x, 1) for x in v] for k, v in per_round.items()},
        # Against the best the bare model does here, whoever measured it, or decoding if lower.
        "ratio": round(pipeline.fps / min(best_bare, decode), 3),
        "inference_only_ratio": round(ceiling_random / medians["benchmark_app"], 3)
        if "benchmark_app" in medians
        else None,
    }
    if "baseline" in medians:
        report["baseline_fps"] = round(medians["baseline"], 1)
        report["speedup_over_baseline"] = round(pipeline.fps / medians["baseline"], 2)
    return report


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def render_table(r: dict[str, Any]) -> str:
    p, d, rounds = r["pipeline"], r["latency_at_80_percent"], r["rounds"]

    def row(label: str, value: float | None, key: str | None = None) -> str:
        shown = f"{value:>10.1f}" if value else f"{'n/a':>10}"
        per = f"   rounds {rounds[key]}" if key and key in rounds else ""
        return f"{label:<46}{shown}{per}"

    req = r["requests"]
    lines = [
        f"streamd bench: {r['model']} on {r['device']} ({r['precision']}), input {r['shape']}, "
        f"preprocess {r['preprocess']}, {r['sources']} source(s), {r['frames']} frames per run",
        f"machine: {r['machine']['cpu']}, {r['machine']['cpus']} CPUs, OpenVINO {r['machine']['openvino']}",
        "",
        f"{'measurement (medians of the rounds)':<46}{'FPS':>10}",
        row("(e) baseline: newcomer loop, library defaults", r.get("baseline_fps"), "baseline"),
        row(
            f"(a) ceiling: bare model, {req['optimal']} requests", r["ceiling_optimal_requests_fps"], "ceiling_optimal"
        ),
        row(
            f"    bare model, {req['pipeline']} requests (the pipeline's)",
            r["ceiling_pipeline_requests_fps"],
            "ceiling_pipeline_requests",
        ),
        row("    bare model, random input", r["ceiling_random_input_fps"]),
        row("    benchmark_app -hint throughput", r["benchmark_app_fps"], "benchmark_app"),
        row("(b) decode only", r["decode_fps"]),
        row("(c) pipeline end to end (MQTT acked)", p["fps"], "pipeline"),
        f"    latency p50/p95/p99 {p['latency_ms']['p50']}/{p['latency_ms']['p95']}/{p['latency_ms']['p99']} ms "
        f"(queue full: files are not paced), CPU {p['cpu_percent']} %, RSS {p['rss_mb']} MB, "
        f"{p['threads']} threads, {p['fps_per_core']} FPS per busy core"
        + (f", tracking {p['tracking_ms_per_frame']} ms/frame" if p["tracking_ms_per_frame"] else ""),
        row("(d) paced at 80 % of (c)", d["fps"]),
        f"    latency p50/p95/p99 {d['latency_ms']['p50']}/{d['latency_ms']['p95']}/{d['latency_ms']['p99']} ms",
        "",
        f"ratio (c) / max(ceiling, benchmark_app) = {r['ratio']}",
    ]
    if r["inference_only_ratio"]:
        lines.append(f"inference-only ratio (a, random) / benchmark_app = {r['inference_only_ratio']}")
    if "speedup_over_baseline" in r:
        lines.append(f"speed-up over the baseline (c) / (e) = {r['speedup_over_baseline']}x")
    return "\n".join(lines)
