"""The model alone: its ceiling (ours and benchmark_app's), decoding alone, and the newcomer's loop."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from streamd.bench.common import WARMUP_FRAMES, Progress, in_new_process
from streamd.config import Config, ModelConfig, is_file_uri
from streamd.inference.model import PreparedModel, compile_variant, prepare


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


def benchmark_app_command(prepared: PreparedModel, device: str, seconds: int = 10) -> list[str] | None:
    """OpenVINO's own tool on the same model, shape, hint and precision (None: not installed)."""
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(tool).exists():
        return None
    info = prepared.image
    shape = f"{info.name}[{','.join(map(str, info.shape))}]"
    hint = prepared.config.performance_hint.lower()
    cmd = [tool, "-m", str(prepared.config.path), "-d", device, "-hint", hint, "-shape", shape, "-t", str(seconds)]
    if prepared.config.precision != "auto":
        cmd += ["-infer_precision", prepared.config.precision]
    return cmd


def benchmark_app_fps(cmd: list[str], seconds: int = 10) -> float | None:
    print(f"benchmark_app: {' '.join(cmd)}", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    match = re.search(r"Throughput:\s+([\d.]+)\s+FPS", result.stdout)
    return float(match.group(1)) if match else None


def run_benchmark_app(prepared: PreparedModel, device: str, seconds: int = 10) -> float | None:
    cmd = benchmark_app_command(prepared, device, seconds)
    return in_new_process(benchmark_app_fps, cmd, seconds) if cmd is not None else None


def measure_bare(model: ModelConfig, inputs: list[np.ndarray], frames: int, label: str, requests: int = 0) -> float:
    """:func:`measure_ceiling` on the model compiled here (for a process of its own)."""
    compiled = compile_variant(prepare(model), None, bare=True).compiled
    return measure_ceiling(compiled, inputs, frames, label, requests)


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


def measure_reading_loop(uri: str, frames: int, size: tuple[int, int], label: str = "(b) reading loop") -> float:
    """The plain loop (#36's yardstick): OpenCV read -> resize to the model's input -> RGB, one
    thread, the first file source, looping; frames per second."""
    cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
    count = 0
    started = time.perf_counter()
    while count < frames:
        ok, image = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
            continue
        cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        count += 1
    cap.release()
    return count / (time.perf_counter() - started)


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
