"""The stages every inferred frame flows down, in its source's capture order.

The daemon composes the chain once (object filters -> metrics and stats -> tracking and events
-> snapshots -> Home Assistant presence -> detections payload to MQTT); the engine hands each
:class:`Result` to it. A new stage (motion, say) is a class with ``on_result`` in the package of its concern,
and one line where the chain is composed. A stage that raises is logged and the next ones still
see the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from streamd.config import SourceConfig
from streamd.failures import Failures
from streamd.logging import get_logger
from streamd.types import Result

log = get_logger(__name__)


class Stage(Protocol):
    def on_result(self, result: Result) -> None: ...


@runtime_checkable
class SourceStarts(Protocol):
    """A stage with per-source settings or state: given the source's config when it starts (again
    after a reload changed it, or when its detect switch is turned back on)."""

    def source_started(self, config: SourceConfig) -> None: ...


@runtime_checkable
class SourceFinishes(Protocol):
    """A stage told when a source's last frame has gone through (its reader ended, a reload
    stopped it, or its detect switch was turned off)."""

    def source_finished(self, source: str) -> None: ...


@runtime_checkable
class WantsSkipped(Protocol):
    """A stage that needs the frames the motion gate kept from inference (they travel through
    the queue and the engine, uninferred, only where one does)."""

    def wants_skipped(self, config: SourceConfig) -> bool: ...


class Chain:
    def __init__(self, stages: Sequence[Stage], failures: Failures | None = None) -> None:
        self.stages = list(stages)
        self._failures = failures

    def __call__(self, result: Result) -> None:
        failures = self._failures
        for stage in self.stages:
            try:
                stage.on_result(result)
            except Exception as exc:
                if failures is None:
                    log.exception(
                        "stage_failed", stage=type(stage).__name__, source=result.frame.source, frame=result.frame.seq
                    )
                else:
                    failures.failed(result.frame.source, type(stage).__name__, result.frame.seq, exc)
                continue
            if failures is not None and failures.active:
                failures.succeeded(result.frame.source, type(stage).__name__)

    def wants_skipped(self, config: SourceConfig) -> bool:
        return any(stage.wants_skipped(config) for stage in self.stages if isinstance(stage, WantsSkipped))

    def source_started(self, config: SourceConfig) -> None:
        for stage in self.stages:
            if isinstance(stage, SourceStarts):
                stage.source_started(config)

    def source_finished(self, source: str) -> None:
        for stage in self.stages:
            if isinstance(stage, SourceFinishes):
                stage.source_finished(source)
        if self._failures is not None:  # a source that is gone (or paused) is not failing
            self._failures.forget(source)
