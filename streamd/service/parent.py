"""The parent of the worker processes: it owns the service and holds no model and no frames.

Shaped like the daemon (and uvicorn's supervisors): ``serve()`` = startup -> main loop ->
shutdown. It plans which worker runs which sources on which cores (``plan.py``), keeps every
worker running (``child.py``: restarts with backoff, stalls killed), serves one ``/metrics``,
``/healthz``, ``/readyz``, the API and the page for all on ``http.listen``, publishes the service's status and
merged stats (``status.py``), tells systemd ``READY=1`` when every worker is ready and
``WATCHDOG=1`` only while every worker makes progress, forwards SIGHUP (sources that move finish
in their old worker before they start in the new one) and SIGTERM (every worker drains).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.process_collector import ProcessCollector

from streamd import __version__
from streamd.config import Config, ConfigError, is_file_uri
from streamd.config_objects import state_directory
from streamd.events.api import event_routes
from streamd.events.stage import EventsStage
from streamd.events.store import EventStore, default_url
from streamd.health import exposition, healthz, readiness_response
from streamd.logging import get_logger
from streamd.recording.serve import clips_route, recording_folders
from streamd.runtime import systemd
from streamd.runtime.lifecycle import Lifecycle
from streamd.service.child import State, WorkerProcess
from streamd.service.gateway import gateway_routes
from streamd.service.link import stopping_marker
from streamd.service.merge import merge_expositions, merge_readiness, merge_stats
from streamd.service.plan import Assignment, Plan, format_cores, make_plan, moved
from streamd.service.status import ServiceStatus
from streamd.web.auth import credentials
from streamd.web.pages import page_routes
from streamd.web.server import WebServer, deprecated_listen

log = get_logger(__name__)

RELOAD_TIMEOUT = 120.0  # a worker's reload compiles a changed model: allow for a slow GPU compile


class Service(Lifecycle):
    def __init__(
        self, config: Config, load: Callable[[], Config], config_path: Path, count: int, cores: list[int]
    ) -> None:
        """``load`` re-reads the config (SIGHUP); the workers read ``config_path`` themselves and
        keep to their assignment (sources, MQTT instance, cores)."""
        self.config = config
        self.load = load
        self.cores = cores
        self.count = count
        self.plan: Plan = make_plan([s.name for s in config.sources], count, cores, config.mqtt.instance)
        self.run_dir = Path(tempfile.mkdtemp(prefix="streamd-", dir=os.environ.get("RUNTIME_DIRECTORY")))
        self.registry = CollectorRegistry()
        ProcessCollector(namespace="streamd_parent", registry=self.registry)
        self.restarts = Counter(
            "streamd_worker_restarts",
            "Worker processes restarted after a crash, kill or stall",
            ["worker"],
            registry=self.registry,
        )
        self.worker_up = Gauge("streamd_worker_up", "1 while the worker is ready", ["worker"], registry=self.registry)
        epoch = time.monotonic()
        self.workers = [
            WorkerProcess(config_path, self.run_dir, a, self.restarts.labels(str(a.index)).inc, epoch)
            for a in self.plan.workers
        ]
        for worker in self.workers:
            worker.finite = self._finite(worker.assignment)
        self.status = ServiceStatus(config.mqtt)
        self.health: WebServer | None = None
        self.should_exit = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._failed: dict[str, str] = {}  # a task of the parent's that died: not ready, no watchdog ping
        self._started = False
        self.exit_code = 0

    def _finite(self, assignment: Assignment) -> bool:
        by_name = {s.name: s for s in self.config.sources}
        chosen = [by_name[n] for n in assignment.sources if n in by_name]
        return bool(chosen) and all(is_file_uri(s.uri) and not s.loop for s in chosen)

    # -- lifecycle --------------------------------------------------------------------------

    def before_forced_exit(self) -> None:
        for worker in self.workers:
            worker.kill()

    def handle_reload(self) -> None:
        if not self._started:
            log.warning("reload_ignored", reason="still starting: send SIGHUP again once ready")
            return
        self._spawn(self.reload(), "reload")

    async def startup(self) -> None:
        log.info(
            "service_starting",
            version=__version__,
            workers=self.count,
            plan=[
                {**p, "cores": format_cores(a.cores)}
                for p, a in zip(self.plan.describe(), self.plan.workers, strict=True)
            ],
            run_dir=str(self.run_dir),
        )
        for worker in self.workers:
            worker.write_assignment(worker.assignment)
        if self.config.http.listen:
            routes = [
                web.get("/metrics", self._metrics),
                web.get("/healthz", healthz),
                web.get("/readyz", self._readyz),
                clips_route(lambda: recording_folders(self.config)),  # the workers' clips
                *gateway_routes(lambda: self.workers, lambda: self.plan.placement),
                *self._history(),
                *page_routes(),
            ]
            self.health = WebServer(self.config.http.listen, routes, credentials(self.config.http))
            await self.health.start()
            deprecated_listen(self.config)
        self.status.start()
        for worker in self.workers:
            self._spawn(worker.run(), f"worker-{worker.index}")
        # Ready once every worker is (or ended: a short file may be done before the last compiles).
        await self._first(self._all_ready(), self.should_exit.wait())
        self._spawn(self._stats_loop(), "stats")
        self._spawn(self._watch(), "watch")
        self._started = True
        sources = sum(len(w.assignment.sources) for w in self.workers)
        systemd.notify(f"READY=1\nSTATUS=streaming {sources} source(s) in {self.count} worker(s)")

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """No task dies silently: one that raises is logged, makes /readyz 503 and stops the pings."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self._failed[task.get_name()] = repr(error)
        log.error("task_failed", task=task.get_name(), error=repr(error), exc_info=error)

    async def _all_ready(self) -> None:
        async def one(worker: WorkerProcess) -> None:
            await self._first(worker.wait_ready(), worker.ended.wait())

        await asyncio.gather(*(one(w) for w in self.workers))

    async def _all_ended(self) -> None:
        await asyncio.gather(*(w.ended.wait() for w in self.workers))

    @staticmethod
    async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
        """Until the first of these is done; the others are cancelled."""
        tasks = [asyncio.create_task(w) for w in waits]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()

    async def main_loop(self) -> None:
        """Until a signal, or until every worker has ended (their files are done, or a fatal exit)."""
        await self._first(self._all_ended(), self.should_exit.wait())
        failed = [w for w in self.workers if w.state is State.FAILED]
        if failed:
            # A worker that cannot start (config, model, broker refused us) will not fix itself:
            # the service stops with its code, and systemd does not restart it (RestartPreventExitStatus).
            first = failed[0].last_exit
            self.exit_code = first.code if first and first.code else 1
            log.error("service_failed", workers=[w.index for w in failed], exit=self.exit_code)

    async def shutdown(self) -> None:
        # The watch ends first: no WATCHDOG=1 after STOPPING=1 (a ping slipped in while the workers
        # drained, once in a CI run), and no draining worker is killed as stalled: the grace decides.
        watch = [task for task in self._tasks if task.get_name() == "watch"]
        for task in watch:
            task.cancel()
        await asyncio.gather(*watch, return_exceptions=True)
        systemd.notify("STOPPING=1")
        with contextlib.suppress(OSError):
            stopping_marker(self.run_dir).touch()  # the workers know a living parent stops them
        for worker in self.workers:
            worker.stop()
        grace = self.config.daemon.shutdown_timeout + 5.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_ended(), grace)
        for worker in self.workers:
            if not worker.ended.is_set():
                log.error("worker_kill", worker=worker.index, reason=f"still running {grace:.0f} s after SIGTERM")
                worker.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_ended(), 5.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.status.close(5.0)
        if self.health is not None:
            await self.health.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        exits = {w.index: str(w.last_exit) for w in self.workers}
        if self.exit_code == 0:
            codes = [w.last_exit.code if w.last_exit else None for w in self.workers]
            if not all(w.stopped_cleanly for w in self.workers):
                self.exit_code = 1  # a worker did not drain cleanly
            elif codes and all(code == 66 for code in codes):
                self.exit_code = 66
        log.info("stopped", workers=exits, restarts={w.index: w.restarts for w in self.workers}, exit=self.exit_code)

    # -- reload -----------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: validate the file, re-plan moving as few sources as possible, then signal the
        workers in two steps, so a moving source ends in its old worker before the new one
        starts it: first the workers that lose sources (they keep only what stays), then all."""
        async with self._reload_lock:
            started = time.monotonic()
            systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={systemd.monotonic_usec()}")
            try:
                await self._reload(started)
            finally:
                systemd.notify("READY=1")

    async def _reload(self, started: float) -> None:
        try:
            new = self.load()
        except ConfigError as exc:
            log.error("reload_rejected", error=str(exc), key=exc.key, problems=exc.lines())
            return
        if new.daemon.workers != self.config.daemon.workers:
            log.warning("reload_needs_restart", sections=["daemon.workers"], note="kept the running worker count")
        before = self.plan.placement
        plan = make_plan([s.name for s in new.sources], self.count, self.cores, new.mqtt.instance, before)
        going = moved(before, plan.placement)
        self.config = new
        losing = []
        for worker, after in zip(self.workers, plan.workers, strict=True):
            leaving = [n for n in worker.assignment.sources if plan.placement.get(n, worker.index) != worker.index]
            if leaving:  # first without them (and without what the file dropped)
                kept = [n for n in after.sources if n in worker.assignment.sources]
                worker.write_assignment(replace(after, sources=kept))
                losing.append(worker)
        await asyncio.gather(*(w.reload(RELOAD_TIMEOUT) for w in losing))
        for worker, after in zip(self.workers, plan.workers, strict=True):
            worker.write_assignment(after)
            worker.finite = self._finite(after)
        await asyncio.gather(*(w.reload(RELOAD_TIMEOUT) for w in self.workers))
        self.plan = plan
        log.info("reload_done", moved=going, plan=plan.describe(), seconds=round(time.monotonic() - started, 3))

    # -- what the service tells the world ---------------------------------------------------------

    def _history(self) -> list[web.RouteDef]:
        """The workers write their events to one store; the parent reads it for the API."""
        if not EventsStage.wanted(self.config):
            return []
        self.events_store = EventStore(self.config.events.db or default_url(state_directory()))
        return event_routes(self.events_store)

    async def _metrics(self, request: web.Request) -> web.Response:
        for worker in self.workers:
            self.worker_up.labels(str(worker.index)).set(1 if worker.state is State.READY else 0)
        answers = await asyncio.gather(*(w.get("/metrics") for w in self.workers))
        texts = []
        for worker, (status, body) in zip(self.workers, answers, strict=True):
            if status == 200:
                worker.last_metrics = body
            # A worker that is away (ended, restarting) keeps its last exposition until it is
            # replaced: a finished file source's counts stay visible until the service exits.
            if worker.last_metrics:
                texts.append((worker.index, worker.last_metrics))
        return exposition(merge_expositions(self.registry, texts))

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, body = await self.readiness()
        return readiness_response(ready, body)

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready when every worker is ready and says so, and a source streams somewhere."""
        answers = await asyncio.gather(*(w.get("/readyz") for w in self.workers))
        reasons = [f"task {name} failed: {why}" for name, why in self._failed.items()]
        if not self.status.connected:
            reasons.append(f"mqtt status connection down ({self.status.last_error or 'not connected yet'})")
        return merge_readiness(self.workers, answers, reasons, self.status.connected)

    async def _stats_loop(self) -> None:
        """Every ``daemon.stats_interval``: the workers' latest stats as one message."""
        while True:
            await asyncio.sleep(self.config.daemon.stats_interval)
            answers = await asyncio.gather(*(w.get("/stats") for w in self.workers))
            parts = []
            for status, raw in answers:
                with contextlib.suppress(ValueError):
                    if status == 200 and raw:
                        parts.append(json.loads(raw))
            if parts:
                self.status.publish_stats(json.dumps(merge_stats(parts), separators=(",", ":")).encode())

    async def _watch(self) -> None:
        """Kill a wedged worker (it restarts); ping systemd only while every worker progresses."""
        interval = systemd.watchdog_interval()
        while True:
            now = time.monotonic()
            for worker in self.workers:
                if worker.stalled(now):
                    log.error("worker_stalled", worker=worker.index, pid=worker.pid, sources=worker.assignment.sources)
                    worker.kill()
            if interval is not None and not self._failed and all(w.progressing(now) for w in self.workers):
                systemd.notify("WATCHDOG=1")
            await asyncio.sleep(min(interval or 2.0, 2.0))
