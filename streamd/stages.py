"""The stage contract: what every feature after inference is (tracking, filters, snapshots,
recording, presence, the detections payload, stats) and what a third-party plugin writes.

A **stage** is a class registered under the entry-point group ``streamd.stages`` (built-ins in
streamd's own ``pyproject.toml``; a plugin in its own). It declares:

- ``name``: its config key (``[sources.<name>]`` when it has ``settings``), its metric and log name;
- ``settings``: the pydantic model of that section, or None (built-ins read the keys that have
  always been theirs on the source); ``SourceConfig`` is composed from every registered stage's
  model, so ``unknown key; did you mean ...`` and ``streamd check`` cover plugins too;
- ``order``: where it sits in the chain (filters 100, stats 200, tracking 300, snapshots 400,
  recording 450, plugins 500 by default, presence 800, the detections payload 900, the live
  view 950).

It is built once per daemon with a :class:`StageContext` (the publisher, the metrics, the whole
config, the data directory), and for each source that starts, :meth:`Stage.for_source` builds that
source's :class:`SourceHandler`, or None when it has nothing to do there (no cost). A handler
gets every inferred :class:`~streamd.types.Result` of its source in capture order and may ask for
more with plain attributes: ``wants_skipped`` (frames the motion gate kept from inference),
``packets`` (the camera's compressed packets), ``frames`` (the decoded pictures, while it wants
them: a live view), ``end_key`` (it adds to a track's ``end`` event).
It is told ``start()`` when its source runs and ``finish()`` once its last frame is through.
Every stage drains at shutdown (:meth:`Stage.drain`) and reports what keeps it from working
(:meth:`Stage.problems`, shown by ``/readyz``). Stages publish through
:class:`~streamd.publish.Publisher` only.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from streamd.config import Config, SourceConfig
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.publish import Publisher
from streamd.types import Picture, Result

if TYPE_CHECKING:
    from streamd.sources.packets import PacketSink

log = get_logger(__name__)

GROUP = "streamd.stages"


class Notices:
    """What stages tell each other in the process, on the loop, never through the broker: e.g.
    ``snapshot`` (a track's snapshot: ``track_id``, ``jpeg``, ``file``) and ``clip`` (a clip
    holding a track: ``track_id``, ``file``), which the event history keeps with its row."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[str, dict[str, Any]], None]]] = {}

    def on(self, kind: str, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """``listener(source, facts)`` for every notice of ``kind`` from now on."""
        self._listeners.setdefault(kind, []).append(listener)

    def post(self, kind: str, source: str, facts: dict[str, Any]) -> None:
        for listener in self._listeners.get(kind, ()):
            try:
                listener(source, facts)
            except Exception:  # one listener's fault is its own
                log.exception("notice_failed", kind=kind, source=source)


@dataclass(frozen=True)
class StageContext:
    """What a stage is given when the daemon builds it."""

    publisher: Publisher
    metrics: Metrics  # its registry is ``metrics.registry``: a stage's own metrics go there
    config: Config
    data_dir: Path  # where a stage may keep files (the state directory)
    notices: Notices = field(default_factory=Notices)  # what stages tell each other


class FrameTap(Protocol):
    """Sees the decoded pictures in the reader thread (a live view). ``wanted()`` is asked for
    every frame and must be cheap; ``offer()`` is called only after it said yes, with the
    picture the reader holds anyway (no copy: keep it, never write to it)."""

    def wanted(self) -> bool: ...

    def offer(self, picture: Picture) -> None: ...


class SourceHandler:
    """One stage's work for one source. Override what you need; the defaults do nothing."""

    wants_skipped: bool = False  # also get the frames the motion gate kept from inference
    packets: PacketSink | None = None  # takes the camera's compressed packets (a recorder)
    frames: FrameTap | None = None  # sees the decoded pictures while it wants them (a live view)
    end_key: str | None = None  # adds what ``track_ended`` returns to a track's end event

    def on_result(self, result: Result) -> None:
        """One frame's result, in capture order. Raising costs this handler the frame only."""

    def start(self) -> None:
        """The source runs: announce what it has (Home Assistant discovery)."""

    def finish(self) -> None:
        """The source's last frame is through (it ended, a reload stopped it, detect OFF)."""

    def listen(self, listeners: Sequence[SourceHandler]) -> None:
        """A handler that ends tracks is told which later handlers have an ``end_key``."""

    def track_ended(self, track_id: int) -> asyncio.Task[dict[str, Any] | None] | None:
        """A track ended: a task whose result the end event carries under ``end_key``, or None."""
        return None


class Stage:
    """A feature after inference; see the module's docstring."""

    name: ClassVar[str] = ""
    settings: ClassVar[type[BaseModel] | None] = None
    order: ClassVar[int] = 500

    def __init__(self, context: StageContext) -> None:
        self.context = context

    @classmethod
    def wanted(cls, config: Config) -> bool:
        """Whether the daemon builds this stage at all (presence: only with discovery)."""
        return True

    def for_source(self, source: SourceConfig) -> SourceHandler | None:
        """The source's handler, or None. Touches nothing running (a reload builds before it
        swaps): side effects belong in the handler's ``start()``."""
        return None

    def settings_of(self, source: SourceConfig) -> Any:
        """The source's ``[sources.<name>]`` section (an instance of ``settings``), or None."""
        return getattr(source, self.name, None) if self.settings is not None else None

    async def drain(self, timeout: float) -> None:
        """Shutdown, before MQTT closes: what is in flight goes out (bounded by ``timeout``)."""

    def problems(self) -> list[str]:
        """What keeps the stage from working now, in words (``/readyz`` is 503 while any)."""
        return []


@functools.cache
def registered() -> tuple[type[Stage], ...]:
    """Every stage class installed (entry points of ``streamd.stages``), in chain order. One that
    cannot be loaded is logged and left out: a broken plugin does not stop the daemon, and its
    config section is then an unknown key."""
    found: dict[str, type[Stage]] = {}
    for point in entry_points(group=GROUP):
        try:
            loaded = point.load()
        except Exception as exc:
            log.error("stage_unloadable", entry_point=point.name, value=point.value, error=repr(exc))
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, Stage)) or loaded.name != point.name:
            log.error("stage_invalid", entry_point=point.name, note="not a streamd.stages.Stage named like its entry")
            continue
        found[point.name] = loaded
    return tuple(sorted(found.values(), key=lambda cls: (cls.order, cls.name)))


def build(context: StageContext, classes: Sequence[type[Stage]] | None = None) -> list[Stage]:
    """The daemon's stages, in chain order."""
    return [cls(context) for cls in (registered() if classes is None else classes) if cls.wanted(context.config)]
