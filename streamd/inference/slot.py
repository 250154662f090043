"""The running engine, one at a time: built, started on the queue, swapped by a reload, drained
at shutdown. Reader threads call :meth:`EngineSlot.transform`, which follows the current engine
across reloads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import cv2
import numpy as np
import openvino as ov

from streamd.config import ModelConfig
from streamd.images import BgrImage, Decoded, InputTarget, Transform
from streamd.inference.adapter import AdapterFactory, OpenVinoAdapter
from streamd.inference.engine import Engine, EngineStatus, ResultCallback
from streamd.inference.loader import build_engine
from streamd.inference.model import input_target
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.queue import FrameQueue
from streamd.runtime.failures import Failures

log = get_logger(__name__)


class EngineSlot:
    def __init__(
        self,
        queue: FrameQueue,
        metrics: Metrics,
        on_result: ResultCallback,
        failures: Failures | None = None,
        adapter: AdapterFactory = OpenVinoAdapter,
    ) -> None:
        """``adapter``: builds each engine's device (``inference/adapter.py``)."""
        self._queue, self._metrics, self._on_result = queue, metrics, on_result
        self._failures = failures
        self._adapter = adapter
        self._core = ov.Core()  # one for the process: a Core per reload would keep its plugins alive
        self.engine: Engine | None = None
        self._task: asyncio.Task[None] | None = None
        self._transform: Transform | None = None

    async def build(self, model: ModelConfig) -> Engine:
        return await build_engine(model, self._core, self._metrics, self._on_result, self._failures, self._adapter)

    def swap(self, engine: Engine) -> None:
        """The new engine takes the queue; the old one finishes its in-flight frames, then is
        released (compiled model, request pool, threads)."""
        old, old_task = self.engine, self._task
        self.engine = engine
        self._transform = engine.input_transform()
        self._task = asyncio.create_task(engine.run(self._queue), name="engine")
        if old is not None and old_task is not None:
            old.retire(old_task)
            old_task.add_done_callback(lambda _: old.close())

    def close(self) -> None:
        """At shutdown, once drained: the engine's compiled model, request pool and threads go
        now, not with the process (a daemon served in a process that goes on, as the bench's and
        the tests' do, left them behind)."""
        if self.engine is not None and (self._task is None or self._task.done()):
            self.engine.close()

    def transform(self, image: Decoded) -> Any:
        assert self._transform is not None
        return self._transform(image)

    def input_size(self) -> tuple[int, int]:
        """The network's (width, height), for motion regions (reader threads)."""
        assert self.engine is not None
        width, height = self.engine.prepared.image.size
        return int(width), int(height)

    def input_target(self) -> InputTarget | None:
        """The (size, RGB) the engine's transform scales pictures to; None where it takes them
        whole (the graph resizes) or there is no engine yet."""
        return input_target(self.engine.prepared) if self.engine is not None else None

    def region_input(self, crop: np.ndarray) -> Any:
        """A motion region as the model takes it: resized to the network's input on the host."""
        resized = cv2.resize(crop, self.input_size(), interpolation=cv2.INTER_AREA)
        return self.transform(BgrImage(resized))

    @property
    def device(self) -> str | None:
        return self.engine.device if self.engine else None

    def status(self) -> EngineStatus | None:
        return self.engine.status() if self.engine else None

    async def flushed(self, source: str) -> None:
        if self.engine is not None:
            await self.engine.flushed(source)

    async def until_failed(self) -> BaseException | None:
        """Returns the error of the current engine's task once it ends (None: it ended cleanly)."""
        while True:
            task = self._task
            assert task is not None
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
            if task is not self._task:
                continue  # swapped by a reload: watch the new one
            return None if task.cancelled() else task.exception()

    async def drain(self, timeout: float) -> None:
        """Let queued and in-flight frames finish; past ``timeout`` drop what is left, saying so."""
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), max(0.1, timeout))
        except TimeoutError:
            dropped = self._queue.clear()
            status = self.status()
            log.warning("drain_timeout", dropped=dropped, inflight=status.inflight if status else 0)
            self._task.cancel()

    def progressing(self, stall_after: float) -> bool:
        """False when frames wait (queued or on the device) and none completed for a while."""
        status = self.status()
        if status is None:
            return True
        busy = status.inflight > 0 or len(self._queue) > 0
        return not busy or time.monotonic() - status.last_progress < stall_after
