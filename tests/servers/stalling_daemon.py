"""``python -m tests.servers.stalling_daemon -c FILE``: the real daemon, with an engine that stops
taking frames after 15 of them, like a wedged device (for the watchdog test). The engine's ``run``
is replaced in this process only: production code carries no hook for it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from streamd.cli import run
from streamd.config_file import load_config
from streamd.inference.engine import Engine
from streamd.logging import configure, get_logger
from streamd.queue import FrameQueue
from streamd.types import Frame

STALL_AFTER = 15
log = get_logger("streamd.test")


class StallAfter:
    """The queue as the engine sees it, until ``count`` frames were taken: then get() never returns."""

    def __init__(self, queue: FrameQueue, count: int) -> None:
        self._queue, self._left = queue, count

    def __len__(self) -> int:
        return len(self._queue)

    async def get(self) -> Frame:
        if self._left == 0:
            log.warning("engine_stall_injected", frames=STALL_AFTER)
            await asyncio.Event().wait()
        self._left -= 1
        return await self._queue.get()


_engine_run = Engine.run


async def stalling_run(self: Engine, queue: FrameQueue) -> None:
    await _engine_run(self, StallAfter(queue, STALL_AFTER))  # type: ignore[arg-type]


if __name__ == "__main__":
    path = Path(sys.argv[sys.argv.index("-c") + 1])
    config = load_config(path)
    configure(config.log.format, config.log.level)
    Engine.run = stalling_run  # type: ignore[method-assign]
    sys.exit(run(config, lambda: load_config(path)))
