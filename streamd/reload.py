"""What a SIGHUP changes: a pure diff of two configs (:func:`plan_reload`), applied all or
nothing (:func:`apply_reload`): the new config is read, its model compiled and its new sources'
readers built before anything running is touched; if starting one of them still fails, the
sources this reload stopped run again with their old settings, and the running model and config
stay. The model is swapped last. Every outcome is logged as ``reload_done`` or
``reload_rejected``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from streamd.config import Config, ConfigError
from streamd.logging import get_logger

if TYPE_CHECKING:
    from streamd.inference.engine import Engine
    from streamd.inference.slot import EngineSlot
    from streamd.sources.manager import SourceSet

log = get_logger(__name__)

# Sections a running daemon cannot change in place (connections, listeners, queue sizes).
RESTART_SECTIONS = ("mqtt", "metrics", "http", "events", "queue", "log")


@dataclass(frozen=True)
class ReloadPlan:
    model_changed: bool = False
    added: list[str] = field(default_factory=list)  # sources new in the file
    removed: list[str] = field(default_factory=list)  # sources gone from the file
    restarted: list[str] = field(default_factory=list)  # sources whose settings changed
    needs_restart: list[str] = field(default_factory=list)  # sections kept at their running values

    @property
    def stopped(self) -> list[str]:
        return self.removed + self.restarted

    @property
    def started(self) -> list[str]:
        return self.added + self.restarted


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    before = {s.name: s for s in old.sources}
    after = {s.name: s for s in new.sources}
    return ReloadPlan(
        model_changed=new.model != old.model,
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        restarted=[n for n in after if n in before and after[n] != before[n]],
        needs_restart=[n for n in RESTART_SECTIONS if getattr(new, n) != getattr(old, n)],
    )


def _reject(engine: Engine | None, exc: Exception, key: str, **fields: object) -> None:
    """Nothing of the new config stays: the model it compiled is released unused."""
    if engine is not None:
        engine.close()
    log.error("reload_rejected", error=repr(exc), key=key, **fields)


class Reloadable(Protocol):
    """What a reload changes in the running daemon."""

    config: Config
    sources: SourceSet
    engines: EngineSlot


async def apply_reload(
    target: Reloadable,
    load: Callable[[], Config] | None,
    started: float,
    elsewhere: Callable[[str], bool] = lambda source: False,
) -> None:
    """``load`` reads the config anew (a worker process: its share of the sources);
    ``elsewhere(source)``: a source that left this worker for another (after ``load``)."""
    if load is None:
        log.warning("reload_ignored", reason="no config file to re-read")
        return
    try:
        new = load()
    except ConfigError as exc:
        log.error("reload_rejected", error=str(exc), key=exc.key, problems=exc.lines())
        return
    old = target.config
    plan = plan_reload(old, new)
    if plan.needs_restart:
        log.warning("reload_needs_restart", sections=plan.needs_restart, note="kept the running values")
    engine: Engine | None = None
    if plan.model_changed:
        try:
            engine = await target.engines.build(new.model)
        except Exception as exc:  # config, model, placement or anything else: keep running as is
            log.error("reload_rejected", error=str(exc), key="model")
            return
    after = {s.name: s for s in new.sources}
    before = {s.name: s for s in old.sources}
    try:
        prepared = [target.sources.prepare(after[name]) for name in plan.started]
    except Exception as exc:
        _reject(engine, exc, "sources")
        return
    moved_away = [name for name in plan.removed if elsewhere(name)]  # another worker's now
    for name in plan.stopped:
        removed = name in plan.removed
        await target.sources.stop(name, removed, moved=name in moved_away, timeout=new.daemon.shutdown_timeout)
    launched: list[str] = []
    try:
        for runtime in prepared:
            target.sources.launch(runtime)
            launched.append(runtime.name)
    except Exception as exc:
        # Back to the running state: this reload's sources go, the ones it stopped come back.
        for name in launched:
            await target.sources.stop(name, name in plan.added, timeout=new.daemon.shutdown_timeout)
        restored = [name for name in plan.stopped if name not in moved_away]
        for name in restored:
            target.sources.start(before[name])
        _reject(engine, exc, "sources", restored=restored)
        return
    if engine is not None:
        target.engines.swap(engine)
    target.config = new.model_copy(update={n: getattr(old, n) for n in plan.needs_restart})
    log.info(
        "reload_done",
        moved_away=moved_away,
        added=plan.added,
        removed=plan.removed,
        restarted=plan.restarted,
        model_changed=plan.model_changed,
        seconds=round(time.monotonic() - started, 3),
    )
