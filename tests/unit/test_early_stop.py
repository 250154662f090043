"""A stop signal that comes while a process starts (a worker importing, reading its config) is a
drain once it runs, not a silent death by the signal's default action (#32's killed parent)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

PROGRAM = """
import asyncio, os, signal
from streamd.logging import configure
from streamd.runtime.lifecycle import Lifecycle, catch_early_stop
configure("json", "info")

class Service(Lifecycle):
    def __init__(self):
        self.should_exit = asyncio.Event()
        self.exit_code = 0
    def handle_reload(self): pass
    async def startup(self): print("started", flush=True)
    async def main_loop(self): await self.should_exit.wait()
    async def shutdown(self): print("drained", flush=True)

catch_early_stop()
os.kill(os.getpid(), signal.SIGTERM)  # before serve(): remembered, not fatal
async def main():
    return await Service().serve()
raise SystemExit(asyncio.run(main()))
"""


def test_a_stop_before_serve_is_honoured_once_it_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["started", "drained"]
    assert "shutdown_requested" in result.stderr
