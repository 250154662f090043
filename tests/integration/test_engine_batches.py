"""Under load the engine takes results a few at a time: a finished request wakes the event loop
only once half the request pool or less is still on the device (``inference/engine.py``), and a
result the loop was not woken for still leaves within ``held_at_most``, also when the device
stops answering. ``completed`` counts what the loop took, in whatever order the requests
finished (results then leave in capture order). The device is the real model on OpenVINO; a
gate in front of the engine's callback decides when each finished request is handed over (the
adapter factory is the seam)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest

from streamd.config import ModelConfig
from streamd.images import BgrImage
from streamd.inference.adapter import Done, OpenVinoAdapter
from streamd.inference.engine import Engine
from streamd.inference.model import prepare
from streamd.metrics import Metrics
from streamd.queue import FrameQueue
from streamd.types import Frame, Result
from tests.waits import until

POOL = 8  # requests: the loop is woken once 4 or fewer are left on the device


class GatedDevice:
    """The real device; each finished request waits on the device's callback thread until the
    test lets it through, so the test decides how many are still on the device when it is."""

    def __init__(self, compiled: ov.CompiledModel, requests: int, done: Done) -> None:
        self.gate = threading.Semaphore(0)
        self.passed = 0
        self._done = done
        self._device = OpenVinoAdapter(compiled, requests, self._through_gate)

    def _through_gate(self, userdata: Any, outputs: list[np.ndarray], seconds: float) -> None:
        self.gate.acquire()
        self.passed += 1
        self._done(userdata, outputs, seconds)

    def start(self, tensor: ov.Tensor, userdata: Any) -> None:
        self._device.start(tensor, userdata)

    def close(self) -> None:
        self.gate.release(POOL)  # whatever is still waiting goes through
        self._device.close()


Gated = Callable[[float], Awaitable[tuple[Engine, list[Result], GatedDevice]]]


@pytest.fixture
async def gated(default_model: Path) -> AsyncIterator[Gated]:
    """Starts an engine on the gated device; at the end its gate opens and it closes (the device's
    callback thread, which OpenVINO may share between compiled models, is never left waiting)."""
    model = ModelConfig.model_validate(
        {"path": default_model, "device": "CPU", "cache_dir": "", "precision": "f32", "infer_requests": POOL}
    )
    devices: list[GatedDevice] = []
    engines: list[Engine] = []

    def device(compiled: ov.CompiledModel, requests: int, done: Done) -> GatedDevice:
        devices.append(GatedDevice(compiled, requests, done))
        return devices[-1]

    async def start(held_at_most: float) -> tuple[Engine, list[Result], GatedDevice]:
        results: list[Result] = []
        engine = Engine(prepare(model), Metrics(), results.append, adapter=device, held_at_most=held_at_most)
        engines.append(engine)
        await engine.start()
        return engine, results, devices[-1]

    yield start
    for engine in engines:
        engine.close()


def frames(engine: Engine, count: int) -> FrameQueue:
    queue = FrameQueue(count)
    transform = engine.input_transform()
    picture = np.full((480, 640, 3), 128, np.uint8)
    for seq in range(count):
        queue.put_nowait(Frame("cam", seq, time.time(), time.monotonic(), 640, 480, transform(BgrImage(picture))))
    return queue


async def test_results_wait_for_the_device_to_be_half_idle_then_leave_together_in_order(gated: Gated) -> None:
    engine, results, gate = await gated(3600.0)
    queue = frames(engine, POOL)
    queue.close()  # the engine takes what is queued, then ends
    feeding = asyncio.create_task(engine.run(queue))
    await until(lambda: engine.status().inflight == POOL, 30, "the whole pool on the device")
    gate.gate.release(3)  # 7, 6, 5 still on the device: nothing wakes the loop
    await until(lambda: gate.passed == 3, 30, "three through the gate")
    for _ in range(50):
        await asyncio.sleep(0)
    assert engine.status().completed == 0 and results == [], "held while more than half the pool is on the device"
    gate.gate.release(1)  # 4 left: this one wakes the loop, which takes all four
    await until(lambda: engine.status().completed == 4, 30, "four taken together")
    gate.gate.release(4)  # each of the last wakes it at once
    await until(lambda: len(results) == POOL, 30, "every result")
    assert [r.frame.seq for r in results] == list(range(POOL))
    await asyncio.wait_for(feeding, 30)


async def test_a_result_held_for_a_device_that_stops_answering_leaves_within_the_bound(gated: Gated) -> None:
    engine, results, gate = await gated(0.05)
    queue = frames(engine, POOL)
    queue.close()
    feeding = asyncio.create_task(engine.run(queue))
    await until(lambda: engine.status().inflight == POOL, 30, "the whole pool on the device")
    gate.gate.release(3)  # then the device answers no more
    await until(lambda: engine.status().completed == 3, 10, "the three held results")
    # Requests may finish out of order: results leave in capture order up to the first missing.
    assert [r.frame.seq for r in results] == list(range(len(results)))
    gate.gate.release(POOL)  # it answers again: the rest follow
    await asyncio.wait_for(feeding, 30)
    assert len(results) == POOL
