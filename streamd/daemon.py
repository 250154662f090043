"""The daemon: wires sources -> queue -> engine -> MQTT and owns the lifecycle.

Shaped like uvicorn's Server: ``serve()`` reads startup -> main loop -> shutdown. The first
SIGTERM/SIGINT asks for a graceful stop (stop capture, finish queued and in-flight frames,
flush MQTT, publish ``offline``); a second one exits at once. SIGHUP re-reads the config and
restarts only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from streamd import __version__, systemd
from streamd.config import Config, ConfigError, SourceConfig, load_config
from streamd.health import HealthServer
from streamd.inference.decoders import Detection
from streamd.inference.engine import Engine
from streamd.inference.model import prepare
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.queue import FrameQueue
from streamd.reload import ReloadPlan, plan_reload
from streamd.sinks.mqtt import MqttSink, MqttUnavailable
from streamd.sources.capture import CaptureSource
from streamd.sources.frame import Frame
from streamd.timestamps import rfc3339
from streamd.tracking.events import SourceEvents

log = get_logger("streamd.daemon")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EX_NOINPUT = 66  # every source was a file that could not be read
LATENCY_WINDOW = 512  # inference times kept for the stats topic's percentiles
PAYLOAD_SCHEMA = "streamd/detections/1"  # bumped on any incompatible payload change


class Daemon:
    def __init__(self, config: Config, config_path: Path | None = None, metrics: Metrics | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = metrics or Metrics()
        self.should_exit = asyncio.Event()
        self.engine: Engine | None = None
        self.sink = MqttSink(config.mqtt, self.metrics)
        self.queue = FrameQueue(config.queue.size, self._on_drop, config.queue.max_bytes)
        self.sources: dict[str, CaptureSource] = {}
        self.states: dict[str, str] = {}
        self.health: HealthServer | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._transform: Callable[[np.ndarray], Any] | None = None
        self._reload_lock = asyncio.Lock()
        self._core = ov.Core()  # one for the process: a Core per reload would keep its plugins alive
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._published_frames: dict[str, int] = {}
        self._inferred: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._present: set[tuple[str, str]] = set()
        self.events: dict[str, SourceEvents] = {}
        self.tracking_seconds = 0.0
        self.tracking_frames = 0
        self._last_seen: dict[tuple[str, str], float] = {}
        self.exit_code = 0
        self.failed_tasks: dict[str, str] = {}  # background task -> why it ended (readiness, watchdog)
        self._started = False
        self._stopping = False
        self._loop_errors: dict[str, float] = {}  # asyncio error message -> when last logged

    # -- lifecycle --------------------------------------------------------------------------

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self.handle_reload)
        loop.set_exception_handler(self._loop_exception)
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()
            for sig in (*STOP_SIGNALS, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return self.exit_code

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own errors as log events; a flood of one kind (accept() failing with EMFILE
        while fds are exhausted retries every second) is said once a minute, not as tracebacks."""
        message = str(context.get("message", "asyncio error"))
        error = context.get("exception")
        now = time.monotonic()
        if now - self._loop_errors.get(message, -60.0) < 60.0:
            return
        self._loop_errors[message] = now
        log.error("loop_error", message=message, error=repr(error) if error is not None else None)

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
        self._spawn(self.reload(), "reload", forever=False)

    def _spawn(self, coro: Any, name: str, *, forever: bool = True) -> asyncio.Task[Any]:
        """A background task under supervision: one that raises, or (``forever``) returns while
        the daemon runs, is logged, counted, turns /readyz 503 and stops the watchdog ping."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda done: self._task_done(done, forever))
        return task

    def _task_done(self, task: asyncio.Task[Any], forever: bool) -> None:
        if task.cancelled() or self._stopping:
            return
        error = task.exception()
        if error is None and not forever:
            return
        reason = repr(error) if error is not None else "ended unexpectedly"
        name = task.get_name()
        self.failed_tasks[name] = reason
        self.metrics.tasks_failed.labels(name).inc()
        log.error("task_failed", task=name, error=reason, exc_info=error)
        systemd.notify(f"STATUS=task {name} failed: {reason}; not ready, watchdog stopped")

    async def startup(self) -> None:
        cfg = self.config
        self.metrics.build.info({"version": __version__})
        self.metrics.init_mqtt(cfg.mqtt.buffer)
        if cfg.metrics.listen:
            self.health = HealthServer(cfg.metrics.listen, self.metrics, self.readiness)
            await self.health.start()
        self.sink.start()
        assert self.sink.task is not None
        self.sink.task.add_done_callback(lambda done: self._task_done(done, forever=not self.sink.fatal))
        self.engine = await self._build_engine(cfg)
        self._transform = self.engine.input_transform()
        # Refused credentials or a bad certificate will not fix themselves: exit 69 now rather
        # than buffer forever. A broker that is merely down is retried with backoff.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.sink.first_attempt_done.wait(), 10)
        if self.sink.fatal:
            raise MqttUnavailable(self.sink.fatal)
        self._engine_task = asyncio.create_task(self.engine.run(self.queue), name="engine")
        for source_cfg in cfg.sources:
            self._start_source(source_cfg)
        self._spawn(self._stats_loop(), "stats")
        interval = systemd.watchdog_interval()
        if interval is not None:
            self._spawn(self._watchdog(interval), "watchdog")
        self._started = True
        systemd.notify(f"READY=1\nSTATUS=streaming {len(self.sources)} source(s) on {self.engine.device}")

    async def _build_engine(self, cfg: Config) -> Engine:
        """Read, place and compile (in worker threads): the loop keeps serving meanwhile."""
        prepared = await asyncio.to_thread(prepare, cfg.model, self._core)
        engine = Engine(prepared, self.metrics, self._on_result)
        variant = await engine.start()
        placed = variant.placement
        if placed.fallback:
            log.warning("device_fallback", requested=placed.requested, absent=placed.dropped, device=placed.device)
        log.info(
            "model_ready",
            model=prepared.name,
            device=placed.device,
            input=prepared.image.name,
            shape=prepared.image.shape,
            preprocess=prepared.preprocess_mode,
            precision=variant.precision,
            placement=placed.summary() if placed.heterogeneous else None,
            compile_seconds=round(variant.seconds, 3),
            requests=variant.requests,
        )
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(
            prepared.name, placed.device, "x".join(map(str, prepared.image.shape)), variant.precision_label
        ).set(1)
        return engine

    def _start_source(self, source_cfg: SourceConfig) -> None:
        self.metrics.init_source(source_cfg.name)
        if source_cfg.tracking is not None:
            name = source_cfg.name
            self.events[name] = SourceEvents(
                source_cfg,
                lambda suffix, payload, retain: self.sink.publish(
                    self.sink.topic(name, suffix), payload, retain=retain
                ),
                self.metrics,
            )
        if self.config.mqtt.discovery:
            self._announce(source_cfg.name)
        source = CaptureSource(
            source_cfg, asyncio.get_running_loop(), self.queue, self.metrics, self._on_state, self._input
        )
        self.sources[source.name] = source
        source.start()

    def _input(self, image: np.ndarray) -> Any:
        """Reader threads call this; it follows the current engine across reloads."""
        assert self._transform is not None
        return self._transform(image)

    async def main_loop(self) -> None:
        """Run until a signal, or until every source is a finished file (then drain and exit)."""
        waits: list[asyncio.Task[None]] = [
            asyncio.create_task(self._until_exit()),
            asyncio.create_task(self._until_engine_fails()),
        ]
        if self.sources and all(s.finite for s in self.sources.values()):
            waits.append(asyncio.create_task(self._all_sources_done()))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def _until_exit(self) -> None:
        await self.should_exit.wait()

    async def _until_engine_fails(self) -> None:
        """An engine that raises ends the daemon (exit 1): systemd restarts it."""
        while True:
            task = self._engine_task
            assert task is not None
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # it is us who are cancelled, not the engine
            except Exception:
                pass  # examined below
            if task is not self._engine_task:
                continue  # swapped by a reload: watch the new one
            if not task.cancelled() and task.exception() is not None:
                log.error("engine_failed", error=repr(task.exception()))
                self.exit_code = 1
            return

    async def _all_sources_done(self) -> None:
        while True:
            current = list(self.sources.values())
            await asyncio.gather(*(s.wait() for s in current))
            if current == list(self.sources.values()):  # no reload added one meanwhile
                break
        log.info("sources_done", states=self.states)
        if self.states and all(state == "failed" for state in self.states.values()):
            # Nothing could be read: that is not a successful run (EX_NOINPUT).
            log.error("no_source_readable", states=self.states)
            self.exit_code = EX_NOINPUT

    async def shutdown(self) -> None:
        self._stopping = True
        systemd.notify("STOPPING=1")
        timeout = self.config.daemon.shutdown_timeout
        deadline = time.monotonic() + timeout
        for source in self.sources.values():
            source.stop()
        if self.sources:
            # Readers notice the stop within one frame read; their last frames still count.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.wait() for s in self.sources.values())), timeout)
        self.queue.close()
        if self._engine_task is not None and not self._engine_task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._engine_task), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                dropped = self.queue.clear()
                log.warning("drain_timeout", dropped=dropped, inflight=self.engine.inflight if self.engine else 0)
                self._engine_task.cancel()
        for task in list(self._background):
            task.cancel()
        for name, events in list(self.events.items()):
            events.finish(self._inferred.get(name, 0))
        self.events.clear()
        await self.sink.close(max(1.0, deadline - time.monotonic()))
        if self.health is not None:
            await self.health.stop()
        log.info(
            "stopped",
            frames=self._published_frames,
            captured={name: source.captured for name, source in self.sources.items()},
            dropped=self._dropped,
            mqtt=dict(self.sink.counts),
            tracking_ms_per_frame=round(1000 * self.tracking_seconds / self.tracking_frames, 3)
            if self.tracking_frames
            else None,
        )

    # -- reload (SIGHUP) ----------------------------------------------------------------------

    async def reload(self) -> None:
        """Apply a changed config without touching what did not change.

        A new model is compiled before it replaces the old one, so unchanged sources keep
        streaming; an invalid config is logged and the running one stays.
        """
        async with self._reload_lock:
            started = time.monotonic()
            systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={systemd.monotonic_usec()}")
            try:
                await self._apply(started)
            finally:
                systemd.notify(f"READY=1\nSTATUS=streaming {len(self.sources)} source(s)")

    async def _apply(self, started: float) -> None:
        """All or nothing: the new config is read and its model compiled before anything running
        is touched; every outcome is logged as ``reload_done`` or ``reload_rejected``."""
        if self.config_path is None:
            log.warning("reload_ignored", reason="no config file to re-read")
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload_rejected", error=str(exc), key=exc.key, problems=exc.lines())
            return
        old = self.config
        plan = plan_reload(old, new)
        if plan.needs_restart:
            log.warning("reload_needs_restart", sections=plan.needs_restart, note="kept the running values")
        engine: Engine | None = None
        if plan.model_changed:
            try:
                engine = await self._build_engine(new)
            except Exception as exc:  # config, model, placement or anything else: keep running as is
                log.error("reload_rejected", error=str(exc), key="model")
                return
        try:
            if engine is not None:
                self._swap_engine(engine)
            await self._restart_sources(plan, {s.name: s for s in new.sources})
        except Exception as exc:
            log.exception("reload_rejected", error=repr(exc), key="sources")
            return
        self.config = new.model_copy(update={n: getattr(old, n) for n in plan.needs_restart})
        log.info(
            "reload_done",
            added=plan.added,
            removed=plan.removed,
            restarted=plan.restarted,
            model_changed=plan.model_changed,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _restart_sources(self, plan: ReloadPlan, after: dict[str, SourceConfig]) -> None:
        for name in plan.stopped:
            source = self.sources.pop(name)
            source.stop()
            await source.wait()
            events = self.events.pop(name, None)
            if events is not None:
                events.finish(self._inferred.get(name, 0))
            self.metrics.source_up.labels(name).set(0)
            if name in plan.removed:
                self.states.pop(name, None)
                self.sink.publish(self.sink.topic(name, "state"), "ended", qos=1, retain=True)
        for name in plan.started:
            self._start_source(after[name])

    def _swap_engine(self, engine: Engine) -> None:
        """The new engine takes the queue; the old one finishes its in-flight frames, then is
        released (compiled model, request pool, threads)."""
        old, old_task = self.engine, self._engine_task
        self.engine = engine
        self._transform = engine.input_transform()
        self._engine_task = asyncio.create_task(engine.run(self.queue), name="engine")
        if old is not None and old_task is not None:
            old.retire(old_task)
            old_task.add_done_callback(lambda _: old.close())

    # -- callbacks on the loop ---------------------------------------------------------------

    def _on_state(self, source: str, state: str) -> None:
        if source not in self.sources or self.states.get(source) == state:
            return
        self.states[source] = state
        if state in ("ended", "failed") and source in self.events:
            self._spawn(self._finish_tracks(source), f"finish-tracks-{source}")
        log.info("source_state", source=source, state=state)
        self.sink.publish(self.sink.topic(source, "state"), state, qos=1, retain=True)

    def _on_drop(self, source: str, reason: str) -> None:
        self.metrics.frames_dropped.labels(source, reason).inc()
        self._dropped[source] = self._dropped.get(source, 0) + 1

    def _on_result(self, frame: Frame, detections: list[Detection], seconds: float) -> None:
        self._latencies.append(seconds)
        self._inferred[frame.source] = self._inferred.get(frame.source, 0) + 1
        for det in detections:
            self.metrics.detections_for(frame.source, det.label).inc()
        mqtt = self.config.mqtt
        if mqtt.discovery:
            self._update_presence(frame.source, {d.label for d in detections})
        events = self.events.get(frame.source)
        if events is not None:
            started = time.perf_counter()
            events.on_frame(frame.seq, frame.ts, frame.width, frame.height, detections)
            self.tracking_seconds += time.perf_counter() - started
            self.tracking_frames += 1
        if not mqtt.publish_detections or (not detections and not mqtt.publish_empty):
            return
        assert self.engine is not None
        payload: dict[str, Any] = {
            "schema": PAYLOAD_SCHEMA,
            "source": frame.source,
            "frame": frame.seq,
            "ts": rfc3339(frame.ts),
            "latency_ms": round((time.monotonic() - frame.captured) * 1000.0, 2),
            "width": frame.width,
            "height": frame.height,
            "model": self.engine.prepared.name,
            "device": self.engine.device,
            "detections": [d.as_json() for d in detections],
        }
        if mqtt.payload == "full":
            now = time.monotonic()
            payload["timings"] = {
                "queue_ms": round((frame.started - frame.captured) * 1000.0, 2),
                "inference_ms": round(seconds * 1000.0, 2),
                "result_ms": round((now - frame.started) * 1000.0, 2),
            }
        self._published_frames[frame.source] = self._published_frames.get(frame.source, 0) + 1
        self.sink.publish(
            self.sink.topic(frame.source, "detections"),
            json.dumps(payload, separators=(",", ":")),
            source=frame.source,
            captured=frame.captured,
        )

    async def _finish_tracks(self, source: str) -> None:
        """A source ended: once its last frames are through, its tracks end too."""
        # Polled: it happens once per source end, and a marker through queue and engine would
        # cost every frame a check.
        while self.queue.pending(source) or (self.engine is not None and self.engine.pending(source)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        events = self.events.pop(source, None)
        if events is not None:
            events.finish(self._inferred.get(source, 0))

    # -- Home Assistant discovery -------------------------------------------------------------

    def _presence_topic(self, source: str, label: str) -> str:
        return self.sink.topic(source, f"presence/{label.replace(' ', '_')}")

    def _announce(self, source: str) -> None:
        """Retained discovery configs: Home Assistant shows a binary sensor per source and label."""
        mqtt = self.config.mqtt
        for label in mqtt.discovery_labels:
            slug = f"streamd_{mqtt.instance}_{source}_{label.replace(' ', '_')}"
            config = {
                "name": f"{source} {label}",
                "unique_id": slug,
                "object_id": slug,
                "state_topic": self._presence_topic(source, label),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "occupancy",
                "availability_topic": self.sink.status_topic,
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": {
                    "identifiers": [f"streamd_{mqtt.instance}"],
                    "name": f"streamd {mqtt.instance}",
                    "manufacturer": "streamd",
                    "sw_version": __version__,
                },
            }
            topic = f"{mqtt.discovery_prefix}/binary_sensor/{slug}/config"
            self.sink.publish(topic, json.dumps(config), qos=1, retain=True)
            self.sink.publish(self._presence_topic(source, label), "OFF", qos=1, retain=True)

    def _update_presence(self, source: str, labels: set[str]) -> None:
        now = time.monotonic()
        for label in self.config.mqtt.discovery_labels:
            key = (source, label)
            if label in labels:
                self._last_seen[key] = now
                if key not in self._present:
                    self._present.add(key)
                    self.sink.publish(self._presence_topic(source, label), "ON", qos=1, retain=True)
            elif key in self._present and now - self._last_seen[key] > self.config.mqtt.presence_off_delay:
                self._present.discard(key)
                self.sink.publish(self._presence_topic(source, label), "OFF", qos=1, retain=True)

    # -- health, watchdog and stats ---------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, object]]:
        reasons: list[str] = []
        if self.engine is None or self.engine.base is None:
            reasons.append("model not compiled yet")
        if not self.sink.connected.is_set():
            reason = self.sink.last_error or "not connected yet"
            reasons.append(f"mqtt disconnected ({reason}); buffering {self.sink.buffered}/{self.config.mqtt.buffer}")
        if self.sink.disk_error is not None:
            reasons.append(
                f"mqtt buffer unwritable ({self.sink.disk_error}); messages wait in memory, "
                f"{self.sink.buffered}/{self.config.mqtt.buffer}"
            )
        if not any(state == "streaming" for state in self.states.values()):
            reasons.append("no source streaming")
        reasons += [f"task {name} failed: {why}" for name, why in self.failed_tasks.items()]
        body: dict[str, object] = {
            "ready": not reasons,
            "reasons": reasons,
            "mqtt_connected": self.sink.connected.is_set(),
            "mqtt_buffered": self.sink.buffered,
            "sources": dict(self.states),
            "device": self.engine.device if self.engine else None,
        }
        return not reasons, body

    def engine_progressing(self, stall_after: float) -> bool:
        """False when frames wait (queued or on the device) and none completed for a while."""
        engine = self.engine
        if engine is None:
            return True
        busy = engine.inflight > 0 or len(self.queue) > 0
        return not busy or time.monotonic() - engine.last_progress < stall_after

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 proves both the loop (this task runs) and the engine (progress) are alive."""
        stalled = False
        while True:
            if self.failed_tasks:
                pass  # a dead task: no ping, systemd restarts the process (logged when it died)
            elif self.engine_progressing(stall_after=2 * interval):
                systemd.notify("WATCHDOG=1")
                stalled = False
            elif not stalled:
                stalled = True
                log.error("engine_stalled", queued=len(self.queue), inflight=self.engine.inflight if self.engine else 0)
            await asyncio.sleep(interval)

    async def _stats_loop(self) -> None:
        interval = self.config.daemon.stats_interval
        last: dict[str, int] = {}
        while True:
            await asyncio.sleep(interval)
            fps: dict[str, float] = {}
            for name in self.sources:
                now = self._inferred.get(name, 0)
                fps[name] = round((now - last.get(name, 0)) / interval, 2)
                last[name] = now
            times = sorted(self._latencies)
            stats = {
                "ts": rfc3339(time.time()),
                "fps": fps,
                "states": dict(self.states),
                "dropped": dict(self._dropped),
                "queue_depth": len(self.queue),
                "inference_ms_p50": round(times[len(times) // 2] * 1000, 2) if times else None,
                "inference_ms_p95": round(times[int(len(times) * 0.95)] * 1000, 2) if times else None,
                "device": self.engine.device if self.engine else None,
                "mqtt_buffered": self.sink.buffered,
            }
            self.sink.publish(f"{self.sink.prefix}/stats", json.dumps(stats, separators=(",", ":")), qos=0)
            up = sum(s == "streaming" for s in self.states.values())
            systemd.notify(f"STATUS={sum(fps.values()):.1f} fps, {up}/{len(self.sources)} sources up")
