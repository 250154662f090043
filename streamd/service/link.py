"""A worker process's view of its parent: the assignment file it re-reads at start and at every
SIGHUP, and the Unix socket its HTTP endpoints listen on for the parent."""

from __future__ import annotations

from pathlib import Path

from streamd.config import Config
from streamd.config_file import load_config
from streamd.service.plan import Assignment


def assignment_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.json"


def http_socket(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.sock"


def notify_socket(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.notify"


class WorkerLink:
    def __init__(self, config_path: Path, run_dir: Path, index: int) -> None:
        self.config_path = config_path
        self.run_dir = run_dir
        self.index = index
        self.assignment = Assignment.read(assignment_path(run_dir, index))

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
                "metrics": config.metrics.model_copy(
                    update={"listen": f"unix:{http_socket(self.run_dir, self.index)}"}
                ),
                "model": model.model_copy(update={"threads": model.threads or len(self.assignment.cores)}),
            }
        )

    def elsewhere(self, source: str) -> bool:
        """A source another worker runs (its control messages are that worker's to answer)."""
        return self.assignment.elsewhere(source)
