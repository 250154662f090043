"""A worker process's view of its parent: the assignment file it re-reads at start and at every
SIGHUP, and the Unix socket its HTTP endpoints listen on for the parent."""

from __future__ import annotations

import contextlib
import os
import select
from pathlib import Path

from streamd.config import Config
from streamd.config_file import load_config
from streamd.service.plan import Assignment

PARENT_ENV = "STREAMD_PARENT_PID"  # the parent's pid, as the worker's parent should be


def assignment_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.json"


def http_socket(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.sock"


def notify_socket(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.notify"


def stopping_marker(run_dir: Path) -> Path:
    """Written by the parent before it stops its workers: a worker that finds it was stopped by a
    living parent, which cleans the run directory itself."""
    return run_dir / "stopping"


def final_metrics_path(run_dir: Path, index: int) -> Path:
    """A worker's last exposition, written as it exits: the service's /metrics keeps showing its
    series (a finished file source's counts) after it is gone, until it is replaced."""
    return run_dir / f"worker-{index}.prom"


def worker_files(run_dir: Path, index: int) -> list[Path]:
    return [
        assignment_path(run_dir, index),
        http_socket(run_dir, index),
        notify_socket(run_dir, index),
        final_metrics_path(run_dir, index),
    ]


class WorkerLink:
    def __init__(self, config_path: Path, run_dir: Path, index: int) -> None:
        self.config_path = config_path
        self.run_dir = run_dir
        self.index = index
        self.assignment = Assignment.read(assignment_path(run_dir, index))
        self._parent = _open_parent()

    def load(self) -> Config:
        """The config file with only this worker's sources, its own MQTT identity (client id and
        buffer file), its HTTP on the parent's socket and its inference threads on its cores."""
        self.assignment = Assignment.read(assignment_path(self.run_dir, self.index))
        config = load_config(self.config_path)
        mine = set(self.assignment.sources)
        mqtt = config.mqtt.model_copy(update={"instance": self.assignment.instance})
        model = config.model
        return config.model_copy(
            update={
                "sources": [s for s in config.sources if s.name in mine],
                "mqtt": mqtt.model_copy(
                    update={"instance": self.assignment.instance, "client_id": f"{mqtt.identity}-w{self.index}"}
                ),
                "http": config.http.model_copy(update={"listen": f"unix:{http_socket(self.run_dir, self.index)}"}),
                "model": model.model_copy(update={"threads": model.threads or len(self.assignment.cores)}),
            }
        )

    def save_final_metrics(self, exposition: bytes) -> None:
        path = final_metrics_path(self.run_dir, self.index)
        partial = path.with_suffix(".part")
        try:
            partial.write_bytes(exposition)
            os.replace(partial, path)
        except OSError:
            pass  # the parent shows the last exposition it scraped instead

    def orphaned(self, wait: float = 0.0) -> bool:
        """The parent is gone (killed): nobody will clean the run directory but us. A parent that
        stops its workers says so first (``stopping_marker``). Otherwise the parent may be dying:
        the kernel's parent-death signal comes as its first thread exits, and a worker drains in
        milliseconds, before the parent is gone and ``getppid()`` changes, so its process
        descriptor is waited on (at most ``wait`` seconds)."""
        if stopping_marker(self.run_dir).exists():
            return False
        if self._parent is not None:
            return bool(select.select([self._parent], [], [], wait)[0])
        expected = os.environ.get(PARENT_ENV, "")
        return expected.isdigit() and os.getppid() != int(expected)

    def clean_up(self) -> None:
        """An orphan's exit: its own files out of the run directory, and the directory itself
        once the last worker has gone (rmdir fails while another's files are there)."""
        for path in worker_files(self.run_dir, self.index):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()

    def elsewhere(self, source: str) -> bool:
        """A source another worker runs (its control messages are that worker's to answer)."""
        return self.assignment.elsewhere(source)


def _open_parent() -> int | None:
    """A process descriptor of the parent (readable once it has exited), where Linux has them."""
    expected = os.environ.get(PARENT_ENV, "")
    if not expected.isdigit() or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(int(expected))
    except OSError:  # gone already, or no pidfd in this kernel
        return None
