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
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streamd.bench.free_model import free_model_path
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


def published(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "streamd_mqtt_published"
        for s in f.samples
        if s.name.endswith("_total") and s.labels.get("outcome") == "ok"
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(root: Path, model: Path, clip: str, seconds: float, work: Path) -> tuple[float, float]:
    port = free_port()
    path = work / f"owncost-{port}.toml"
    path.write_text(config(model, clip, port))
    env = {**os.environ, "PYTHONPATH": str(root.resolve())}
    process = subprocess.Popen([sys.executable, "-m", "streamd", "run", "-c", str(path)], env=env, cwd=work)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{root}: the daemon did not become ready")
            time.sleep(0.2)
        time.sleep(5)  # warm-up
        t0, c0, n0 = time.perf_counter(), cpu_seconds(process.pid), published(port)
        time.sleep(seconds)
        t1, c1, n1 = time.perf_counter(), cpu_seconds(process.pid), published(port)
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
