"""The engine: frames from the queue into the device (``adapter.py``: an ``AsyncInferQueue``),
results back to the loop.

The loop never blocks on the device: it awaits a free request (a semaphore sized by the
request pool, four times ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``), starts it, and moves on. The
OpenVINO callback does the least it can on the device thread (copy the small outputs) and hands
them over in batches (``Handoff``); decoding and publishing happen on the loop.

A finished request wakes the loop only when half the pool or less is still on the device (every
stream then still has a request running and one queued, so the loop has a whole inference to
refill it): under load the loop takes results a few at a time, and each wake-up, turn of the
loop, MQTT write and acknowledgement serves several frames; a device less busy than that wakes
the loop for every result, at once. A result is never held longer than ``HELD_AT_MOST``.

Inputs are shared, not copied (``share_inputs=True``): the frame that owns the buffer rides in
the request's userdata until its callback has run, so the memory outlives the inference (the
open use-after-free report on ``AsyncInferQueue.start_async(share_inputs=True)`` is about
buffers freed before that).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from math import isfinite

import numpy as np
import openvino as ov

from streamd.images import Decoded, Transform
from streamd.inference.adapter import AdapterFactory, InferenceAdapter, OpenVinoAdapter
from streamd.inference.model import CompiledVariant, PreparedModel, compile_variant, frame_preparer
from streamd.inference.regions import merge, shift
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.queue import FrameQueue, QueueClosed
from streamd.runtime.failures import Failures
from streamd.runtime.handoff import Handoff
from streamd.types import Detection, Frame, Result

log = get_logger(__name__)

ResultCallback = Callable[[Result], None]
# Seconds a finished result may wait for the loop while the device is more than half busy (the
# bound on the added latency on a slow device, and what a device that stops answering leaves).
HELD_AT_MOST = 0.05


@dataclass(frozen=True)
class EngineStatus:
    device: str
    compiled: bool
    inflight: int
    completed: int  # frames fully through the engine
    last_progress: float  # monotonic time of the last completion


@dataclass(eq=False)
class _Pending:
    """A frame taken from the queue, in its source's order: its parts on the device (the whole
    frame is one part; with motion regions, one per crop) and, once all are back, its detections."""

    frame: Frame
    parts: list[list[Detection] | None]
    detections: list[Detection] | None = None


Request = tuple[_Pending, int]  # what rides in a request's userdata: the frame and the part


@dataclass
class _Runner:
    variant: CompiledVariant
    device: InferenceAdapter


class Engine:
    def __init__(
        self,
        prepared: PreparedModel,
        metrics: Metrics,
        on_result: ResultCallback,
        failures: Failures | None = None,
        adapter: AdapterFactory = OpenVinoAdapter,
        held_at_most: float = HELD_AT_MOST,
    ) -> None:
        """``adapter``: builds the device for each compiled variant (the seam a test uses);
        ``held_at_most``: seconds a finished result may wait while the device is busy."""
        self._failures = failures
        self._adapter = adapter
        self._held_at_most = held_at_most
        self.prepared = prepared
        self._metrics = metrics
        self._on_result = on_result
        self._runners: dict[tuple[int, int] | None, _Runner] = {}
        self._slots: asyncio.Semaphore | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Results cross from OpenVINO threads in batches: one loop wake-up per batch, not per frame.
        self._done: Handoff[tuple[Request, list[np.ndarray], float]] | None = None
        # Requests on the device: started (counted on the loop) less finished (counted on the
        # device's threads: ``next`` on a counter is one step under the interpreter lock).
        self._started = 0
        self._finished = itertools.count(1)
        self._keep_busy = 0  # requests on the device at or below which a finished one wakes the loop
        self._sweep: asyncio.TimerHandle | None = None
        self.base: CompiledVariant | None = None
        self.completed = 0  # frames fully through the engine; the watchdog reads progress here
        self.last_progress = time.monotonic()
        self._retired = False
        # Per source, the frames taken from the queue in capture order; finished ones wait here
        # for the earlier frames of their source.
        self._order: defaultdict[str, deque[_Pending]] = defaultdict(deque)
        self._waiting_for_frame = False
        self._flushed: defaultdict[str, list[asyncio.Future[None]]] = defaultdict(list)

    def status(self) -> EngineStatus:
        return EngineStatus(self.device, self.base is not None, self._inflight, self.completed, self.last_progress)

    @property
    def device(self) -> str:
        return self.base.placement.device if self.base else self.prepared.config.device

    def input_transform(self) -> Transform:
        """What the reader threads do to each frame before queueing it (so the loop does not):
        resize and colour order on the host when pre-processing runs there, and wrap the pixels in an ov.Tensor
        that shares their memory (start_async then skips its numpy dispatch)."""
        prepare_frame = frame_preparer(self.prepared)

        def transform(frame: Decoded) -> ov.Tensor:
            return ov.Tensor(prepare_frame(frame), shared_memory=True)

        return transform

    async def start(self) -> CompiledVariant:
        """Compile for frames of the network's size (host mode's only variant) in a thread."""
        self._done = Handoff(asyncio.get_running_loop(), self._complete)
        runner = await self._runner(None)
        self.base = runner.variant
        self._slots = asyncio.Semaphore(runner.variant.requests)
        self._keep_busy = runner.variant.requests // 2
        return runner.variant

    async def _runner(self, key: tuple[int, int] | None) -> _Runner:
        runner = self._runners.get(key)
        if runner is None:
            variant = await asyncio.to_thread(compile_variant, self.prepared, key)
            device = self._adapter(variant.compiled, variant.requests, self._on_done)
            runner = self._runners[key] = _Runner(variant, device)
            log.info(
                "model_compiled",
                device=variant.placement.device,
                frame_size=key,
                seconds=round(variant.seconds, 3),
                requests=variant.requests,
            )
        return runner

    async def run(self, queue: FrameQueue) -> None:
        """Feed frames until the queue is closed and empty, then wait for the last results."""
        assert self._slots is not None, "start() first"
        net_size = self.prepared.image.size
        while not self._retired:
            self._waiting_for_frame = True
            try:
                frame = await queue.get()
            except QueueClosed:
                break
            except asyncio.CancelledError:
                if self._retired:
                    break
                raise
            finally:
                self._waiting_for_frame = False
            # Counted as the source's from the moment it leaves the queue (flushed() relies on it).
            pending = _Pending(frame, [])
            self._order[frame.source].append(pending)
            self._metrics.queue_depth.set(len(queue))
            if frame.skipped is not None:  # motion gating: no inference, but its place in the order
                pending.detections = []
                self._release(frame.source)
                continue
            await self._start_frame(pending, net_size)
        await self.drain()

    async def _start_frame(self, pending: _Pending, net_size: tuple[int, int]) -> None:
        """One request per part: the whole frame, or each motion region (merged when all are back)."""
        assert self._slots is not None
        frame = pending.frame
        if frame.regions:
            inputs = [region.tensor for region in frame.regions]
            runner = await self._runner(None)
        else:
            inputs = [frame.tensor]
            shape = frame.tensor.shape
            size = (shape[2], shape[1])
            runner = await self._runner(None if size == net_size or net_size[0] < 0 else size)
        pending.parts = [None] * len(inputs)
        for index, tensor in enumerate(inputs):
            await self._slots.acquire()
            if index == 0:
                frame.started = time.monotonic()
                self._metrics.queue_wait_for(frame.source).observe(frame.started - frame.captured)
            self._start(runner, tensor, (pending, index))

    def _start(self, runner: _Runner, tensor: ov.Tensor, request: Request) -> None:
        """One request on the device (a slot is held); its userdata keeps the input alive."""
        self._inflight += 1
        self._idle.clear()
        self._metrics.inflight_requests.set(self._inflight)
        self._watch_held()
        self._started += 1
        runner.device.start(tensor, request)

    def _watch_held(self) -> None:
        """While more than half the pool is out, results may be held: take them every
        ``held_at_most``."""
        if self._inflight > self._keep_busy and self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._held_at_most, self._take_held)

    def _take_held(self) -> None:
        self._sweep = None
        if self._done is not None:
            self._done.take()
        self._watch_held()

    async def flushed(self, source: str) -> None:
        """Until every frame of ``source`` taken from the queue has been reported."""
        if self._order[source]:
            waiter = asyncio.get_running_loop().create_future()
            self._flushed[source].append(waiter)
            await waiter

    def retire(self, task: asyncio.Task[None]) -> None:
        """Stop taking frames (a reload swapped in a new engine); in-flight ones still finish."""
        self._retired = True
        if self._waiting_for_frame:
            task.cancel()  # safe: nothing is taken from the queue while waiting in get()

    async def drain(self) -> None:
        await self._idle.wait()

    def close(self) -> None:
        """Release the compiled models and their request pools (after a reload retired this
        engine and its last frames are out): OpenVINO frees its threads and memory with them.
        Dropping the hand-off breaks the engine's only reference cycle, so the engine (and the
        compiled model it holds) goes now, not at some later garbage collection."""
        for runner in self._runners.values():
            runner.device.close()
        self._runners.clear()
        self.base = None
        self._done = None
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    def _on_done(self, userdata: Request, outputs: list[np.ndarray], seconds: float) -> None:
        # The device's thread: hand over, nothing else. ``_started`` read here may lag (it only
        # grows): the loop is then woken early, never late.
        assert self._done is not None
        on_device = self._started - next(self._finished)
        self._done.put((userdata, outputs, seconds), wake=on_device <= self._keep_busy)

    def _complete(self, batch: list[tuple[Request, list[np.ndarray], float]]) -> None:
        assert self._slots is not None
        for _ in batch:
            self._slots.release()  # first, so the feeder refills the device before we decode
        self._inflight -= len(batch)
        self._metrics.inflight_requests.set(self._inflight)
        self.completed += len(batch)
        self.last_progress = time.monotonic()
        for (pending, index), outputs, seconds in batch:
            self._metrics.inference_seconds.observe(seconds)
            frame = pending.frame
            frame.inference += seconds
            if frame.regions:  # a crop's detections, in frame pixels
                region = frame.regions[index]
                pending.parts[index] = shift(self._decode(frame, outputs, region.width, region.height), region)
            else:
                pending.parts[index] = self._decode(frame, outputs, frame.width, frame.height)
            if any(part is None for part in pending.parts):
                continue  # other regions of the frame still on the device
            parts = [part for part in pending.parts if part is not None]
            pending.detections = merge(parts) if frame.regions else parts[0]
            self._metrics.inferred_for(frame.source).inc()
            self._release(frame.source)
        if self._inflight == 0:
            self._idle.set()

    def _decode(self, frame: Frame, outputs: list[np.ndarray], width: int, height: int) -> list[Detection]:
        """Decoded, with non-finite boxes and scores dropped (a broken model's NaN must never reach
        a tracker or a payload); a decoder that raises is counted, and the frame has no detections."""
        try:
            detections = self.prepared.decoder.decode(outputs, width, height)
        except Exception as exc:
            if self._failures is not None:
                self._failures.failed(frame.source, "decode", frame.seq, exc)
            else:
                log.exception("decode_failed", source=frame.source, frame=frame.seq)
            return []
        if self._failures is not None and self._failures.active:
            self._failures.succeeded(frame.source, "decode")
        if detections and not all(isfinite(d.score) and all(map(isfinite, d.box)) for d in detections):
            kept = [d for d in detections if isfinite(d.score) and all(map(isfinite, d.box))]
            for dropped in detections:
                if dropped not in kept:
                    self._metrics.detections_filtered.labels(frame.source, dropped.label, "non_finite").inc()
            return kept
        return detections

    def _release(self, source: str) -> None:
        """Requests finish out of order; results leave in each source's capture order."""
        order = self._order[source]
        while order and order[0].detections is not None:
            ready = order.popleft()
            assert ready.detections is not None
            try:
                self._on_result(Result(ready.frame, ready.detections, self.prepared.name, self.device))
            except Exception:
                log.exception("result_failed", source=ready.frame.source, frame=ready.frame.seq)
        if not order and self._flushed.get(source):
            for waiter in self._flushed.pop(source):
                if not waiter.done():
                    waiter.set_result(None)
