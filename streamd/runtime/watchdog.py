"""systemd's watchdog: WATCHDOG=1 only while the loop runs, the engine progresses and no task died,
so a wedged or half-dead process is restarted rather than left to look alive."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streamd.logging import get_logger
from streamd.runtime import systemd

log = get_logger(__name__)


async def ping_while_healthy(
    interval: float,
    task_failed: Callable[[], bool],
    progressing: Callable[[float], bool],
    describe_stall: Callable[[], dict[str, object]],
) -> None:
    stalled = False
    while True:
        if task_failed():
            pass  # a dead task: no ping, systemd restarts the process (logged when it died)
        elif progressing(2 * interval):
            systemd.notify("WATCHDOG=1")
            stalled = False
        elif not stalled:
            stalled = True
            log.error("engine_stalled", **describe_stall())
        await asyncio.sleep(interval)
