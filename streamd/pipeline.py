"""The stages every inferred frame flows down, in its source's capture order.

The daemon composes the chain once (object filters -> metrics and stats -> tracking and events
-> snapshots -> Home Assistant presence -> detections payload to MQTT). When a source starts,
the chain builds its :class:`Route`: each stage's handler for that source, or none (a source
without tracking has no tracker, and costs nothing there). The engine hands each :class:`Result`
to the chain, which runs the handlers of the frame's source. A stage that raises is logged and
the next ones still see the frame.

A stage is either a :class:`PerSource` factory (per-source settings or state live in the handler
it builds) or a handler itself, the same for every source (stats, the detections payload).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from streamd.config import SourceConfig
from streamd.failures import Failures
from streamd.logging import get_logger
from streamd.types import Result

if TYPE_CHECKING:
    from streamd.recording.packets import PacketSink

log = get_logger(__name__)


class Handler(Protocol):
    """One stage's work on one source's results."""

    def on_result(self, result: Result) -> None: ...


@runtime_checkable
class PerSource(Protocol):
    """A stage with per-source settings or state: builds the source's handler (or None: nothing
    to do for it) when the source starts, again after a reload changed it or its detect switch
    came back on. Building must not touch anything running (a reload builds before it swaps)."""

    def for_source(self, config: SourceConfig) -> Handler | None: ...


@runtime_checkable
class Starts(Protocol):
    """A handler with something to announce once its source runs (Home Assistant discovery)."""

    def start(self) -> None: ...


@runtime_checkable
class Finishes(Protocol):
    """A handler told when its source's last frame has gone through (its reader ended, a reload
    stopped it, or its detect switch was turned off)."""

    def finish(self) -> None: ...


@runtime_checkable
class WantsSkipped(Protocol):
    """A handler that needs the frames the motion gate kept from inference (they travel through
    the queue and the engine, uninferred, only where one does)."""

    wants_skipped: bool


@runtime_checkable
class WantsPackets(Protocol):
    """A handler that takes the source's compressed packets as they come (its recorder)."""

    packets: PacketSink


@runtime_checkable
class HearsTrackEnds(Protocol):
    """A handler that has something to add to a track's ``end`` event (its snapshot): a task
    whose result the event carries under ``end_key``, or None."""

    end_key: str

    def track_ended(self, track_id: int) -> asyncio.Task[dict[str, Any] | None] | None: ...


@runtime_checkable
class EndsTracks(Protocol):
    """A handler that ends tracks (tracking): told which later handlers of its route hear of it."""

    def listen(self, listeners: Sequence[HearsTrackEnds]) -> None: ...


Stage = PerSource | Handler  # a factory of per-source handlers, or one handler for every source


class Route:
    """One source's handlers, in the chain's order: what its frames flow down."""

    def __init__(self, source: str, handlers: list[tuple[str, Handler]]) -> None:
        self.source = source
        self.handlers = handlers  # (stage name for failures and metrics, handler)
        self.wants_skipped = any(isinstance(h, WantsSkipped) and h.wants_skipped for _, h in handlers)
        self.packets = next((h.packets for _, h in handlers if isinstance(h, WantsPackets)), None)
        for index, (_, handler) in enumerate(handlers):
            if isinstance(handler, EndsTracks):
                handler.listen([h for _, h in handlers[index + 1 :] if isinstance(h, HearsTrackEnds)])
        self.finished = False

    def start(self) -> None:
        for _, handler in self.handlers:
            if isinstance(handler, Starts):
                handler.start()

    def finish(self) -> None:
        """Once: every handler hears its source's last frame is through."""
        if self.finished:
            return
        self.finished = True
        for _, handler in self.handlers:
            if isinstance(handler, Finishes):
                handler.finish()


class Chain:
    def __init__(self, stages: Sequence[Stage], failures: Failures | None = None) -> None:
        """``stages``: :class:`PerSource` factories or :class:`Handler` objects, in order."""
        self.stages = list(stages)
        self._failures = failures
        self._routes: dict[str, Route] = {}

    def route(self, config: SourceConfig, last: Sequence[tuple[str, Handler]] = ()) -> Route:
        """The source's handlers, built but not attached (nothing running is touched); ``last``:
        the source's own handlers after the chain's (its motion gate's feedback)."""
        handlers: list[tuple[str, Handler]] = []
        for stage in self.stages:
            handler = stage.for_source(config) if isinstance(stage, PerSource) else stage
            if handler is not None:
                handlers.append((type(stage).__name__, handler))
        return Route(config.name, [*handlers, *last])

    def attach(self, route: Route) -> None:
        """The source's frames flow down ``route`` from now on."""
        self._routes[route.source] = route
        route.start()

    def detach(self, route: Route) -> None:
        """The source is gone (or paused): its handlers finish and it is no longer failing."""
        route.finish()
        if self._routes.get(route.source) is route:
            del self._routes[route.source]
        if self._failures is not None:
            self._failures.forget(route.source)

    def __call__(self, result: Result) -> None:
        route = self._routes.get(result.frame.source)
        if route is None:
            return  # a frame that outlived its source's retirement (stopped past its timeout)
        failures = self._failures
        for name, handler in route.handlers:
            try:
                handler.on_result(result)
            except Exception as exc:
                if failures is None:
                    log.exception("stage_failed", stage=name, source=result.frame.source, frame=result.frame.seq)
                else:
                    failures.failed(result.frame.source, name, result.frame.seq, exc)
                continue
            if failures is not None and failures.active:
                failures.succeeded(result.frame.source, name)
