"""The engine: frames from the queue into an ``AsyncInferQueue``, results back to the loop.

The loop never blocks on the device: it awaits a free request (a semaphore sized by
``OPTIMAL_NUMBER_OF_INFER_REQUESTS``), starts it, and moves on. The OpenVINO callback does the
least it can on the device thread (copy the small outputs) and hands them over with
``call_soon_threadsafe``; decoding and publishing happen on the loop.

Inputs are shared, not copied (``share_inputs=True``): the frame that owns the buffer rides in
the request's userdata until its callback has run, so the memory outlives the inference (the
open use-after-free report on ``AsyncInferQueue.start_async(share_inputs=True)`` is about
buffers freed before that).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import openvino as ov

from streamd.inference.decoders import Detection
from streamd.inference.model import CompiledVariant, PreparedModel, compile_variant
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.queue import FrameQueue, QueueClosed
from streamd.sources.capture import Transform, host_resizer
from streamd.sources.frame import Frame

log = get_logger("streamd.engine")

ResultCallback = Callable[[Frame, list[Detection], float], None]


@dataclass
class _Runner:
    variant: CompiledVariant
    queue: ov.AsyncInferQueue


class Engine:
    def __init__(self, prepared: PreparedModel, metrics: Metrics, on_result: ResultCallback) -> None:
        self.prepared = prepared
        self._metrics = metrics
        self._on_result = on_result
        self._runners: dict[tuple[int, int] | None, _Runner] = {}
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.base: CompiledVariant | None = None
        self.completed = 0  # frames fully through the engine; the watchdog reads progress here
        self.last_progress = time.monotonic()

    @property
    def device(self) -> str:
        return self.base.placement.device if self.base else self.prepared.config.device

    @property
    def inflight(self) -> int:
        return self._inflight

    def host_transform(self) -> Transform | None:
        """What the capture threads do before queueing: resize on the host, or nothing."""
        image = self.prepared.image
        if self.prepared.preprocess_mode == "host" and image.static:
            return host_resizer(*image.size)
        return None

    async def start(self) -> CompiledVariant:
        """Compile for frames of the network's size (host mode's only variant) in a thread."""
        self._loop = asyncio.get_running_loop()
        runner = await self._runner(None)
        self.base = runner.variant
        self._slots = asyncio.Semaphore(runner.variant.requests)
        return runner.variant

    async def _runner(self, key: tuple[int, int] | None) -> _Runner:
        runner = self._runners.get(key)
        if runner is None:
            variant = await asyncio.to_thread(compile_variant, self.prepared, key)
            queue = ov.AsyncInferQueue(variant.compiled, variant.requests)
            queue.set_callback(self._on_done)
            runner = self._runners[key] = _Runner(variant, queue)
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
        while True:
            try:
                frame = await queue.get()
            except QueueClosed:
                break
            self._metrics.queue_depth.set(len(queue))
            await self._slots.acquire()
            size = (frame.tensor.shape[2], frame.tensor.shape[1])
            runner = await self._runner(None if size == net_size or net_size[0] < 0 else size)
            self._inflight += 1
            self._idle.clear()
            self._metrics.inflight_requests.set(self._inflight)
            runner.queue.start_async(frame.tensor, frame, share_inputs=True)
        await self.drain()

    async def drain(self) -> None:
        await self._idle.wait()

    def _on_done(self, request: ov.InferRequest, frame: Frame) -> None:
        # OpenVINO thread: copy the (small) outputs before the request is reused, nothing else.
        outputs = [tensor.data.copy() for tensor in request.output_tensors]
        seconds = request.latency / 1000.0
        assert self._loop is not None
        # RuntimeError: the loop is already closed (a forced exit), nothing left to report to.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._complete, frame, outputs, seconds)

    def _complete(self, frame: Frame, outputs: list[np.ndarray], seconds: float) -> None:
        self._inflight -= 1
        assert self._slots is not None
        self._slots.release()
        self._metrics.inflight_requests.set(self._inflight)
        self._metrics.inference_seconds.observe(seconds)
        self._metrics.frames_inferred.labels(frame.source).inc()
        self.completed += 1
        self.last_progress = time.monotonic()
        try:
            detections = self.prepared.decoder.decode(outputs, frame.width, frame.height)
            self._on_result(frame, detections, seconds)
        except Exception:
            log.exception("result_failed", source=frame.source, frame=frame.seq)
        if self._inflight == 0:
            self._idle.set()
