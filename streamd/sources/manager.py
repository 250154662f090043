"""The running sources: started and stopped by name (at start-up and on reload), their states
published as they change, and the stages told when a source's last frame is through."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from streamd.config import SourceConfig
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.pipeline import Chain
from streamd.queue import FrameQueue
from streamd.sinks.mqtt import MqttSink
from streamd.sources.capture import CaptureSource, RegionInput
from streamd.sources.motion import MotionGate
from streamd.supervisor import Supervisor

log = get_logger(__name__)

Flushed = Callable[[str], Any]  # awaitable: the engine has reported every frame of the source


class SourceSet:
    def __init__(
        self,
        queue: FrameQueue,
        metrics: Metrics,
        sink: MqttSink,
        chain: Chain,
        supervisor: Supervisor,
        transform: Callable[[np.ndarray], Any],
        flushed: Flushed,
        regions: RegionInput | None = None,
        gates: dict[str, MotionGate] | None = None,
    ) -> None:
        """``gates``: kept current with the running sources' motion gates (the motion feedback
        stage reads it)."""
        self._queue, self._metrics, self._sink, self._chain = queue, metrics, sink, chain
        self._supervisor = supervisor
        self._transform, self._flushed = transform, flushed
        self._regions = regions
        self._gates = gates if gates is not None else {}
        self.sources: dict[str, CaptureSource] = {}
        self.states: dict[str, str] = {}
        self.on_started: list[Callable[[str], None]] = []  # e.g. the control switches
        self._retired: set[str] = set()  # the stages were told these sources finished

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def finite(self) -> bool:
        """Only files that end: the daemon drains and exits once they have."""
        return bool(self.sources) and all(s.finite for s in self.sources.values())

    def start(self, config: SourceConfig) -> None:
        self.launch(self.prepare(config))

    def prepare(self, config: SourceConfig) -> CaptureSource:
        """The source's reader, built but not started: nothing running is touched yet (a reload
        prepares every new source before it changes anything)."""
        source = CaptureSource(
            config,
            asyncio.get_running_loop(),
            self._queue,
            self._metrics,
            self._on_state,
            self._transform,
            self._regions,
        )
        source.forward_skipped = self._chain.wants_skipped(config)
        return source

    def launch(self, source: CaptureSource) -> None:
        """Start a prepared reader and tell the stages. If either fails, the source is left
        stopped and unknown to the stages, and the error raised."""
        config = source.config
        source.start()  # first: a thread that cannot start leaves nothing behind
        try:
            self._metrics.init_source(config)
            self._retired.discard(config.name)
            self._chain.source_started(config)
        except Exception:
            source.stop()
            self._chain.source_finished(config.name)
            raise
        self.sources[source.name] = source
        if source.gate is not None:
            self._gates[source.name] = source.gate
        else:
            self._gates.pop(source.name, None)
        for hook in self.on_started:
            hook(config.name)

    def set_detect(self, name: str, on: bool) -> None:
        """The detect switch. OFF: the source's frames are skipped from now on (capture and its
        state go on, ``streamd_frames_skipped_total{reason="detect_off"}``) and, once the frames
        already on the device are through, its tracks end. ON: inference and tracking resume."""
        if not on:
            skipped = self._queue.pause(name, "detect_off")
            log.info("detect_paused", source=name, skipped_queued=skipped)
            # Still paused once its frames on the device are through: its tracks end.
            retire = self._retire(name, still=lambda: self._queue.paused(name))
            self._supervisor.spawn(retire, f"pause-{name}", forever=False)
            return
        self._queue.resume(name)
        log.info("detect_resumed", source=name)
        running = name in self.sources and self.states.get(name) not in ("ended", "failed")
        if name in self._retired and running:  # its tracks ended with the pause: they start anew
            self._retired.discard(name)
            self._chain.source_started(self.sources[name].config)

    async def _retire(
        self,
        name: str,
        reader: CaptureSource | None = None,
        timeout: float | None = None,
        still: Callable[[], bool] = lambda: True,
    ) -> None:
        """The one way a source's stages hear it is done (stopped by a reload or at shutdown,
        ended by itself, or paused by its detect switch): stop its reader (if given), let its
        queued and in-flight frames through (bounded by ``timeout``), then, if ``still()`` holds,
        finish the stages, once."""
        if reader is not None:
            reader.stop()
            await reader.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._through(name), timeout)
        if still() and name not in self._retired:
            self._retired.add(name)
            self._chain.source_finished(name)

    async def stop(self, name: str, removed: bool, *, moved: bool = False, timeout: float = 10.0) -> None:
        """Stop the reader, let its queued and in-flight frames through (bounded by ``timeout``),
        then tell the stages. ``moved``: another worker process takes it over, so its state is
        that worker's to publish (no ``ended``)."""
        source = self.sources.pop(name)
        self._gates.pop(name, None)
        await self._retire(name, source, timeout)
        self._metrics.source_up.labels(name).set(0)
        if removed:
            self._retired.discard(name)
            self.states.pop(name, None)
            if not moved:
                self._sink.publish(self._sink.topic(name, "state"), "ended", qos=1, retain=True)

    async def _through(self, name: str) -> None:
        await self._queue.drained(name)
        await self._flushed(name)

    async def stop_all(self, timeout: float) -> None:
        """Readers notice the stop within one frame read; their last frames still count."""
        for source in self.sources.values():
            source.stop()
        if self.sources:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.wait() for s in self.sources.values())), timeout)

    async def all_done(self) -> None:
        while True:
            current = list(self.sources.values())
            await asyncio.gather(*(s.wait() for s in current))
            if current == list(self.sources.values()):  # no reload added one meanwhile
                return

    def skipped_by_reason(self) -> dict[str, dict[str, int]]:
        """Per source, frames the motion gate kept from inference, by reason."""
        return {name: dict(source.skipped_by) for name, source in self.sources.items() if source.skipped_by}

    def problems(self) -> dict[str, str]:
        """Sources that do not open, and why (``AUTH FAILED (401)``...), for /readyz."""
        return {name: source.failure for name, source in self.sources.items() if source.failure}

    def captured(self) -> dict[str, int]:
        return {name: source.captured for name, source in self.sources.items()}

    def skipped(self) -> dict[str, int]:
        return {name: source.skipped for name, source in self.sources.items() if source.gate is not None}

    def _on_state(self, source: str, state: str) -> None:
        if source not in self.sources or self.states.get(source) == state:
            return
        self.states[source] = state
        if state in ("ended", "failed"):
            self._supervisor.spawn(self._finish(source), f"finish-{source}", forever=False)
        log.info("source_state", source=source, state=state)
        self._sink.publish(self._sink.topic(source, "state"), state, qos=1, retain=True)

    async def _finish(self, source: str) -> None:
        """A source ended by itself (a file's end, a failure): its last frames go through first."""
        await self._retire(source)
