"""The engine's hand-off: results finish out of order on the device, leave in capture order per
source, and ``flushed(source)`` waits for exactly that source's frames. A stand-in replaces the
compiled model here because the case (request 2 finishing before request 1) is one a real device
produces only by chance; the real model is exercised end to end in tests/integration."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from streamd.inference.engine import Engine, _Pending
from streamd.metrics import Metrics
from streamd.types import Detection, Frame, Result


class CountingDecoder:
    def decode(self, outputs: list[np.ndarray], width: int, height: int) -> list[Detection]:
        return [Detection("person", 1, float(outputs[0][0]), (0.0, 0.0, 1.0, 1.0))]


def engine(results: list[Result]) -> Engine:
    prepared = SimpleNamespace(name="m", decoder=CountingDecoder(), config=SimpleNamespace(device="CPU"))
    found = Engine(prepared, Metrics(), results.append)  # type: ignore[arg-type]
    found._slots = asyncio.Semaphore(8)
    return found


def frame(source: str, seq: int) -> Frame:
    return Frame(source, seq, 0.0, 0.0, 1, 1, None)


def finish(e: Engine, p: _Pending) -> None:
    """What the OpenVINO callback hands over for the frame's one part, as the loop receives it."""
    e._complete([((p, 0), [np.array([p.frame.seq / 10])], 0.01)])


async def test_results_leave_in_capture_order_per_source_and_flushed_waits_for_its_source() -> None:
    results: list[Result] = []
    e = engine(results)
    frames = {(s, i): _Pending(frame(s, i), [None]) for s in ("a", "b") for i in range(3)}
    for p in frames.values():
        e._order[p.frame.source].append(p)
        e._inflight += 1
    a_flushed = asyncio.create_task(e.flushed("a"))
    finish(e, frames[("a", 2)])
    finish(e, frames[("b", 0)])
    finish(e, frames[("a", 1)])
    assert [(r.frame.source, r.frame.seq) for r in results] == [("b", 0)], "a/1, a/2 wait for a/0"
    finish(e, frames[("a", 0)])
    assert [(r.frame.source, r.frame.seq) for r in results] == [("b", 0), ("a", 0), ("a", 1), ("a", 2)]
    await asyncio.sleep(0)
    assert a_flushed.done(), "every frame of a is out"
    b_flushed = asyncio.create_task(e.flushed("b"))
    await asyncio.sleep(0)
    assert not b_flushed.done(), "b still has two on the device"
    finish(e, frames[("b", 2)])
    finish(e, frames[("b", 1)])
    await asyncio.sleep(0)
    assert b_flushed.done() and [r.frame.seq for r in results if r.frame.source == "b"] == [0, 1, 2]
    assert results[1].detections[0].score == 0.0 and results[1].model == "m" and results[1].device == "CPU"
