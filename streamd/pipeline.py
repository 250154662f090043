"""The stages every inferred frame flows down, in its source's capture order.

The daemon composes the chain once (object filters -> metrics and stats -> tracking and events
-> snapshots -> Home Assistant presence -> detections payload to MQTT). When a source starts,
the chain builds its :class:`Route`: each stage's handler for that source, or none (a source
without tracking has no tracker, and costs nothing there). The engine hands each :class:`Result`
to the chain, which runs the handlers of the frame's source. A stage that raises is logged and
the next ones still see the frame.

Stages and their handlers follow the public contract in ``stages.py``; the chain reads their
plain attributes (``wants_skipped``, ``packets``, ``end_key``), never their types.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamd.config import SourceConfig
from streamd.logging import get_logger
from streamd.runtime.failures import Failures
from streamd.stages import SourceHandler, Stage
from streamd.types import Result

log = get_logger(__name__)


class Route:
    """One source's handlers, in the chain's order: what its frames flow down."""

    def __init__(self, source: str, handlers: list[tuple[str, SourceHandler]]) -> None:
        self.source = source
        self.handlers = handlers  # (stage name for failures and metrics, handler)
        self.wants_skipped = any(h.wants_skipped for _, h in handlers)
        self.packets = next((h.packets for _, h in handlers if h.packets is not None), None)
        self.taps = tuple(h.frames for _, h in handlers if h.frames is not None)
        for index, (_, handler) in enumerate(handlers):  # who hears of a track's end, after whom
            handler.listen([h for _, h in handlers[index + 1 :] if h.end_key is not None])
        self.finished = False

    def start(self) -> None:
        for _, handler in self.handlers:
            handler.start()

    def finish(self) -> None:
        """Once: every handler hears its source's last frame is through."""
        if self.finished:
            return
        self.finished = True
        for _, handler in self.handlers:
            handler.finish()


class Chain:
    def __init__(self, stages: Sequence[Stage], failures: Failures | None = None) -> None:
        """``stages``: in chain order (``stages.build``)."""
        self.stages = list(stages)
        self._failures = failures
        self._routes: dict[str, Route] = {}

    def route(self, config: SourceConfig, last: Sequence[tuple[str, SourceHandler]] = ()) -> Route:
        """The source's handlers, built but not attached (nothing running is touched); ``last``:
        the source's own handlers after the chain's (its motion gate's feedback)."""
        handlers: list[tuple[str, SourceHandler]] = []
        for stage in self.stages:
            handler = stage.for_source(config)
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
