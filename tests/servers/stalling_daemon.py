"""``python -m tests.servers.stalling_daemon -c FILE``: the real daemon on a device that stops
answering after 15 requests, like a wedged GPU (for the watchdog test). The device is passed in
through the daemon's adapter factory, the seam the composition root offers (nothing patched)."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import openvino as ov

from streamd.config_file import load_config
from streamd.daemon import Daemon
from streamd.inference.adapter import OpenVinoAdapter
from streamd.logging import configure, get_logger

STALL_AFTER = 15
log = get_logger("tests.servers.stalling_daemon")


class WedgedDevice(OpenVinoAdapter):
    """Answers the first requests, then takes new ones and never completes them."""

    _started = 0
    _lock = threading.Lock()

    def start(self, tensor: ov.Tensor, userdata: Any) -> None:
        with WedgedDevice._lock:
            WedgedDevice._started += 1
            wedged = WedgedDevice._started > STALL_AFTER
        if wedged:
            if WedgedDevice._started == STALL_AFTER + 1:
                log.warning("engine_stall_injected", frames=STALL_AFTER)
            return  # taken, never answered: the engine's request slots run out
        super().start(tensor, userdata)


if __name__ == "__main__":
    path = Path(sys.argv[sys.argv.index("-c") + 1])
    config = load_config(path)
    configure(config.log.format, config.log.level)
    sys.exit(asyncio.run(Daemon(config, lambda: load_config(path), adapter=WedgedDevice).serve()))
