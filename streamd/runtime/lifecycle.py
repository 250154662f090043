"""What the daemon and the worker service's parent share, shaped like uvicorn's Server:
``serve()`` = startup -> main loop -> shutdown under the process's signals. The first
SIGTERM/SIGINT asks for a graceful stop, a second one exits at once; SIGHUP asks for a reload."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from abc import ABC, abstractmethod
from types import FrameType

from streamd.logging import get_logger

log = get_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A stop signal that came before ``serve()`` took the signals over (a worker still importing or
# reading its config when its parent dies or stops the service): honoured once it has.
EARLY_STOP = threading.Event()
SIGNALLED = threading.Event()  # a stop signal came (as opposed to files that ended by themselves)


def catch_early_stop() -> None:
    """From now until ``serve()`` runs, SIGTERM/SIGINT are remembered instead of killing the
    process at once (their default), so a process stopped while it starts still drains."""

    def remember(sig: int, frame: FrameType | None) -> None:
        EARLY_STOP.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, remember)


class Lifecycle(ABC):
    should_exit: asyncio.Event
    exit_code: int

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self.handle_reload)
        if EARLY_STOP.is_set():
            self.handle_exit(signal.SIGTERM)
        self.on_loop(loop)
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()
            for sig in (*STOP_SIGNALS, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            # Drained: a late signal must not kill the process by the default action while
            # asyncio.run winds down (closing the loop resets the signals again: a worker re-arms
            # this before its own last steps, service/worker.py).
            catch_early_stop()
        return self.exit_code

    def handle_exit(self, sig: int) -> None:
        SIGNALLED.set()
        if self.should_exit.is_set() and not self.drain_whatever_comes():
            log.warning("forced_exit", signal=signal.Signals(sig).name)
            self.before_forced_exit()
            os._exit(1)
        if self.should_exit.is_set():
            log.info("signal_ignored", signal=signal.Signals(sig).name, reason="already draining")
            return
        log.info("shutdown_requested", signal=signal.Signals(sig).name)
        self.should_exit.set()

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Before startup, with the running loop (e.g. its exception handler)."""
        return None

    def drain_whatever_comes(self) -> bool:
        """True when a second signal must not cut the drain short (a worker: its parent escalates
        with SIGKILL, and a dying parent's kernel may signal it more than once)."""
        return False

    def before_forced_exit(self) -> None:
        """The second signal: what must not outlive the process goes first."""
        return None

    @abstractmethod
    def handle_reload(self) -> None: ...

    @abstractmethod
    async def startup(self) -> None: ...

    @abstractmethod
    async def main_loop(self) -> None: ...

    @abstractmethod
    async def shutdown(self) -> None: ...
