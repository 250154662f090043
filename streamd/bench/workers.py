"""``streamd bench --workers N``: the service as users run it (``streamd run``, real processes),
one worker against N, in alternating rounds on the same sources and broker.

Each arm is a fresh ``streamd run`` with unpaced looping files (lossless: ``drop = "block"``) and
every frame published (``publish_empty``); throughput is read from its own /metrics
(``streamd_mqtt_published_total{outcome="ok"}``, acknowledged by the broker) over a window after
a warm-up, so the measuring costs the service nothing; CPU from /proc of the whole process tree.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streamd.bench.common import Progress, stat_cpu_seconds
from streamd.config import Config
from streamd.config_file import dump_config
from streamd.demo.broker import free_port

WARMUP_SECONDS = 5.0


@dataclass
class ServiceRun:
    workers: int
    fps: float
    cpu_percent: float  # of the machine's cores, the whole process tree
    cpu_ms_per_frame: float  # CPU time of the whole tree per published frame
    threads_per_source: float


def _tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _tree(int(child))
    return found


def cpu_seconds(pids: list[int]) -> float:
    return sum(stat_cpu_seconds(Path(f"/proc/{pid}/stat")) for pid in pids)


def _threads(pids: list[int]) -> int:
    return sum(len(list(Path(f"/proc/{pid}/task").glob("*"))) for pid in pids if Path(f"/proc/{pid}").exists())


def published_ok(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "streamd_mqtt_published"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("outcome") == "ok"
    )


def wait_until_ready(process: subprocess.Popen[bytes], port: int, timeout: float, failure: str) -> None:
    """Until the service on ``port`` answers /readyz with 200; ``SystemExit(failure)`` if its
    process ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(failure)
        time.sleep(0.2)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def measure_service(config: Config, workers: int, seconds: float, directory: Path, label: str) -> ServiceRun:
    port = free_port()
    sources = [s.model_copy(update={"loop": True, "realtime": False, "drop": "block"}) for s in config.sources]
    run_config = config.model_copy(
        update={
            "sources": sources,
            "mqtt": config.mqtt.model_copy(update={"publish_empty": True}),
            "http": config.http.model_copy(update={"listen": f"127.0.0.1:{port}"}),
            "log": config.log.model_copy(update={"format": "json", "level": "warning"}),
            "daemon": config.daemon.model_copy(update={"workers": workers}),
        }
    )
    path = directory / f"workers-{workers}.toml"
    path.write_text(dump_config(run_config))
    log = (directory / f"workers-{workers}.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "streamd", "run", "-c", str(path)], stdout=log, stderr=log)
    progress = Progress(label, int(seconds), "s")
    try:
        wait_until_ready(process, port, 180, f"streamd bench: the service did not become ready; see {log.name}")
        time.sleep(WARMUP_SECONDS)
        pids = _tree(process.pid)
        start, cpu_start, published_start = time.perf_counter(), cpu_seconds(pids), published_ok(port)
        while (elapsed := time.perf_counter() - start) < seconds:
            progress.update(int(elapsed))
            time.sleep(min(1.0, seconds - elapsed))
        published, cpu = published_ok(port), cpu_seconds(pids)
        elapsed = time.perf_counter() - start
        threads = _threads(_tree(process.pid))
        progress.update(int(seconds))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    frames = published - published_start
    used = cpu - cpu_start
    return ServiceRun(
        workers,
        frames / elapsed,
        100.0 * used / elapsed / (os.cpu_count() or 1),
        1000.0 * used / frames if frames else float("nan"),
        threads / len(sources),
    )


def run_workers(config: Config, count: int, rounds: int, seconds: float) -> dict[str, Any]:
    """``workers = 1`` against ``workers = count``, alternating, ``rounds`` times."""
    arms = (1, count)
    runs: dict[int, list[ServiceRun]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory(prefix="streamd-bench-") as tmp:
        for n in range(1, rounds + 1):
            for arm in arms:
                runs[arm].append(measure_service(config, arm, seconds, Path(tmp), f"workers={arm} {n}/{rounds}"))

    def median(arm: int, field: str) -> float:
        return round(float(statistics.median(getattr(r, field) for r in runs[arm])), 2)

    fps = {str(arm): median(arm, "fps") for arm in arms}
    return {
        "mode": "workers",
        "model": str(config.model.path),
        "sources": len(config.sources),
        "seconds": seconds,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "fps": fps,
        "fps_per_round": {str(arm): [round(r.fps, 1) for r in runs[arm]] for arm in arms},
        "ratio": round(fps[str(count)] / fps["1"], 3) if fps["1"] else None,
        "cpu_percent": {str(arm): median(arm, "cpu_percent") for arm in arms},
        "cpu_ms_per_frame": {str(arm): median(arm, "cpu_ms_per_frame") for arm in arms},
        "threads_per_source": {str(arm): median(arm, "threads_per_source") for arm in arms},
    }


def render_workers(report: dict[str, Any]) -> str:
    n = next(k for k in report["fps"] if k != "1")
    lines = [
        f"workers: {report['sources']} source(s), {report['rounds']} rounds of {report['seconds']:.0f} s, "
        f"{report['cpus']} CPUs, model {Path(report['model']).name}",
        f"{'':<12}{'FPS':>10}{'CPU %':>8}{'CPU ms/frame':>14}{'threads/source':>16}",
    ]
    for arm in ("1", n):
        lines.append(
            f"workers={arm:<4}{report['fps'][arm]:>10.1f}{report['cpu_percent'][arm]:>8.1f}"
            f"{report['cpu_ms_per_frame'][arm]:>14.3f}{report['threads_per_source'][arm]:>16.1f}"
        )
    lines.append(f"ratio workers={n} / workers=1: {report['ratio']}  (per round: {report['fps_per_round']})")
    return "\n".join(lines)
