"""Rows go to the database from one thread, in batches, never from the event loop. The queue is
bounded: a database that is slow, locked or full never slows capture, inference or MQTT; past
the bound the oldest writes go, counted, with a log line at most once a minute. A batch the
database refuses is kept (within the bound) and tried again; after FAILING_FOR seconds of
refusals ``problem()`` says why (``/readyz``)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from streamd.events.metrics import EventMetrics
from streamd.events.store import EventStore
from streamd.logging import get_logger

log = get_logger(__name__)

BATCH_SECONDS = 0.5
RETRY_SECONDS = 1.0
FAILING_FOR = 60.0


class EventWriter:
    def __init__(
        self,
        store: EventStore,
        metrics: EventMetrics,
        bound: int,
        sweep: Callable[[float], None] = lambda cutoff: None,
    ) -> None:
        """``sweep(cutoff)``: run in this thread after the rows older than ``cutoff`` went (the
        history's own files that went with them)."""
        self._store, self._metrics, self._bound, self._sweep = store, metrics, bound, sweep
        self._pending: OrderedDict[str, dict[str, Any]] = OrderedDict()  # by row id: the latest state wins
        self._lock = threading.Condition()
        self._stopping = False
        self._failing_since: float | None = None
        self._last_error = ""
        self._dropped_logged = 0.0
        self._prune: float | None = None
        self._thread = threading.Thread(target=self._run, name="streamd-events", daemon=True)
        self._thread.start()

    def put(self, row: dict[str, Any]) -> None:
        """From the loop: never blocks on the database."""
        with self._lock:
            self._pending.pop(row["id"], None)
            self._pending[row["id"]] = row
            while len(self._pending) > self._bound:
                self._pending.popitem(last=False)
                self._dropped()
            self._metrics.queued.set(len(self._pending))
            self._lock.notify()

    def prune_before(self, cutoff: float) -> None:
        """Rows that ended before ``cutoff`` go, in the writer's thread (asked now and then)."""
        with self._lock:
            self._prune = cutoff
            self._lock.notify()

    def problem(self) -> str | None:
        since = self._failing_since
        if since is not None and time.monotonic() - since >= FAILING_FOR:
            return f"event history unwritable for {time.monotonic() - since:.0f} s ({self._last_error})"
        return None

    def close(self, timeout: float) -> None:
        """Writes what waits (up to ``timeout``), then stops."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join(max(0.1, timeout))

    def _dropped(self) -> None:
        self._metrics.dropped.inc()
        now = time.monotonic()
        if now - self._dropped_logged > 60:
            self._dropped_logged = now
            log.warning("events_dropped", reason="the event queue is full: the database is slow or away")

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending and not self._stopping:
                    self._lock.wait(BATCH_SECONDS)
                if self._stopping and not self._pending:
                    return
                batch = list(self._pending.values())
                self._pending.clear()
                prune, self._prune = self._prune, None
            if prune is not None:
                self._prune_rows(prune)
            if not batch:
                continue
            started = time.monotonic()
            try:
                self._store.write(batch)
            except Exception as exc:  # locked, full, away: keep the rows and try again
                self._failed(batch, exc)
                if self._stopping:
                    return
                time.sleep(RETRY_SECONDS)
                continue
            self._metrics.latency.observe(time.monotonic() - started)
            self._metrics.written.inc(len(batch))
            with self._lock:
                self._metrics.queued.set(len(self._pending))
            if self._failing_since is not None:
                log.info("events_writable", rows=len(batch))
            self._failing_since = None
            time.sleep(BATCH_SECONDS)

    def _prune_rows(self, cutoff: float) -> None:
        try:
            removed = self._store.prune(cutoff)
        except Exception as exc:
            log.warning("events_prune_failed", error=type(exc).__name__)
            return
        if removed:
            log.info("events_pruned", rows=removed)
        self._sweep(cutoff)

    def _failed(self, batch: list[dict[str, Any]], exc: Exception) -> None:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        self._metrics.errors.labels(reason).inc()
        self._last_error = f"{reason}: {str(getattr(exc, 'orig', None) or exc).splitlines()[0][:200]}"
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("events_unwritable", error=self._last_error, rows=len(batch))
        with self._lock:
            for row in reversed(batch):  # back in front of anything newer, unless newer state came
                if row["id"] not in self._pending:
                    self._pending[row["id"]] = row
                    self._pending.move_to_end(row["id"], last=False)
            while len(self._pending) > self._bound:
                self._pending.popitem(last=False)
                self._dropped()
            self._metrics.queued.set(len(self._pending))
