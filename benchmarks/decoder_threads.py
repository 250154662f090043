"""FFmpeg's decoder threads against CPU per frame (#36; ``decode_threads = 0`` picks by size):
each clip decoded with 1 and 2 threads, alternating rounds, CPU and wall milliseconds per frame
(``time.process_time``: the process's every thread, FFmpeg's included). Clips made with ffmpeg:
the demo's 640x480 clip re-encoded as H.264, and a 1080p ``testsrc2`` H.264 clip.

    python benchmarks/decoder_threads.py [--rounds 2] [--frames 600]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import av


def decode(path: Path, threads: int, frames: int) -> tuple[float, float]:
    done, cpu, wall = 0, time.process_time(), time.perf_counter()
    while done < frames:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            for packet in container.demux(stream):
                done += len(packet.decode())
    return 1000 * (time.process_time() - cpu) / done, 1000 * (time.perf_counter() - wall) / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--demo", type=Path, default=Path.home() / ".cache/streamd/demo/people.mp4")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp())
    clips = {"h264-640x480": directory / "480.mp4", "h264-1920x1080": directory / "1080.mp4"}
    encode = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(args.demo), *encode, str(clips["h264-640x480"])], check=True)
    source = ["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "10"]
    subprocess.run(["ffmpeg", "-v", "error", *source, *encode, str(clips["h264-1920x1080"])], check=True)
    report: dict[str, dict[str, dict[str, float]]] = {}
    for name, path in clips.items():
        runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for threads in runs:
                runs[threads].append(decode(path, threads, args.frames))
        report[name] = {
            f"{threads} thread(s)": {
                "cpu_ms_per_frame": round(statistics.median(r[0] for r in done), 3),
                "wall_ms_per_frame": round(statistics.median(r[1] for r in done), 3),
            }
            for threads, done in runs.items()
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
