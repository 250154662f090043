"""No task dies silently: background tasks under watch, and asyncio's own errors as log events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.runtime import systemd

log = get_logger(__name__)


class Supervisor:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failed: dict[str, str] = {}  # task name -> why it ended (readiness, watchdog)
        self.stopping = False  # set at shutdown: tasks ending then are expected to
        self._loop_errors: dict[str, float] = {}  # asyncio error message -> when last logged

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, forever: bool = True) -> asyncio.Task[Any]:
        """A task that raises, or (``forever``) returns while the daemon runs, is logged
        (``task_failed``), counted, turns /readyz 503 and stops the watchdog ping."""
        task = asyncio.create_task(coro, name=name)
        self.watch(task, forever=forever)
        return task

    def watch(
        self,
        task: asyncio.Task[Any],
        *,
        forever: bool = True,
        owned: bool = True,
        may_end: Callable[[], bool] = lambda: False,
    ) -> None:
        """``owned``: cancelled by :meth:`cancel_all` at shutdown (others stop on their own);
        ``may_end()``: true when returning is an outcome handled elsewhere, not a death."""
        if forever:
            self._metrics.tasks_failed.labels(task.get_name())  # at 0 from the start: a panel shows it
        if owned:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda done: self._done(done, forever and not may_end()))

    def _done(self, task: asyncio.Task[Any], forever: bool) -> None:
        if task.cancelled() or self.stopping:
            return
        error = task.exception()
        if error is None and not forever:
            return
        reason = repr(error) if error is not None else "ended unexpectedly"
        name = task.get_name()
        self.failed[name] = reason
        self._metrics.tasks_failed.labels(name).inc()
        log.error("task_failed", task=name, error=reason, exc_info=error)
        systemd.notify(f"STATUS=task {name} failed: {reason}; not ready, watchdog stopped")

    def cancel_all(self) -> None:
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own errors as log events; a flood of one kind (accept() failing with EMFILE
        while fds are exhausted retries every second) is said once a minute, not as tracebacks."""
        message = str(context.get("message", "asyncio error"))
        error = context.get("exception")
        if self.stopping and isinstance(error, ValueError) and "file descriptor" in str(error):
            # asyncio's retry of accept() after EMFILE, firing after shutdown closed the socket
            log.debug("loop_error_at_shutdown", message=message, error=repr(error))
            return
        now = time.monotonic()
        if now - self._loop_errors.get(message, -60.0) < 60.0:
            return
        self._loop_errors[message] = now
        log.error("loop_error", message=message, error=repr(error) if error is not None else None)


async def end_within(task: asyncio.Task[Any], timeout: float) -> bool:
    """Let ``task`` finish on its own for ``timeout`` seconds, else cancel it and wait until it has
    ended (not merely been told to); False when it had to be cancelled."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        task.cancel()
        await asyncio.wait([task])
        return False
    return True
