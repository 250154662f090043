"""The event history as a stage (the public contract): for each source with tracking, a row per
announced track, written at ``new``, when it enters a zone, crosses a line or stands still, and
at its ``end`` (told like the snapshot and the clip are: ``end_key``)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from streamd.config import Config, ConfigError, SourceConfig
from streamd.events.metrics import EventMetrics
from streamd.events.store import EventStore, SchemaTooNew, default_url
from streamd.events.writer import EventWriter
from streamd.logging import get_logger
from streamd.private import create_private, private_folder
from streamd.retention import prune
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.types import Result, TrackedObject

log = get_logger(__name__)

PRUNE_EVERY = 3600.0
OWN_SNAPSHOT = re.compile(r"\d+-[a-z0-9_-]+-\d+\.jpg")  # "{first seen, ms}-{source}-{track id}.jpg"
UNBOUNDED = 1 << 62  # bytes: the snapshots here go by age, with their rows
KEEP_ENDED = 2000  # ended rows still told of their snapshot and clip (a clip comes post_capture later)


class EventsStage(Stage):
    name = "events"
    order = 850  # after tracking (its tracks) and before the payload

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        settings = context.config.events
        self.store = EventStore(settings.db or default_url(context.data_dir))
        try:
            found = self.store.migrate()
        except SchemaTooNew as exc:
            raise ConfigError("events.db", str(exc)) from None
        except Exception as exc:  # unreachable, unwritable: the history is a config the daemon cannot keep
            raise ConfigError("events.db", f"cannot open the event database: {type(exc).__name__}") from None
        log.info("events_store", backend=self.store.engine.dialect.name, schema_found=found)
        self.retain_days = settings.retain_days
        self.snapshots = context.data_dir / "event-snapshots"  # where a snapshot no save_dir kept goes
        self._metrics = EventMetrics(context.metrics.registry)
        self.writer = EventWriter(self.store, self._metrics, settings.queue, self._sweep)
        self._pruned = 0.0
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}  # live tracks' rows, by (source, track id)
        self._ended: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()  # awaiting a clip
        context.notices.on("snapshot", self._snapshot)
        context.notices.on("clip", self._clip)

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return config.events.enabled and any(s.tracking is not None for s in config.sources)

    def for_source(self, source: SourceConfig) -> SourceHandler | None:
        return SourceRows(source.name, self) if source.tracking is not None else None

    def ended(self, key: tuple[str, int], row: dict[str, Any]) -> None:
        self._ended[key] = row
        while len(self._ended) > KEEP_ENDED:
            self._ended.popitem(last=False)

    def _row(self, source: str, track_id: int) -> dict[str, Any] | None:
        key = (source, track_id)
        return self.rows.get(key) or self._ended.get(key)

    def _snapshot(self, source: str, facts: dict[str, Any]) -> None:
        row = self._row(source, int(facts["track_id"]))
        if row is None:
            return
        if facts.get("file"):
            row["snapshot"] = facts["file"]
            self.put(_columns(row))
            return
        path = self.snapshots / f"{row['id']}.jpg"
        task = asyncio.get_running_loop().run_in_executor(None, _save, path, facts["jpeg"])
        task.add_done_callback(lambda done: self._saved(row, path, done))

    def _saved(self, row: dict[str, Any], path: Path, done: asyncio.Future[None]) -> None:
        """The row names the snapshot once it is on disk; a save that fails is said and counted."""
        error = done.exception() if not done.cancelled() else None
        if done.cancelled() or error is not None:
            log.warning("event_snapshot_unsaved", event=row["id"], error=repr(error))
            self._metrics.errors.labels("snapshot").inc()
            return
        row["snapshot"] = str(path)
        self.put(_columns(row))

    def _sweep(self, cutoff: float) -> None:
        """The snapshots kept here go with their rows (the writer's thread, after the rows)."""
        max_age = time.time() - cutoff
        _, deleted = prune(self.snapshots, OWN_SNAPSHOT, max_age, UNBOUNDED)
        if deleted:
            log.info("event_snapshots_pruned", files=len(deleted))

    def _clip(self, source: str, facts: dict[str, Any]) -> None:
        row = self._row(source, int(facts["track_id"]))
        if row is not None:
            row["clip"] = facts["file"]
            self.put(_columns(row))

    def put(self, row: dict[str, Any]) -> None:
        self.writer.put(row)
        now = time.time()
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            self.writer.prune_before(now - self.retain_days * 86400)

    async def drain(self, timeout: float) -> None:
        await asyncio.to_thread(self.writer.close, timeout)

    def problems(self) -> list[str]:
        problem = self.writer.problem()
        return [problem] if problem else []


class SourceRows(SourceHandler):
    end_key = "event"  # told when a track ends (adds nothing to the end event)

    def __init__(self, source: str, stage: EventsStage) -> None:
        self.source = source
        self._stage = stage
        self._mine: set[int] = set()  # this handler's live tracks (their rows are the stage's)

    def on_result(self, result: Result) -> None:
        rows = self._stage.rows
        for track in result.tracks:
            row = rows.get((self.source, track.id))
            if row is None:
                rows[(self.source, track.id)] = row = self._new(track)
                self._mine.add(track.id)
                self._stage.put(_columns(row))
                continue
            changed = self._update(row, track, result.frame.ts)
            if changed:
                self._stage.put(_columns(row))

    def _new(self, track: TrackedObject) -> dict[str, Any]:
        first = track.first_seen or time.time()
        return {
            "id": f"{int(first * 1000)}-{self.source}-{track.id}",
            "track_id": track.id,
            "source": self.source,
            "label": track.label,
            "start": first,
            "end": None,
            "top_score": round(max(track.score_max, track.score), 4),
            "zones": json.dumps(list(track.zones)),
            "lines": json.dumps(list(track.crossed)),
            "stationary": track.stationary,
            "snapshot": None,
            "clip": None,
            "updated": time.time(),
            "_zones": set(track.zones),
            "_lines": set(track.crossed),
            "_last": first,
        }

    @staticmethod
    def _update(row: dict[str, Any], track: TrackedObject, ts: float) -> bool:
        """Only what an operator searches by writes at once (zones, lines, standing still)."""
        if track.matched:
            row["_last"] = ts
        row["top_score"] = round(max(row["top_score"], track.score_max, track.score), 4)
        zones, lines = row["_zones"] | set(track.zones), row["_lines"] | set(track.crossed)
        changed = bool(zones != row["_zones"] or lines != row["_lines"] or track.stationary != row["stationary"])
        row["_zones"], row["_lines"], row["stationary"] = zones, lines, track.stationary
        row["zones"], row["lines"] = json.dumps(sorted(zones)), json.dumps(sorted(lines))
        row["updated"] = time.time()
        return changed

    def track_ended(self, track_id: int) -> None:
        row = self._stage.rows.pop((self.source, track_id), None)
        self._mine.discard(track_id)
        if row is not None:
            row["end"] = max(row["_last"], row["start"])
            row["updated"] = time.time()
            self._stage.put(_columns(row))
            self._stage.ended((self.source, track_id), row)  # its snapshot and clip come after

    def finish(self) -> None:
        for track_id in list(self._mine):
            self.track_ended(track_id)


def _columns(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the table has it (the handler's own bookkeeping keys start with ``_``)."""
    return {key: value for key, value in row.items() if not key.startswith("_")}


def _save(path: Path, jpeg: bytes) -> None:
    """The snapshot beside the history, private (0600 in a 0700 folder), never through a link."""
    private_folder(path.parent)
    fd = create_private(path)
    with open(fd, "wb") as file:
        file.write(jpeg)
