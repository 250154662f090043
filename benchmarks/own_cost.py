"""streamd's own cost in two source trees, alternating in one run: a detector that costs nothing
(``streamd.bench.free_model``), one process, 2 unpaced looping sources, every frame published at
QoS 1; FPS from each service's own ``streamd_mqtt_published_total{outcome="ok"}``, CPU from /proc.

    git worktree add /tmp/before <rev>
    python benchmarks/own_cost.py /tmp/before . [--rounds 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamd.bench.free_model import free_model_path
from streamd.bench.workers import cpu_seconds, published_ok, wait_until_ready
from streamd.demo.broker import free_port
from streamd.demo.model import data_dir


def config(model: Path, clip: str, port: int) -> str:
    sources = "".join(
        f'[[sources]]\nname = "s{i}"\nuri = "{clip}"\nloop = true\nrealtime = false\ndrop = "block"\n' for i in range(2)
    )
    return (
        f'[model]\npath = "{model}"\ndecoder = "tf-od"\ndevice = "CPU"\ncache_dir = ""\n'
        '[mqtt]\ninstance = "owncost"\nbuffer_dir = ""\npublish_empty = true\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n[log]\nlevel = "warning"\n{sources}'
    )


def measure(root: Path, model: Path, clip: str, seconds: float, work: Path) -> tuple[float, float]:
    port = free_port()
    path = work / f"owncost-{port}.toml"
    path.write_text(config(model, clip, port))
    env = {**os.environ, "PYTHONPATH": str(root.resolve())}
    process = subprocess.Popen([sys.executable, "-m", "streamd", "run", "-c", str(path)], env=env, cwd=work)
    try:
        wait_until_ready(process, port, 90, f"{root}: the daemon did not become ready")
        time.sleep(5)  # warm-up
        t0, c0, n0 = time.perf_counter(), cpu_seconds([process.pid]), published_ok(port)
        time.sleep(seconds)
        t1, c1, n1 = time.perf_counter(), cpu_seconds([process.pid]), published_ok(port)
    finally:
        process.terminate()
        process.wait(30)
    return round((n1 - n0) / (t1 - t0), 1), round(1000 * (c1 - c0) / (n1 - n0), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    model = free_model_path(data_dir() / "bench")
    clip = str(data_dir() / "demo" / "people.mp4")
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, root in (("before", args.before), ("after", args.after)):
                results[name].append(measure(root, model, clip, args.seconds, Path(tmp)))
                print(name, results[name][-1], "(FPS, CPU ms per frame)", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
