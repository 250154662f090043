"""The running sources (a :class:`SourceRuntime` each): started and stopped by name (at start-up
and on reload), paused by their detect switch, their states published as they change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from streamd.config import SourceConfig
from streamd.images import Transform
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.pipeline import Chain
from streamd.publish import Publisher
from streamd.queue import FrameQueue
from streamd.runtime.supervisor import Supervisor
from streamd.sources.capture import CaptureSource
from streamd.sources.numbering import FrameNumbers
from streamd.sources.reading import EngineInput
from streamd.sources.runtime import SourceRuntime

log = get_logger(__name__)

Flushed = Callable[[str], Any]  # awaitable: the engine has reported every frame of the source


class SourceSet:
    def __init__(
        self,
        queue: FrameQueue,
        metrics: Metrics,
        sink: Publisher,
        chain: Chain,
        supervisor: Supervisor,
        transform: Transform,
        flushed: Flushed,
        engine_input: EngineInput | None = None,
        numbers: FrameNumbers | None = None,
    ) -> None:
        self.numbers = numbers or FrameNumbers()
        self._queue, self._metrics, self._sink, self._chain = queue, metrics, sink, chain
        self._supervisor = supervisor
        self._transform, self._flushed = transform, flushed
        self._engine_input = engine_input
        self.runtimes: dict[str, SourceRuntime] = {}
        self.states: dict[str, str] = {}
        self.on_started: list[Callable[[str], None]] = []  # e.g. the control switches

    def __len__(self) -> int:
        return len(self.runtimes)

    @property
    def finite(self) -> bool:
        """Only files that end: the daemon drains and exits once they have."""
        return bool(self.runtimes) and all(r.reader.finite for r in self.runtimes.values())

    def config(self, name: str) -> SourceConfig | None:
        runtime = self.runtimes.get(name)
        return runtime.config if runtime is not None else None

    def start(self, config: SourceConfig) -> None:
        self.launch(self.prepare(config))

    def prepare(self, config: SourceConfig) -> SourceRuntime:
        """The source's reader and handlers, built but not started: nothing running is touched
        yet (a reload prepares every new source before it changes anything)."""
        reader = CaptureSource(
            config,
            asyncio.get_running_loop(),
            self._queue,
            self._metrics,
            self._on_state,
            self._transform,
            self._engine_input,
            self.numbers.first(config.name),
        )
        return SourceRuntime(reader, self._chain, self._through)

    def launch(self, runtime: SourceRuntime) -> None:
        """Start a prepared source. If it fails, the source is left stopped and unknown to the
        stages, and the error raised."""
        runtime.start(then=lambda: self._metrics.init_source(runtime.config))
        self.runtimes[runtime.name] = runtime
        for hook in self.on_started:
            hook(runtime.name)

    def set_detect(self, name: str, on: bool) -> None:
        """The detect switch. OFF: the source's frames are skipped from now on (capture and its
        state go on, ``streamd_frames_skipped_total{reason="detect_off"}``) and, once the frames
        already on the device are through, its tracks end. ON: inference and tracking resume."""
        if not on:
            skipped = self._queue.pause(name, "detect_off")
            log.info("detect_paused", source=name, skipped_queued=skipped)
            runtime = self.runtimes.get(name)
            if runtime is not None:  # still paused once its frames on the device are through: tracks end
                retire = runtime.retire(stop_reader=False, still=lambda: self._queue.paused(name))
                self._supervisor.spawn(retire, f"pause-{name}", forever=False)
            return
        self._queue.resume(name)
        log.info("detect_resumed", source=name)
        runtime = self.runtimes.get(name)
        if runtime is not None and self.states.get(name) not in ("ended", "failed"):
            runtime.resume()  # its tracks ended with the pause: they start anew

    async def stop(self, name: str, removed: bool, *, moved: bool = False, timeout: float = 10.0) -> None:
        """Stop the reader, let its queued and in-flight frames through (bounded by ``timeout``),
        then finish its handlers. ``moved``: another worker process takes it over, so its state
        is that worker's to publish (no ``ended``)."""
        runtime = self.runtimes.pop(name)
        await runtime.retire(timeout=timeout)
        self._metrics.source_up.labels(name).set(0)
        if removed:
            self.states.pop(name, None)
            if not moved:  # gone for good: its retained topics go too (state, switches, HA entities)
                self._sink.publish(self._sink.topic(name, "state"), "ended", qos=1, retain=True)
                cleared = self._sink.forget(name)
                log.info("source_removed", source=name, retained_cleared=cleared)

    async def _through(self, name: str) -> None:
        await self._queue.drained(name)
        await self._flushed(name)

    async def stop_all(self, timeout: float) -> None:
        """Shutdown, first step: readers notice the stop within one frame read; their last
        frames still count (:meth:`retire_all` once the engine has drained)."""
        readers = [runtime.reader for runtime in self.runtimes.values()]
        for reader in readers:
            reader.stop()
        if readers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readers)), timeout)

    async def retire_all(self, timeout: float) -> None:
        """Shutdown, once the engine has drained: every source retires the one way a source
        does (its handlers finish, tracks end, their end events go out before MQTT closes)."""
        runtimes = list(self.runtimes.values())
        await asyncio.gather(*(r.retire(stop_reader=False, timeout=timeout) for r in runtimes))

    async def all_done(self) -> None:
        while True:
            current = list(self.runtimes.values())
            await asyncio.gather(*(r.reader.wait() for r in current))
            if current == list(self.runtimes.values()):  # no reload added one meanwhile
                return

    def skipped_by_reason(self) -> dict[str, dict[str, int]]:
        """Per source, frames the motion gate kept from inference, by reason."""
        readers = {name: runtime.reader for name, runtime in self.runtimes.items()}
        return {name: dict(reader.skipped_by) for name, reader in readers.items() if reader.skipped_by}

    def problems(self) -> dict[str, str]:
        """Sources that do not open, and why (``AUTH FAILED (401)``...), for /readyz."""
        readers = {name: runtime.reader for name, runtime in self.runtimes.items()}
        return {name: reader.failure for name, reader in readers.items() if reader.failure}

    def captured(self) -> dict[str, int]:
        return {name: runtime.reader.captured for name, runtime in self.runtimes.items()}

    def skipped(self) -> dict[str, int]:
        readers = {name: runtime.reader for name, runtime in self.runtimes.items()}
        return {name: reader.skipped for name, reader in readers.items() if reader.gate is not None}

    def _on_state(self, source: str, state: str) -> None:
        if source not in self.runtimes or self.states.get(source) == state:
            return
        self.states[source] = state
        if state in ("ended", "failed"):
            self._supervisor.spawn(self._finish(source), f"finish-{source}", forever=False)
        log.info("source_state", source=source, state=state)
        self._sink.publish(self._sink.topic(source, "state"), state, qos=1, retain=True)

    async def _finish(self, source: str) -> None:
        """A source ended by itself (a file's end, a failure): its last frames go through first."""
        runtime = self.runtimes.get(source)
        if runtime is not None:
            await runtime.retire(stop_reader=False)
