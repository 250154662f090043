"""The daemon: composes sources -> queue -> engine -> stages -> MQTT once, and owns the lifecycle.

Shaped like uvicorn's Server: ``serve()`` reads startup -> main loop -> shutdown. The first
SIGTERM/SIGINT asks for a graceful stop (stop capture, finish queued and in-flight frames,
flush MQTT, publish ``offline``); a second one exits at once. SIGHUP re-reads the config and
changes only what changed, all or nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client import generate_latest

from streamd import __version__
from streamd.config import Config, SourceConfig
from streamd.config_objects import state_directory
from streamd.control import Switches, switches_path
from streamd.detections.stage import DetectionsStage
from streamd.events.api import event_routes
from streamd.events.stage import EventsStage
from streamd.exits import EX_NOINPUT
from streamd.health import readiness, standard_routes
from streamd.images import one_thread_per_call
from streamd.inference.adapter import AdapterFactory, OpenVinoAdapter
from streamd.inference.slot import EngineSlot
from streamd.live.api import live_routes
from streamd.live.stage import LiveStage
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.pipeline import Chain
from streamd.queue import FrameQueue
from streamd.recording.serve import clips_route, recording_folders
from streamd.reload import apply_reload
from streamd.runtime import systemd
from streamd.runtime.failures import Failures
from streamd.runtime.lifecycle import Lifecycle
from streamd.runtime.supervisor import Supervisor
from streamd.runtime.watchdog import ping_while_healthy
from streamd.sinks.mqtt import MqttSink
from streamd.snapshots.stage import SnapshotStage
from streamd.sources.manager import SourceSet
from streamd.sources.numbering import FrameNumbers
from streamd.sources.reading import EngineInput
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.stages import build as build_stages
from streamd.stats.stage import StatsStage
from streamd.tracking.stage import TrackingStage
from streamd.types import Result
from streamd.web.auth import credentials
from streamd.web.pages import page_routes
from streamd.web.server import WebServer, deprecated_listen

if TYPE_CHECKING:
    from streamd.service.link import WorkerLink
    from streamd.sinks.outbox import Message

log = get_logger(__name__)


class Observer(Protocol):
    """What a bench or an embedding application attaches to the daemon (``Daemon(observer=)``):
    every Result after the chain's own stages, and every frame's message once the broker has
    acknowledged it, with the seconds since its frame was captured."""

    def on_result(self, result: Result) -> None: ...

    def on_acked(self, message: Message, seconds: float) -> None: ...


class _Observing(Stage, SourceHandler):
    """The observer, last in the chain, for every source."""

    name = "observer"
    order = 1000

    def __init__(self, observer: Observer) -> None:
        self._observer = observer

    def for_source(self, source: SourceConfig) -> SourceHandler:
        return self

    def on_result(self, result: Result) -> None:
        self._observer.on_result(result)


S = TypeVar("S", bound=Stage)


def builtin(stages: list[Stage], kind: type[S]) -> S:
    """The built-in stage of this class (the daemon reads its state); a clear error if the
    install does not register it (streamd's own entry points missing: reinstall it)."""
    for stage in stages:
        if type(stage) is kind:
            return stage
    raise RuntimeError(f"stage {kind.name!r} is not registered: reinstall streamd (pip install -e .)")


class Daemon(Lifecycle):
    def __init__(
        self,
        config: Config,
        load: Callable[[], Config] | None = None,
        metrics: Metrics | None = None,
        worker: WorkerLink | None = None,
        observer: Observer | None = None,
        adapter: AdapterFactory = OpenVinoAdapter,
    ) -> None:
        """``load``: reads the config again (SIGHUP). ``worker``: one of the service's worker
        processes (``service/``); the parent then owns the service-wide parts (the status topic,
        the stats message, systemd, the public port). ``observer``: see :class:`Observer`.
        ``adapter``: builds the inference device (``inference/adapter.py``; a test's seam)."""
        self.config = config
        self.load = worker.load if worker else load  # what SIGHUP re-reads
        self.worker = worker
        self.metrics = metrics or Metrics()
        self.should_exit = asyncio.Event()
        self.supervisor = Supervisor(self.metrics)
        self.sink = MqttSink(
            config.mqtt,
            self.metrics,
            worker.index if worker else None,
            on_acked=observer.on_acked if observer else None,
        )
        # Every registered stage (built-ins and plugins, entry points of streamd.stages), in chain
        # order; the daemon keeps handles on the built-ins whose state it reports or switches.
        self.stages = build_stages(StageContext(self.sink, self.metrics, config, state_directory()))
        if observer is not None:
            self.stages.append(_Observing(observer))
        self.stats = builtin(self.stages, StatsStage)
        self.snapshots = builtin(self.stages, SnapshotStage)
        self.tracking = builtin(self.stages, TrackingStage)
        self.detections = builtin(self.stages, DetectionsStage)
        self.queue = FrameQueue(config.queue.size, self.stats.on_drop, config.queue.max_bytes, self.stats.on_skip)
        self.failures = Failures(self.metrics)
        self.chain = Chain(self.stages, self.failures)
        self.engines = EngineSlot(self.queue, self.metrics, self.chain, self.failures, adapter)
        self.sources = SourceSet(
            self.queue,
            self.metrics,
            self.sink,
            self.chain,
            self.supervisor,
            self.engines.transform,
            self.engines.flushed,
            EngineInput(self.engines.input_size, self.engines.region_input, self.engines.input_target),
            FrameNumbers.from_environment() if worker else FrameNumbers(),
        )
        self.switches: Switches | None = None
        if config.mqtt.control:
            self.switches = Switches(
                self.sink,
                self.metrics,
                lambda: set(self.sources.runtimes),
                {"detect": self.sources.set_detect, "snapshots": self.snapshots.set_enabled},
                switches_path(config.mqtt) if config.mqtt.remember_switches else None,
                self._takes_snapshots,
                worker.elsewhere if worker else lambda source: False,
            )
            self.sink.subscribe(self.switches.topics, self.switches.on_message)
            self.sources.on_started.append(self.switches.source_started)
        self.health: WebServer | None = None
        self.last_stats = b"{}"  # the latest stats message (a worker's parent merges them)
        self._reload_lock = asyncio.Lock()
        self._started = False
        self.exit_code = 0

    # -- lifecycle --------------------------------------------------------------------------

    def drain_whatever_comes(self) -> bool:
        """A worker never takes a second signal as "exit now": its parent escalates with SIGKILL,
        and when the parent dies the kernel may signal it once per thread of the dying parent
        (PR_SET_PDEATHSIG follows the thread the worker was reparented to)."""
        return self.worker is not None

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self.supervisor.loop_exception)

    def handle_reload(self) -> None:
        if not self._started:
            log.warning("reload_ignored", reason="still starting: send SIGHUP again once ready")
            return
        self.supervisor.spawn(self.reload(), "reload", forever=False)

    async def startup(self) -> None:
        cfg = self.config
        one_thread_per_call()
        self.metrics.build.info({"version": __version__})
        self.metrics.init_mqtt(cfg.mqtt.buffer)
        if cfg.http.listen:
            self.health = WebServer(cfg.http.listen, self._routes(), None if self.worker else credentials(cfg.http))
            await self.health.start()
            if self.worker is None:
                deprecated_listen(cfg)
        # The sink connects while the model compiles; it flushes at shutdown (close() ends it).
        self.sink.start()
        assert self.sink.task is not None
        self.supervisor.watch(self.sink.task, owned=False, may_end=lambda: self.sink.refused)
        engine = await self.engines.build(cfg.model)
        await self.sink.first_attempt(timeout=10)  # refused at start: MqttUnavailable, exit 69
        self.engines.swap(engine)
        for source_cfg in cfg.sources:
            self.sources.start(source_cfg)
        self.supervisor.spawn(
            self.stats.report(cfg.daemon.stats_interval, self._publish_stats, self._snapshot), "stats"
        )
        interval = systemd.watchdog_interval()
        if interval is not None:
            self.supervisor.spawn(self.watchdog(interval), "watchdog")
        self._started = True
        self.sources.numbers.started()
        systemd.notify(f"READY=1\nSTATUS=streaming {len(self.sources)} source(s) on {self.engines.device}")

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
        error = await self.engines.until_failed()
        if error is not None:
            log.error("engine_failed", error=repr(error))
            self.exit_code = 1

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
        await self.engines.drain(deadline - time.monotonic())
        self.supervisor.cancel_all()
        await self.sources.retire_all(max(0.1, deadline - time.monotonic()))
        self.engines.close()
        for stage in self.stages:  # in chain order: snapshots and their end events, then the open clips
            await stage.drain(deadline - time.monotonic())
        await self.sink.close(max(1.0, deadline - time.monotonic()))
        if self.worker is not None:
            self.worker.save_final_metrics(generate_latest(self.metrics.registry))
        if self.health is not None:
            await self.health.stop()
        log.info(
            "stopped",
            frames_published=self.detections.published,  # detection messages, per source
            captured=self.sources.captured(),
            skipped=self.sources.skipped(),
            dropped=self.stats.dropped,
            mqtt=self.sink.status().counts,
            tracking_ms_per_frame=self.tracking.ms_per_frame,
        )

    async def reload(self) -> None:
        """SIGHUP: all or nothing (see reload.py); one at a time."""
        async with self._reload_lock:
            started = time.monotonic()
            systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={systemd.monotonic_usec()}")
            try:
                elsewhere = self.worker.elsewhere if self.worker else lambda source: False
                await apply_reload(self, self.load, started, elsewhere)
            finally:
                systemd.notify(f"READY=1\nSTATUS=streaming {len(self.sources)} source(s)")

    # -- what the parts tell each other --------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, object]]:
        ready, body = readiness(
            self.engines.status(),
            self.sink.status(),
            self.sources.states,
            self.supervisor.failed,
            self.failures.reasons() + [problem for stage in self.stages for problem in stage.problems()],
        )
        body["source_errors"] = self.sources.problems()  # e.g. {"porch": "AUTH FAILED (401)"}
        return ready, body

    def _takes_snapshots(self, source: str) -> bool:
        config = self.sources.config(source)
        return config is not None and config.takes_snapshots

    def _publish_stats(self, payload: str) -> None:
        self.last_stats = payload.encode()
        if self.worker is None:  # a worker's go out merged, from its parent
            self.sink.publish(f"{self.sink.prefix}/stats", payload, qos=0)

    def _routes(self) -> list[web.AbstractRouteDef]:
        """The probes and /metrics; the clips; the live view, the API and the page."""
        routes: list[web.AbstractRouteDef] = [*standard_routes(self.metrics, self.readiness)]
        routes.append(clips_route(lambda: recording_folders(self.config)))
        live = next((stage for stage in self.stages if type(stage) is LiveStage), None)
        if live is not None:
            sources = lambda: list(self.config.sources)  # noqa: E731
            routes += live_routes(live, sources, lambda: self.sources.states, self.config.http.max_viewers)
        history = next((stage for stage in self.stages if type(stage) is EventsStage), None)
        if history is not None and self.worker is None:  # a worker's events: its parent answers
            routes += event_routes(history.store)
        routes += page_routes()
        if self.worker is not None:
            routes.append(web.get("/stats", self._stats_route))
        return routes

    async def _stats_route(self, request: web.Request) -> web.Response:
        return web.Response(body=self.last_stats, content_type="application/json")

    def _snapshot(self) -> dict[str, Any]:
        return {
            "states": dict(self.sources.states),
            "captured": self.sources.captured(),
            "skipped": self.sources.skipped_by_reason(),
            "queue_depth": len(self.queue),
            "device": self.engines.device,
            "mqtt_buffered": self.sink.buffered,
        }

    async def watchdog(self, interval: float) -> None:
        await ping_while_healthy(interval, lambda: bool(self.supervisor.failed), self.engines.progressing, self._stall)

    def _stall(self) -> dict[str, object]:
        status = self.engines.status()
        return {"queued": len(self.queue), "inflight": status.inflight if status else 0}
