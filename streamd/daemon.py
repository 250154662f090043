"""The daemon: composes sources -> queue -> engine -> stages -> MQTT once, and owns the lifecycle.

Shaped like uvicorn's Server: ``serve()`` reads startup -> main loop -> shutdown. The first
SIGTERM/SIGINT asks for a graceful stop (stop capture, finish queued and in-flight frames,
flush MQTT, publish ``offline``); a second one exits at once. SIGHUP re-reads the config and
changes only what changed, all or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from streamd import __version__, systemd
from streamd.config import Config, ModelConfig
from streamd.health import HealthServer, readiness
from streamd.inference.engine import Engine
from streamd.inference.loader import build_engine
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.pipeline import Chain, Stage
from streamd.queue import FrameQueue
from streamd.reload import apply_reload
from streamd.sinks.mqtt import MqttSink, MqttUnavailable
from streamd.sinks.payload import DetectionsStage
from streamd.sinks.presence import PresenceStage
from streamd.sources.manager import SourceSet
from streamd.stats import StatsStage
from streamd.supervisor import Supervisor
from streamd.tracking.stage import TrackingStage
from streamd.types import Transform

log = get_logger("streamd.daemon")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EX_NOINPUT = 66  # every source was a file that could not be read


class Daemon:
    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        metrics: Metrics | None = None,
        engine_class: type[Engine] = Engine,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = metrics or Metrics()
        self.engine_class = engine_class
        self.should_exit = asyncio.Event()
        self.supervisor = Supervisor(self.metrics)
        self.sink = MqttSink(config.mqtt, self.metrics)
        self.stats = StatsStage(self.metrics)
        self.queue = FrameQueue(config.queue.size, self.stats.on_drop, config.queue.max_bytes)
        self.tracking = TrackingStage(self.sink, self.metrics)
        self.detections = DetectionsStage(config.mqtt, self.sink)
        stages: list[Stage] = [self.stats, self.tracking]
        if config.mqtt.discovery:
            stages.append(PresenceStage(config.mqtt, self.sink))
        self.chain = Chain([*stages, self.detections])
        self.engine: Engine | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self.sources = SourceSet(
            self.queue, self.metrics, self.sink, self.chain, self.tracking, self.supervisor, self._input, self._flushed
        )
        self.health: HealthServer | None = None
        self._core = ov.Core()  # one for the process: a Core per reload would keep its plugins alive
        self._reload_lock = asyncio.Lock()
        self._transform: Transform | None = None  # the current engine's, for the reader threads
        self._started = False
        self.exit_code = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self.handle_reload)
        loop.set_exception_handler(self.supervisor.loop_exception)
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()
            for sig in (*STOP_SIGNALS, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return self.exit_code

    def handle_exit(self, sig: int) -> None:
        if self.should_exit.is_set():
            log.warning("forced_exit", signal=signal.Signals(sig).name)
            os._exit(1)
        log.info("shutdown_requested", signal=signal.Signals(sig).name)
        self.should_exit.set()

    def handle_reload(self) -> None:
        if not self._started:
            log.warning("reload_ignored", reason="still starting: send SIGHUP again once ready")
            return
        self.supervisor.spawn(self.reload(), "reload", forever=False)

    async def startup(self) -> None:
        cfg = self.config
        self.metrics.build.info({"version": __version__})
        self.metrics.init_mqtt(cfg.mqtt.buffer)
        if cfg.metrics.listen:
            self.health = HealthServer(cfg.metrics.listen, self.metrics, self.readiness)
            await self.health.start()
        self.sink.start()
        assert self.sink.task is not None
        # It flushes at shutdown (close() ends it); a refusal at start ends it too, and exits 69.
        self.supervisor.watch(self.sink.task, owned=False, may_end=lambda: self.sink.fatal is not None)
        self.engine = await self.build_engine(cfg.model)
        self._transform = self.engine.input_transform()
        # Refused credentials or a bad certificate will not fix themselves: exit 69 now rather
        # than buffer forever. A broker that is merely down is retried with backoff.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.sink.first_attempt_done.wait(), 10)
        if self.sink.fatal:
            raise MqttUnavailable(self.sink.fatal)
        self._engine_task = asyncio.create_task(self.engine.run(self.queue), name="engine")
        for source_cfg in cfg.sources:
            self.sources.start(source_cfg)
        self.supervisor.spawn(
            self.stats.report(cfg.daemon.stats_interval, self._publish_stats, self._snapshot), "stats"
        )
        interval = systemd.watchdog_interval()
        if interval is not None:
            self.supervisor.spawn(self._watchdog(interval), "watchdog")
        self._started = True
        systemd.notify(f"READY=1\nSTATUS=streaming {len(self.sources)} source(s) on {self.engine.device}")

    def _input(self, image: np.ndarray) -> Any:
        """Reader threads call this; it follows the current engine across reloads."""
        assert self._transform is not None
        return self._transform(image)

    async def main_loop(self) -> None:
        """Run until a signal, or until every source is a finished file (then drain and exit)."""
        waits: list[asyncio.Task[None]] = [
            asyncio.create_task(self.should_exit.wait()),  # type: ignore[arg-type]
            asyncio.create_task(self._until_engine_fails()),
        ]
        if self.sources.finite:
            waits.append(asyncio.create_task(self._all_sources_done()))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def _until_engine_fails(self) -> None:
        """An engine that raises ends the daemon (exit 1): systemd restarts it."""
        while True:
            task = self._engine_task
            assert task is not None
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
            if task is not self._engine_task:
                continue  # swapped by a reload: watch the new one
            if not task.cancelled() and task.exception() is not None:
                log.error("engine_failed", error=repr(task.exception()))
                self.exit_code = 1
            return

    async def _all_sources_done(self) -> None:
        await self.sources.all_done()
        states = self.sources.states
        log.info("sources_done", states=states)
        if states and all(state == "failed" for state in states.values()):
            log.error("no_source_readable", states=states)  # not a successful run
            self.exit_code = EX_NOINPUT

    async def shutdown(self) -> None:
        self.supervisor.stopping = True
        systemd.notify("STOPPING=1")
        deadline = time.monotonic() + self.config.daemon.shutdown_timeout
        await self.sources.stop_all(self.config.daemon.shutdown_timeout)
        self.queue.close()
        if self._engine_task is not None and not self._engine_task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._engine_task), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                dropped = self.queue.clear()
                log.warning(
                    "drain_timeout", dropped=dropped, inflight=self.engine.status().inflight if self.engine else 0
                )
                self._engine_task.cancel()
        self.supervisor.cancel_all()
        for name in list(self.tracking.events):
            self.tracking.source_finished(name)
        await self.sink.close(max(1.0, deadline - time.monotonic()))
        if self.health is not None:
            await self.health.stop()
        log.info(
            "stopped",
            frames=self.detections.published,
            captured=self.sources.captured(),
            dropped=self.stats.dropped,
            mqtt=self.sink.status().counts,
            tracking_ms_per_frame=self.tracking.ms_per_frame,
        )

    # -- reload (SIGHUP) ----------------------------------------------------------------------

    async def reload(self) -> None:
        """All or nothing: the new config is read and its model compiled before anything running
        is touched; every outcome is logged as ``reload_done`` or ``reload_rejected``."""
        async with self._reload_lock:
            started = time.monotonic()
            systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={systemd.monotonic_usec()}")
            try:
                await apply_reload(self, self.config_path, started)
            finally:
                systemd.notify(f"READY=1\nSTATUS=streaming {len(self.sources)} source(s)")

    async def build_engine(self, model: ModelConfig) -> Engine:
        return await build_engine(model, self._core, self.metrics, self.chain, self.engine_class)

    def swap_engine(self, engine: Engine) -> None:
        """The new engine takes the queue; the old one finishes its in-flight frames, then is
        released (compiled model, request pool, threads)."""
        old, old_task = self.engine, self._engine_task
        self.engine = engine
        self._transform = engine.input_transform()
        self._engine_task = asyncio.create_task(engine.run(self.queue), name="engine")
        if old is not None and old_task is not None:
            old.retire(old_task)
            old_task.add_done_callback(lambda _: old.close())

    # -- what the parts tell the loop ----------------------------------------------------------

    async def _flushed(self, source: str) -> None:
        if self.engine is not None:
            await self.engine.flushed(source)

    def _publish_stats(self, payload: str) -> None:
        self.sink.publish(f"{self.sink.prefix}/stats", payload, qos=0)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "states": dict(self.sources.states),
            "queue_depth": len(self.queue),
            "device": self.engine.device if self.engine else None,
            "mqtt_buffered": self.sink.buffered,
        }

    # -- health and watchdog -------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, object]]:
        engine = self.engine.status() if self.engine else None
        return readiness(engine, self.sink.status(), self.sources.states, self.supervisor.failed)

    def engine_progressing(self, stall_after: float) -> bool:
        """False when frames wait (queued or on the device) and none completed for a while."""
        if self.engine is None:
            return True
        status = self.engine.status()
        busy = status.inflight > 0 or len(self.queue) > 0
        return not busy or time.monotonic() - status.last_progress < stall_after

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 proves the loop runs, the engine progresses and no task died."""
        stalled = False
        while True:
            if self.supervisor.failed:
                pass  # a dead task: no ping, systemd restarts the process (logged when it died)
            elif self.engine_progressing(stall_after=2 * interval):
                systemd.notify("WATCHDOG=1")
                stalled = False
            elif not stalled:
                stalled = True
                log.error(
                    "engine_stalled",
                    queued=len(self.queue),
                    inflight=self.engine.status().inflight if self.engine else 0,
                )
            await asyncio.sleep(interval)
