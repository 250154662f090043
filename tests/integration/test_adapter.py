"""The OpenVINO adapter's callbacks keep their Python thread state from one request to the next
(``adapter.keep_thread_state``): pybind11 made a new one for every callback, which cost more CPU
than the callback's own work. What a thread keeps in a ``threading.local`` shows it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from streamd.inference.adapter import OpenVinoAdapter


def test_a_device_thread_keeps_its_python_state_from_one_callback_to_the_next(default_model: Path) -> None:
    compiled = ov.Core().compile_model(str(default_model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    local = threading.local()
    calls: list[tuple[int, int]] = []  # (native thread id, callbacks this thread state saw before)

    def done(userdata: Any, outputs: list[np.ndarray], seconds: float) -> None:
        calls.append((threading.get_native_id(), getattr(local, "seen", 0)))
        local.seen = getattr(local, "seen", 0) + 1

    adapter = OpenVinoAdapter(compiled, 2, done)
    frame = ov.Tensor(np.zeros((1, 300, 300, 3), np.uint8), shared_memory=True)
    for index in range(24):
        adapter.start(frame, index)
    adapter.close()
    assert len(calls) == 24
    per_thread: dict[int, list[int]] = {}
    for thread, seen in calls:
        per_thread.setdefault(thread, []).append(seen)
    for seen in per_thread.values():
        assert seen == list(range(len(seen))), per_thread  # never a fresh state after the first call
    assert max(len(seen) for seen in per_thread.values()) > 1


CYCLES = """
import sys
import numpy as np
import openvino as ov
from streamd.inference.adapter import OpenVinoAdapter

frame = ov.Tensor(np.zeros((1, 300, 300, 3), np.uint8), shared_memory=True)
options = {"INFERENCE_PRECISION_HINT": "f32", "CACHE_DIR": sys.argv[3]}  # cached: a cycle compiles in 0.1 s
for cycle in range(int(sys.argv[2])):
    compiled = ov.Core().compile_model(sys.argv[1], "CPU", options)
    answered = []
    adapter = OpenVinoAdapter(compiled, 2, lambda userdata, outputs, seconds: answered.append(userdata))
    for index in range(8):
        adapter.start(frame, index)
    adapter.close()
    assert len(answered) == 8, answered
    del compiled  # the model's threads are joined here, holding the interpreter lock
    print(cycle, flush=True)
"""


def test_a_closed_adapter_lets_its_compiled_model_go_without_waiting_for_ever(
    default_model: Path, tmp_path: Path
) -> None:
    """A device thread may destroy a finished request (and the callback it holds, which needs the
    interpreter lock) just after ``wait_all`` returned; dropping the compiled model meanwhile
    joined that thread holding the lock. Before ``close`` waited for that, this hung in every
    run, within 19 cycles (11 of 11, AMD EPYC, 2 cores; 24 or 8 requests a cycle)."""
    cycles = 40
    command = [sys.executable, "-c", CYCLES, str(default_model), str(cycles), str(tmp_path)]
    try:  # a cycle takes well under a second; the limit only turns a hang into a failure
        run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired as hung:
        raise AssertionError(f"hung after cycles {hung.stdout!r}") from None
    assert run.returncode == 0, (run.returncode, run.stdout[-200:], run.stderr[-2000:])
    assert run.stdout.split() == [str(cycle) for cycle in range(cycles)]
