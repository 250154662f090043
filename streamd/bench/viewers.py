"""``streamd bench --viewers N``: what the live view costs. The pipeline with nobody looking and
with N viewers of every source's ``live.mjpeg`` (a separate process reads them, as a browser on
another machine would), alternating in rounds: unpaced (inferred FPS, the ratio), then paced at
the clip's rate with one viewer against none (CPU per camera)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
from typing import Any

from streamd.bench.pipeline import PipelineRun, measure_pipeline
from streamd.config import Config
from streamd.demo.broker import free_port


async def _with_viewers(
    config: Config, viewers: int, fps: float, seconds: float, speed: float | None, label: str
) -> tuple[PipelineRun, int]:
    port = free_port()
    reader: asyncio.subprocess.Process | None = None
    if viewers:
        urls = [
            f"http://127.0.0.1:{port}/api/sources/{s.name}/live.mjpeg?fps={fps}&bbox=1&zones=1" for s in config.sources
        ]
        reader = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamd.bench.viewers", str(viewers), *urls, stdout=asyncio.subprocess.PIPE
        )
    try:
        config = config.model_copy(update={"http": config.http.model_copy(update={"max_viewers": max(1, viewers)})})
        run = await measure_pipeline(config, 0, label, speed=speed, seconds=seconds, listen=f"127.0.0.1:{port}")
    finally:
        parts = 0
        if reader is not None:
            reader.send_signal(signal.SIGTERM)
            out, _ = await reader.communicate()
            with contextlib.suppress(ValueError):
                parts = int(out.decode().strip() or 0)
    return run, parts


def run_viewers(config: Config, viewers: int, seconds: float, rounds: int, fps: float = 5.0) -> dict[str, Any]:
    cameras = len(config.sources)
    arms: dict[str, list[PipelineRun]] = {"none": [], "viewers": [], "paced_none": [], "paced_one": []}
    parts: dict[str, int] = {"viewers": 0, "paced_one": 0}
    for index in range(rounds):
        for arm, count, speed in (("none", 0, None), ("viewers", viewers, None)):
            run, got = asyncio.run(_with_viewers(config, count, fps, seconds, speed, f"{arm} {index + 1}"))
            arms[arm].append(run)
            parts[arm] = parts.get(arm, 0) + got
    for index in range(rounds):
        for arm, count in (("paced_none", 0), ("paced_one", 1)):
            run, got = asyncio.run(_with_viewers(config, count, fps, seconds, 1.0, f"{arm} {index + 1}"))
            arms[arm].append(run)
            parts[arm] = parts.get(arm, 0) + got
    fps_none = statistics.median(r.fps for r in arms["none"])
    fps_viewers = statistics.median(r.fps for r in arms["viewers"])
    cores = os.cpu_count() or 1

    def cpu_per_camera(runs: list[PipelineRun]) -> float:
        """Percent of one core per camera (the bench's CPU figure is of all cores)."""
        return round(statistics.median(r.cpu_percent for r in runs) * cores / cameras, 1)

    return {
        "cameras": cameras,
        "viewers_per_camera": viewers,
        "viewer_fps": fps,
        "seconds": seconds,
        "rounds": rounds,
        "fps_no_viewer": [round(r.fps, 1) for r in arms["none"]],
        "fps_with_viewers": [round(r.fps, 1) for r in arms["viewers"]],
        "fps_ratio_viewers_none": round(fps_viewers / fps_none, 3) if fps_none else None,
        "jpeg_parts_received_per_second": round(parts["viewers"] / (rounds * seconds), 1),
        "paced_cpu_percent_of_a_core_per_camera_no_viewer": cpu_per_camera(arms["paced_none"]),
        "paced_cpu_percent_of_a_core_per_camera_one_viewer": cpu_per_camera(arms["paced_one"]),
        "paced_fps_no_viewer": [round(r.fps, 1) for r in arms["paced_none"]],
        "paced_fps_one_viewer": [round(r.fps, 1) for r in arms["paced_one"]],
    }


async def _read(urls: list[str], per_url: int) -> int:
    """Reads every stream ``per_url`` times over, as a browser does (plain HTTP/1.1, large reads),
    until SIGTERM; the JPEG parts received."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    received = 0

    async def one(url: str) -> None:
        nonlocal received
        address, _, path = url.removeprefix("http://").partition("/")
        host, _, port = address.rpartition(":")
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(0.2)  # the daemon is not listening yet
                continue
            writer.write(f"GET /{path} HTTP/1.1\r\nHost: {address}\r\n\r\n".encode())
            try:
                while chunk := await reader.read(1 << 16):
                    received += chunk.count(b"Content-Type: image/jpeg")
            except OSError:
                pass
            finally:
                writer.close()
            await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(one(url)) for url in urls for _ in range(per_url)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return received


if __name__ == "__main__":  # the viewers' process: python -m streamd.bench.viewers N URL...
    print(asyncio.run(_read(sys.argv[2:], int(sys.argv[1]))), flush=True)
