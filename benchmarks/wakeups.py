"""streamd's threads, frame by frame: a daemon on the looping demo clip (unpaced, ``drop =
"block"``, every frame published at QoS 1), and for each thread of it and of its decoder process
the CPU milliseconds and the context switches (voluntary: it waited; involuntary: it was
preempted) per published frame, from /proc over one window.

    python benchmarks/wakeups.py [--free] [--warm 15] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamd.bench.free_model import free_model_path
from streamd.bench.workers import published_ok, wait_until_ready
from streamd.demo.broker import free_port
from streamd.demo.model import data_dir

Counts = dict[tuple[int, int, str], tuple[float, int, int]]


def config(model: Path, clip: str, port: int) -> str:
    return (
        f'[model]\npath = "{model}"\ndecoder = "tf-od"\ndevice = "CPU"\nprecision = "f32"\ncache_dir = ""\n'
        '[mqtt]\ninstance = "wakeups"\nbuffer_dir = ""\npublish_empty = true\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n[log]\nlevel = "warning"\n'
        f'[[sources]]\nname = "demo"\nuri = "{clip}"\nloop = true\nrealtime = false\ndrop = "block"\n'
    )


def snapshot(pid: int) -> Counts:
    """(process, thread, name) -> (CPU seconds, voluntary, involuntary switches)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    counts: Counts = {}
    for process in [pid, *map(int, children)]:
        for task in Path(f"/proc/{process}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
                status = (task / "status").read_text()
            except OSError:
                continue  # ended meanwhile
            fields = stat.rsplit(")", 1)[1].split()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            voluntary = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
            involuntary = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            counts[(process, int(task.name), name)] = (cpu, voluntary, involuntary)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--free", action="store_true", help="a detector that costs nothing")
    parser.add_argument("--warm", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    person = data_dir() / "models" / "ssdlite_mobilenet_v2_person" / "ssdlite_mobilenet_v2_person.xml"
    model = free_model_path(data_dir() / "bench") if args.free else person
    clip = str(data_dir() / "demo/people.mp4")
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "wakeups.toml"
        path.write_text(config(model, clip, port))
        daemon = subprocess.Popen([sys.executable, "-m", "streamd", "run", "-c", str(path)], cwd=work)
        try:
            wait_until_ready(daemon, port, 90, "the daemon did not become ready")
            time.sleep(args.warm)
            before, published, started = snapshot(daemon.pid), published_ok(port), time.perf_counter()
            time.sleep(args.seconds)
            after, frames = snapshot(daemon.pid), published_ok(port) - published
            elapsed = time.perf_counter() - started
        finally:
            daemon.terminate()
            daemon.wait(30)
    print(f"{frames / elapsed:.1f} frames a second; per frame: CPU ms, voluntary, involuntary switches")
    rows = []
    for key, (cpu, voluntary, involuntary) in after.items():
        if key in before:
            was_cpu, was_voluntary, was_involuntary = before[key]
            per_frame = ((cpu - was_cpu) * 1000, voluntary - was_voluntary, involuntary - was_involuntary)
            rows.append((*(value / frames for value in per_frame), key))
    for cpu, voluntary, involuntary, (process, thread, name) in sorted(rows, reverse=True):
        if cpu or voluntary or involuntary:
            role = "main" if thread == process == daemon.pid else ("decoder" if process != daemon.pid else "thread")
            print(f"{cpu:8.3f} {voluntary:6.2f} {involuntary:6.2f}  {role:8} {thread} {name}")


if __name__ == "__main__":
    main()
