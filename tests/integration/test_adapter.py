"""The OpenVINO adapter's callbacks keep their Python thread state from one request to the next
(``adapter.keep_thread_state``): pybind11 made a new one for every callback, which cost more CPU
than the callback's own work. What a thread keeps in a ``threading.local`` shows it."""

from __future__ import annotations

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
