"""The event history's two figures (#35), in one run:

1. 100,000 rows in SQLite (8 sources, 5 labels, 3 zones, a month of starts): the API's filtered
   query (source + label + zone + a day, newest 50) and the unfiltered newest 50, median of 50;
2. the pipeline with tracking, events on against off, alternating rounds (the demo clip, looping
   unpaced, the real model): FPS.

    python benchmarks/events.py [--rounds 3] [--frames 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from streamd.bench.pipeline import bench_config, measure_pipeline
from streamd.config_file import load_config
from streamd.demo.model import data_dir
from streamd.events.store import EventStore, Query


def fill(store: EventStore, rows: int) -> None:
    rng = random.Random(0)
    now = time.time()
    batch = []
    for i in range(rows):
        start = now - rng.uniform(0, 30 * 86400)
        batch.append({
            "id": f"{int(start * 1000)}-cam{i % 8}-{i}", "track_id": i, "source": f"cam{i % 8}",
            "label": rng.choice(["person", "car", "dog", "cat", "bicycle"]), "start": start, "end": start + 20,
            "top_score": rng.random(), "zones": json.dumps(rng.sample(["door", "yard", "street"], rng.randint(0, 2))),
            "lines": "[]", "stationary": False, "snapshot": None, "clip": None, "updated": start + 20,
        })  # fmt: skip
        if len(batch) == 5000:
            store.write(batch)
            batch = []
    store.write(batch)


def timed(store: EventStore, query: Query, runs: int = 50) -> tuple[float, int]:
    seconds = []
    found = 0
    for _ in range(runs):
        started = time.perf_counter()
        found = len(store.query(query))
        seconds.append(time.perf_counter() - started)
    return 1000 * statistics.median(seconds), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=1500)
    args = parser.parse_args()
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'events.db'}")
        store.migrate()
        fill(store, 100_000)
        day = time.time() - 5 * 86400
        filtered = Query(source="cam3", label="person", zone="door", after=day, before=day + 86400, limit=50)
        report["rows"] = 100_000
        report["filtered_query_ms"], report["filtered_found"] = timed(store, filtered)
        report["newest_50_ms"], _ = timed(store, Query(limit=50))
        report["one_source_newest_50_ms"], _ = timed(store, Query(source="cam5", limit=50))
        store.close()
        config = bench_config(load_config(data_dir() / "demo" / "streamd.toml"), tracking=True)
        fps: dict[str, list[float]] = {"events_off": [], "events_on": []}
        for index in range(args.rounds):
            for arm in fps:
                events = config.events.model_copy(
                    update={"enabled": arm == "events_on", "db": f"sqlite:///{Path(tmp) / 'pipeline.db'}"}
                )
                run = asyncio.run(
                    measure_pipeline(config.model_copy(update={"events": events}), args.frames, f"{arm} {index + 1}")
                )
                fps[arm].append(round(run.fps, 1))
        report["fps"] = fps
        report["fps_ratio_on_off"] = round(
            statistics.median(fps["events_on"]) / statistics.median(fps["events_off"]), 3
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
