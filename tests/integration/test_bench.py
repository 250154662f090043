"""``streamd bench`` end to end, small: every measurement it compares runs in a process of its own,
started from the clean launcher (``bench/common.py``), and the report still carries each figure
the README's table is made of."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from streamd.demo.broker import Mosquitto
from tests.clips import mixed_clip
from tests.conftest import REPO, write_config


def test_the_bench_measures_each_part_in_its_own_process(
    tmp_path: Path, default_model: Path, broker: Mosquitto
) -> None:
    clip, _ = mixed_clip(tmp_path)
    config = write_config(tmp_path / "streamd.toml", default_model, [{"name": "cam", "uri": clip}], broker.port)
    bench = [sys.executable, "-m", "streamd", "bench", "-c", str(config), "--free-model", "--frames", "300"]
    done = subprocess.run(
        [*bench, "--rounds", "1", "--json"], capture_output=True, text=True, timeout=600, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["pipeline"]["fps"] > 0 and report["reading_loop_fps"] > 0 and report["ceiling_fps"] > 0
    assert report["pipeline_over_reading_loop"] == round(report["pipeline"]["fps"] / report["reading_loop_fps"], 3)
    assert report["pipeline"]["reader_threads_ms_per_frame"] > 0, "the readers (thread and decoder process) measured"
    assert report["latency_at_80_percent"]["fps"] > 0 and report["decode_fps"] > 0
