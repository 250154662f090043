"""A worker process: one whole pipeline (readers, queue, engine, stages, MQTT) for its share of
the sources, on its own cores. Started by the parent (``service/parent.py``) as
``streamd worker``; never by hand."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from pathlib import Path

from streamd.config import ConfigError
from streamd.exits import config_failure, startup_failure
from streamd.logging import configure, get_logger
from streamd.runtime.lifecycle import SIGNALLED, catch_early_stop
from streamd.service.link import PARENT_ENV, WorkerLink

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGTERM (a graceful drain) when the parent dies, even by SIGKILL: no orphan survives it.
    The parent may have died before this ran: then stop at once."""
    name = ctypes.util.find_library("c")
    if name is not None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    expected = os.environ.get(PARENT_ENV)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        sys.exit(0)


def run_worker(config_path: Path, run_dir: Path, index: int) -> int:
    catch_early_stop()  # a stop while this worker starts is a drain once it runs, not a silent death
    die_with_parent()
    link = WorkerLink(config_path, run_dir, index)
    # Before OpenVINO or OpenCV start a thread: both size their pools from this mask (checked:
    # under a one-CPU mask the CPU plugin compiles with INFERENCE_NUM_THREADS 1, NUM_STREAMS 1,
    # pinned inside the mask), so no two workers' inference threads share a core.
    try:
        os.sched_setaffinity(0, link.assignment.cores)
        refused = None
    except OSError as exc:  # a seccomp filter or a cpuset that changed: threads still bounded below
        refused = exc.strerror
    try:
        config = link.load()
    except ConfigError as exc:
        return config_failure(exc)
    configure(config.log.format, config.log.level, worker=index)
    if refused:
        get_logger(__name__).warning("affinity_refused", cores=link.assignment.cores, error=refused)
    from streamd.images import one_thread_per_call

    one_thread_per_call()
    get_logger(__name__).info(
        "worker_starting", cores=link.assignment.cores, sources=link.assignment.sources, pid=os.getpid()
    )
    from streamd.daemon import Daemon

    try:
        return asyncio.run(Daemon(config, worker=link).serve())
    except Exception as exc:
        return startup_failure(exc)
    finally:
        # Closing the loop gave the stop signals back their default action (exit at once): a
        # dying parent's late signals must not cut what follows short.
        catch_early_stop()
        # Signalled without the parent's stop mark: the parent may be dying; wait to know.
        if link.orphaned(wait=2.0 if SIGNALLED.is_set() else 0.0):
            get_logger(__name__).warning("worker_orphaned", note="the parent died: drained, run directory cleaned")
            link.clean_up()
