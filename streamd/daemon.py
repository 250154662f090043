"""The daemon: wires sources -> queue -> engine -> MQTT and owns the lifecycle.

Shaped like uvicorn's Server: ``serve()`` reads startup -> main loop -> shutdown. The first
SIGTERM/SIGINT asks for a graceful stop (stop capture, finish queued and in-flight frames,
flush MQTT, publish ``offline``); a second one exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import deque
from datetime import UTC, datetime

from streamd import __version__, systemd
from streamd.config import Config
from streamd.health import HealthServer
from streamd.inference.decoders import Detection
from streamd.inference.engine import Engine
from streamd.inference.model import PreparedModel, prepare
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.queue import FrameQueue
from streamd.sinks.mqtt import MqttSink
from streamd.sources.capture import CaptureSource
from streamd.sources.frame import Frame

log = get_logger("streamd.daemon")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LATENCY_WINDOW = 512  # inference times kept for the stats topic's percentiles


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Daemon:
    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.should_exit = asyncio.Event()
        self.force_exit = False
        self.prepared: PreparedModel | None = None
        self.engine: Engine | None = None
        self.sink = MqttSink(config.mqtt, self.metrics)
        self.queue = FrameQueue(config.queue.size, self._on_drop)
        self.sources: dict[str, CaptureSource] = {}
        self.states: dict[str, str] = {}
        self.health: HealthServer | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._published_frames: dict[str, int] = {}
        self._inferred: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self.exit_code = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)
        return self.exit_code

    def handle_exit(self, sig: int) -> None:
        if self.should_exit.is_set():
            log.warning("forced_exit", signal=signal.Signals(sig).name)
            self.force_exit = True
            os._exit(1)
        log.info("shutdown_requested", signal=signal.Signals(sig).name)
        self.should_exit.set()

    async def startup(self) -> None:
        cfg = self.config
        self.metrics.build.info({"version": __version__})
        self.metrics.init_mqtt(cfg.mqtt.buffer)
        for source_cfg in cfg.sources:
            self.metrics.init_source(source_cfg.name)
        if cfg.metrics.listen:
            self.health = HealthServer(cfg.metrics.listen, self.metrics, self.readiness)
            await self.health.start()
        self.sink.start()
        self.prepared = await asyncio.to_thread(prepare, cfg.model)
        self.engine = Engine(self.prepared, self.metrics, self._on_result)
        variant = await self.engine.start()
        placed = variant.placement
        if placed.fallback:
            log.warning("device_fallback", requested=placed.requested, absent=placed.dropped, device=placed.device)
        log.info(
            "model_ready",
            model=self.prepared.name,
            device=placed.device,
            input=self.prepared.image.name,
            shape=self.prepared.image.shape,
            preprocess=self.prepared.preprocess_mode,
            placement=placed.summary() if placed.heterogeneous else None,
            compile_seconds=round(variant.seconds, 3),
            requests=variant.requests,
        )
        self.metrics.model_info.labels(
            self.prepared.name, placed.device, "x".join(map(str, self.prepared.image.shape))
        ).set(1)
        self._engine_task = asyncio.create_task(self.engine.run(self.queue), name="engine")
        loop = asyncio.get_running_loop()
        transform = self.engine.input_transform()
        for source_cfg in cfg.sources:
            source = CaptureSource(source_cfg, loop, self.queue, self.metrics, self._on_state, transform)
            self.sources[source.name] = source
            source.start()
        self._stats_task = asyncio.create_task(self._stats_loop(), name="stats")
        systemd.notify(f"READY=1\nSTATUS=streaming {len(self.sources)} source(s) on {placed.device}")

    async def main_loop(self) -> None:
        """Run until a signal, or until every source is a finished file (then drain and exit)."""
        waits: list[asyncio.Task[None]] = [asyncio.create_task(self._until_exit())]
        if all(s.finite for s in self.sources.values()):
            waits.append(asyncio.create_task(self._all_sources_done()))
        assert self._engine_task is not None
        waits.append(self._engine_task)  # an engine crash ends the main loop too
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            if task is not self._engine_task:
                task.cancel()
        if self._engine_task in done and self._engine_task.exception() is not None:
            log.error("engine_failed", error=repr(self._engine_task.exception()))
            self.exit_code = 1

    async def _until_exit(self) -> None:
        await self.should_exit.wait()

    async def _all_sources_done(self) -> None:
        await asyncio.gather(*(s.wait() for s in self.sources.values()))
        log.info("sources_done", states=self.states)

    async def shutdown(self) -> None:
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
        if self._stats_task is not None:
            self._stats_task.cancel()
        await self.sink.close(max(1.0, deadline - time.monotonic()))
        if self.health is not None:
            await self.health.stop()
        log.info("stopped", frames=self._published_frames)

    # -- callbacks on the loop ---------------------------------------------------------------

    def _on_state(self, source: str, state: str) -> None:
        if self.states.get(source) == state:
            return
        self.states[source] = state
        log.info("source_state", source=source, state=state)
        self.sink.publish(self.sink.topic(source, "state"), state, qos=1, retain=True)

    def _on_drop(self, source: str, reason: str) -> None:
        self.metrics.frames_dropped.labels(source, reason).inc()
        self._dropped[source] = self._dropped.get(source, 0) + 1

    def _on_result(self, frame: Frame, detections: list[Detection], seconds: float) -> None:
        self._latencies.append(seconds)
        self._inferred[frame.source] = self._inferred.get(frame.source, 0) + 1
        for det in detections:
            self.metrics.detections.labels(frame.source, det.label).inc()
        if not detections and not self.config.mqtt.publish_empty:
            return
        assert self.prepared is not None and self.engine is not None
        payload = {
            "source": frame.source,
            "frame": frame.seq,
            "ts": rfc3339(frame.ts),
            "latency_ms": round((time.monotonic() - frame.captured) * 1000.0, 2),
            "width": frame.width,
            "height": frame.height,
            "model": self.prepared.name,
            "device": self.engine.device,
            "detections": [d.as_json() for d in detections],
        }
        self._published_frames[frame.source] = self._published_frames.get(frame.source, 0) + 1
        self.sink.publish(
            self.sink.topic(frame.source, "detections"),
            json.dumps(payload, separators=(",", ":")),
            source=frame.source,
            captured=frame.captured,
        )

    # -- health and stats -------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, object]]:
        reasons: list[str] = []
        if self.engine is None or self.engine.base is None:
            reasons.append("model not compiled yet")
        if not self.sink.connected.is_set():
            reason = self.sink.last_error or "not connected yet"
            reasons.append(f"mqtt disconnected ({reason}); buffering {self.sink.buffered}/{self.config.mqtt.buffer}")
        if not any(state == "streaming" for state in self.states.values()):
            reasons.append("no source streaming")
        body: dict[str, object] = {
            "ready": not reasons,
            "reasons": reasons,
            "mqtt_connected": self.sink.connected.is_set(),
            "mqtt_buffered": self.sink.buffered,
            "sources": dict(self.states),
            "device": self.engine.device if self.engine else None,
        }
        return not reasons, body

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
            systemd.notify(
                f"STATUS={sum(fps.values()):.1f} fps, "
                f"{sum(s == 'streaming' for s in self.states.values())}/{len(self.sources)} sources up"
            )
