"""One worker process as its parent sees it: started, watched, restarted with backoff, signalled.

The parent is the worker's systemd: the worker's ``sd_notify`` datagrams (``READY=1``,
``RELOADING=1``, ``WATCHDOG=1``, ``STOPPING=1``) come to a socket of the parent's, so the
daemon's own code tells the parent when it is ready, when a reload is done and that it still
makes progress. Its HTTP endpoints listen on a Unix socket the parent reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from streamd.logging import get_logger
from streamd.runtime.backoff import Backoff
from streamd.service.link import PARENT_ENV, assignment_path, final_metrics_path, http_socket, notify_socket
from streamd.service.plan import Assignment
from streamd.sources.numbering import EPOCH_ENV, RESTARTED_ENV

log = get_logger(__name__)

WORKER_WATCHDOG = 10.0  # seconds: a ready worker pings every half of it while it makes progress
STALLED_AFTER = 3 * WORKER_WATCHDOG / 2  # three missed pings: killed and restarted
HTTP_TIMEOUT = 2.0
# Exit codes that restarting will not change: bad config, unavailable model or broker.
FATAL_EXITS = (69, 78)
DONE_EXITS = (0, 66)  # its files ended (66: none could be read): nothing left to run


class State(Enum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Exit:
    code: int | None  # None: killed by a signal
    signal: str | None

    def __str__(self) -> str:
        return f"signal {self.signal}" if self.signal else f"exit code {self.code}"


class WorkerProcess:
    def __init__(
        self,
        config_path: Path,
        run_dir: Path,
        assignment: Assignment,
        on_restart: Callable[[], None],
        epoch: float | None = None,
    ) -> None:
        """``epoch``: monotonic seconds when the service started (its frame numbers count from it)."""
        self.index = assignment.index
        self._epoch = time.monotonic() if epoch is None else epoch
        self.assignment = assignment
        self._config_path = config_path
        self._run_dir = run_dir
        self._on_restart = on_restart
        self.state = State.STARTING
        self.restarts = 0
        self.last_exit: Exit | None = None
        self.pid: int | None = None
        self.last_ping = 0.0
        self._process: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._reloads_done = 0
        self._reloaded = asyncio.Event()
        self._reloading = False
        self._stopping = False
        self._stop_requested = asyncio.Event()  # wakes a restart backoff: a stop does not wait it out
        # Whether stop() found a running pipeline to drain: a worker between restarts (its last exit
        # a crash, a SIGKILL) or still starting (no frame yet) has none, and its exit is no failed drain.
        self._drain_expected = False
        self.last_metrics = b""  # its latest exposition: the service's /metrics shows it while it is away
        self._sock: socket.socket | None = None
        self.ended = asyncio.Event()  # done or failed for good
        self.finite = False  # only files that end: exit 0 means done, not "restart me"

    # -- parent-side files and sockets ---------------------------------------------------------

    @property
    def http_path(self) -> Path:
        return http_socket(self._run_dir, self.index)

    def write_assignment(self, assignment: Assignment) -> None:
        self.assignment = assignment
        assignment.write(assignment_path(self._run_dir, self.index))

    def _listen(self) -> None:
        path = notify_socket(self._run_dir, self.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(str(path))
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_notify)
        self._sock = sock

    def _on_notify(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            for line in data.decode(errors="replace").splitlines():
                self._notified(line)

    def _notified(self, line: str) -> None:
        now = time.monotonic()
        if line == "READY=1":
            self.last_ping = now
            if self._reloading:
                self._reloading = False
                self._reloads_done += 1
                self._reloaded.set()
            if self.state is State.STARTING:
                self.state = State.READY
                log.info("worker_ready", worker=self.index, pid=self.pid, sources=self.assignment.sources)
            self._ready.set()
        elif line == "RELOADING=1":
            self._reloading = True
        elif line == "WATCHDOG=1":
            self.last_ping = now
        elif line == "STOPPING=1" and self.state is State.READY:
            self.state = State.STOPPING

    # -- life ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start the worker and keep it running: restarted with backoff after a crash, a kill or
        a stall, until it ends for good (its files are done, or a fatal exit) or the parent stops."""
        self._listen()
        backoff = Backoff(0.5, 30.0)
        try:
            while True:
                started = time.monotonic()
                await self._spawn()
                assert self._process is not None
                returncode = await self._process.wait()
                self._ready.clear()
                self._keep_final_metrics()
                self.last_exit = Exit(
                    returncode if returncode >= 0 else None,
                    signal.Signals(-returncode).name if returncode < 0 else None,
                )
                if self._stopping or (returncode in DONE_EXITS and self.finite):
                    self.state = State.DONE
                    log.info("worker_done", worker=self.index, exit=str(self.last_exit))
                    return
                if returncode in FATAL_EXITS:
                    self.state = State.FAILED
                    log.error("worker_failed", worker=self.index, exit=str(self.last_exit), note="not restarted")
                    return
                if time.monotonic() - started > 60:
                    backoff.reset()  # it ran a good while: this is a new fault, not a crash loop
                delay = backoff.next_delay()
                self.state = State.RESTARTING
                self.restarts += 1
                self._on_restart()
                log.error(
                    "worker_exited",
                    worker=self.index,
                    pid=self.pid,
                    exit=str(self.last_exit),
                    sources=self.assignment.sources,
                    restart_in=round(delay, 2),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), delay)
                if self._stopping:
                    self.state = State.DONE
                    return
        finally:
            self.ended.set()
            self._close_socket()

    async def _spawn(self) -> None:
        env = dict(os.environ)
        env.pop("WATCHDOG_PID", None)
        env.pop("LISTEN_FDS", None)
        env.update(
            {
                "NOTIFY_SOCKET": str(notify_socket(self._run_dir, self.index)),
                "WATCHDOG_USEC": str(int(WORKER_WATCHDOG * 1_000_000)),
                PARENT_ENV: str(os.getpid()),
                EPOCH_ENV: repr(self._epoch),
                RESTARTED_ENV: "1" if self.restarts else "0",
            }
        )
        args = ["-m", "streamd", "worker", "-c", str(self._config_path), "--run-dir", str(self._run_dir)]
        self.state = State.STARTING
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            "--index",
            str(self.index),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            # Its own process group: a Ctrl-C in a terminal (or `timeout`) reaches the parent only,
            # which forwards one SIGTERM; a second one would make the worker exit at once.
            process_group=0,
        )
        self.pid = self._process.pid
        self.last_ping = time.monotonic()
        log.info("worker_started", worker=self.index, pid=self.pid, cores=self.assignment.cores)

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def signal(self, sig: signal.Signals) -> bool:
        if self._process is None or self._process.returncode is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(sig)
            return True
        return False

    def stalled(self, now: float) -> bool:
        """Ready, yet no watchdog ping for three intervals: the worker is wedged."""
        return self.state is State.READY and now - self.last_ping > STALLED_AFTER

    def progressing(self, now: float) -> bool:
        """Two missed pings already stop the service's own (three kill the worker)."""
        return self.state is State.DONE or (self.state is State.READY and now - self.last_ping <= WORKER_WATCHDOG)

    async def reload(self, timeout: float) -> bool:
        """SIGHUP, then wait until its reload is done (its ``READY=1`` after ``RELOADING=1``).
        A worker not ready yet reads its assignment when it starts: nothing to wait for."""
        if self.state is not State.READY:
            return False
        target = self._reloads_done + 1
        self._reloaded.clear()
        if not self.signal(signal.SIGHUP):
            return False
        deadline = time.monotonic() + timeout
        while self._reloads_done < target and self.state is State.READY:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("worker_reload_slow", worker=self.index, timeout=timeout)
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reloaded.wait(), min(remaining, 1.0))
            self._reloaded.clear()
        return self._reloads_done >= target

    def stop(self) -> None:
        """SIGTERM: the worker drains (its own ``daemon.shutdown_timeout``) and exits."""
        self._stopping = True
        self._stop_requested.set()
        running = self.state in (State.READY, State.STOPPING)
        self._drain_expected = self.signal(signal.SIGTERM) and running

    @property
    def stopped_cleanly(self) -> bool:
        """After stop(): it drained and exited 0 or 66, or there was nothing running to drain."""
        if not self._drain_expected:
            return True
        return self.last_exit is not None and self.last_exit.code in DONE_EXITS

    def _keep_final_metrics(self) -> None:
        """What the worker wrote as it exited replaces the last scrape (it holds the last counts)."""
        path = final_metrics_path(self._run_dir, self.index)
        with contextlib.suppress(OSError):
            self.last_metrics = path.read_bytes()
            path.unlink()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def get(self, path: str) -> tuple[int, bytes]:
        """An HTTP GET on the worker's Unix socket: (status, body); (0, b"") when it does not answer."""
        if self._process is None or self._process.returncode is not None:
            return 0, b""
        try:
            return await asyncio.wait_for(self._get(path), HTTP_TIMEOUT)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            return 0, b""

    async def _get(self, path: str) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_unix_connection(str(self.http_path))
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            response = await reader.read()
        finally:
            writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body
