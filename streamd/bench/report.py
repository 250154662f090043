"""One bench run: the measurements in alternating rounds, and their report."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openvino as ov

from streamd.bench.common import cpu_model, in_new_process, read_frames
from streamd.bench.model import (
    measure_bare,
    measure_baseline,
    measure_decode,
    measure_reading_loop,
    run_benchmark_app,
)
from streamd.bench.pipeline import PipelineRun, measure_pipeline, run_pipeline
from streamd.config import Config
from streamd.inference.model import compile_variant, prepare
from streamd.tools.verify import reference_input


def run_soak(config: Config, seconds: float) -> dict[str, Any]:
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


def run_rounds(config: Config, files: list[str], frames: int, baseline: bool, rounds: int) -> dict[str, Any]:
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
    per_round: dict[str, list[float]] = {
        "ceiling_optimal": [],
        "ceiling_pipeline_requests": [],
        "reading_loop": [],
        "pipeline": [],
    }
    model_size = (int(prepared.image.size[0]), int(prepared.image.size[1]))
    if shutil.which("benchmark_app") or Path(sys.executable).with_name("benchmark_app").exists():
        per_round["benchmark_app"] = []
    if baseline:
        per_round["baseline"] = []
    pipelines: list[PipelineRun] = []
    for n in range(1, rounds + 1):
        tag = f"{n}/{rounds}"
        if baseline:
            per_round["baseline"].append(
                in_new_process(measure_baseline, config, max(300, frames // 3), f"(e) baseline {tag}")
            )
        for key, requests in (("ceiling_optimal", optimal), ("ceiling_pipeline_requests", pipeline_requests)):
            label = f"(a) ceiling x{requests} {tag}"
            per_round[key].append(in_new_process(measure_bare, config.model, real_inputs, frames, label, requests))
        if "benchmark_app" in per_round:
            found = run_benchmark_app(prepared, device)
            if found is not None:
                per_round["benchmark_app"].append(found)
        per_round["reading_loop"].append(in_new_process(measure_reading_loop, files[0], frames, model_size))
        run = run_pipeline(config, frames, f"(c) pipeline {tag}")
        pipelines.append(run)
        per_round["pipeline"].append(run.fps)
    medians = {k: statistics.median(v) for k, v in per_round.items() if v}
    pipeline = sorted(pipelines, key=lambda run: run.fps)[len(pipelines) // 2]
    ceiling = max(medians["ceiling_optimal"], medians["ceiling_pipeline_requests"])
    best_bare = max(ceiling, medians.get("benchmark_app", 0.0))
    ceiling_random = in_new_process(measure_bare, config.model, random_inputs, frames, "(a) ceiling, random input")
    del compiled
    decode = in_new_process(measure_decode, files, frames * 2)
    clip_fps = cv2.VideoCapture(files[0], cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FPS) or 25.0
    rate = 0.8 * pipeline.fps
    speed = rate / (clip_fps * len(files))
    paced = run_pipeline(config, max(200, frames // 2), "(d) latency at 80 %", speed=speed)
    report: dict[str, Any] = {
        "model": prepared.name,
        "device": device,
        "precision": bare.precision_label,
        "shape": prepared.image.shape,
        "preprocess": prepared.preprocess_mode,
        "sources": len(config.sources),
        "frames": frames,
        "machine": {"cpus": os.cpu_count(), "openvino": ov.get_version(), "cpu": cpu_model()},
        "requests": {"optimal": optimal, "pipeline": pipeline_requests},
        "ceiling_fps": round(ceiling, 1),
        "ceiling_optimal_requests_fps": round(medians["ceiling_optimal"], 1),
        "ceiling_pipeline_requests_fps": round(medians["ceiling_pipeline_requests"], 1),
        "ceiling_random_input_fps": round(ceiling_random, 1),
        "benchmark_app_fps": round(medians["benchmark_app"], 1) if "benchmark_app" in medians else None,
        "decode_fps": round(decode, 1),
        "reading_loop_fps": round(medians["reading_loop"], 1),
        # streamd's own cost with --free-model (#36's goal: >= 0.8), per source against one loop.
        "pipeline_over_reading_loop": round(pipeline.fps / len(files) / medians["reading_loop"], 3),
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
            "loop_thread_ms_per_frame": round(pipeline.loop_ms_per_frame, 3),
            "reader_threads_ms_per_frame": round(pipeline.readers_ms_per_frame, 3),
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


def render_table(r: dict[str, Any]) -> str:
    p, d, rounds = r["pipeline"], r["latency_at_80_percent"], r["rounds"]

    def row(label: str, value: float | None, key: str | None = None, missing: str = "n/a") -> str:
        shown = f"{value:>10.1f}" if value else f"{missing:>10}"
        per = f"   rounds {rounds[key]}" if key and key in rounds else ""
        return f"{label:<46}{shown}{per}"

    req = r["requests"]
    lines = [
        f"streamd bench: {r['model']} on {r['device']} ({r['precision']}), input {r['shape']}, "
        f"preprocess {r['preprocess']}, {r['sources']} source(s), {r['frames']} frames per run",
        f"machine: {r['machine']['cpu']}, {r['machine']['cpus']} CPUs, OpenVINO {r['machine']['openvino']}",
        "",
        f"{'measurement (medians of the rounds)':<46}{'FPS':>10}",
        row(
            "(e) baseline: newcomer loop, library defaults"
            if r.get("baseline_fps")
            else "(e) baseline: newcomer loop (run with --baseline)",
            r.get("baseline_fps"),
            "baseline",
            "-",
        ),
        row(
            f"(a) ceiling: bare model, {req['optimal']} requests", r["ceiling_optimal_requests_fps"], "ceiling_optimal"
        ),
        row(
            f"    bare model, {req['pipeline']} requests (the pipeline's)",
            r["ceiling_pipeline_requests_fps"],
            "ceiling_pipeline_requests",
        ),
        row("    bare model, random input", r["ceiling_random_input_fps"]),
        row("    benchmark_app -hint throughput", r["benchmark_app_fps"], "benchmark_app", "not found"),
        row("(b) decode only", r["decode_fps"]),
        row("(c) pipeline end to end (MQTT acked)", p["fps"], "pipeline"),
        f"    latency p50/p95/p99 {p['latency_ms']['p50']}/{p['latency_ms']['p95']}/{p['latency_ms']['p99']} ms "
        f"(queue full: files are not paced), CPU {p['cpu_percent']} %, RSS {p['rss_mb']} MB, "
        f"{p['threads']} threads, {p['fps_per_core']} FPS per busy core"
        + (f", tracking {p['tracking_ms_per_frame']} ms/frame" if p["tracking_ms_per_frame"] else ""),
        f"    CPU per frame: event loop's thread {p['loop_thread_ms_per_frame']} ms (the interpreter's own work), "
        f"readers {p['reader_threads_ms_per_frame']} ms (decode, resize: their threads and decoder processes)",
        row(f"(d) paced at 80 % of (c): {d['offered_fps']} FPS offered", d["fps"]),
        f"    latency p50/p95/p99 {d['latency_ms']['p50']}/{d['latency_ms']['p95']}/{d['latency_ms']['p99']} ms"
        + (
            f"; below the offer: sources are played at their clip's speed times a factor, and live "
            f"(non-file) sources in the config cannot be sped up ({d['fps']} of {d['offered_fps']})"
            if d["fps"] < 0.9 * d["offered_fps"]
            else ""
        ),
        "",
        f"ratio (c) / max(ceiling, benchmark_app) = {r['ratio']}",
        f"pipeline per source / plain reading loop (OpenCV read -> resize -> RGB, {r['reading_loop_fps']} FPS) "
        f"= {r['pipeline_over_reading_loop']}",
    ]
    if r["inference_only_ratio"]:
        lines.append(
            f"inference-only ratio (a, random) / benchmark_app = {r['inference_only_ratio']} (our bare-model "
            "loop against OpenVINO's own tool on the same model: ~1 means the ceiling is measured fairly)"
        )
    if "speedup_over_baseline" in r:
        lines.append(f"speed-up over the baseline (c) / (e) = {r['speedup_over_baseline']}x")
    else:
        lines.append("(e), the newcomer loop, runs with --baseline")
    return "\n".join(lines)
