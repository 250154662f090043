"""Snapshots as a stage after tracking: for each source that takes them, a handler watches each
frame's matched tracks for a better candidate; when a track ends (tracking asks
:meth:`SourceSnapshots.track_ended`), the stage encodes the best one in a worker thread,
publishes it on ``{source}/snapshot/{label}`` (retained, raw JPEG) and only then lets the
``end`` event go, naming it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from streamd.config import SourceConfig
from streamd.logging import get_logger
from streamd.snapshots.config import SnapshotConfig
from streamd.snapshots.encode import encode
from streamd.snapshots.keeper import Candidate, SnapshotKeeper
from streamd.snapshots.metrics import SnapshotMetrics
from streamd.snapshots.store import SnapshotStore
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.timestamps import rfc3339
from streamd.types import Result

log = get_logger(__name__)


class SnapshotStage(Stage):
    name = "snapshots"
    order = 400

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self._notices = context.notices
        self._sink = context.publisher
        self._metrics = SnapshotMetrics(context.metrics.registry)
        self.enabled: dict[str, bool] = {}  # the snapshots switch, per source (MQTT control)
        self._pending: set[asyncio.Task[dict[str, Any] | None]] = set()
        self.seconds: list[float] = []  # encode time of each snapshot (bench and tests)

    def for_source(self, source_config: SourceConfig) -> SourceSnapshots | None:
        config = source_config.snapshots
        if config is None or not source_config.takes_snapshots:
            return None
        store = None
        if config.save_dir:
            store = SnapshotStore(Path(config.save_dir).expanduser(), config.max_bytes, config.max_age)
        return SourceSnapshots(source_config.name, config, store, self)

    def metrics_of(self, source: str) -> None:
        self._metrics.init_source(source)

    def set_enabled(self, source: str, on: bool) -> None:
        self.enabled[source] = on

    def is_enabled(self, source: str) -> bool:
        return self.enabled.get(source, True)

    def publish(
        self, source: str, candidate: Candidate, config: SnapshotConfig, store: SnapshotStore | None
    ) -> asyncio.Task[dict[str, Any] | None]:
        """A task that publishes the snapshot and returns what the end event says of it."""
        task = asyncio.get_running_loop().create_task(
            self._publish(source, candidate, config, store), name=f"snapshot-{source}"
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _publish(
        self, source: str, candidate: Candidate, config: SnapshotConfig, store: SnapshotStore | None
    ) -> dict[str, Any] | None:
        started = time.perf_counter()
        try:
            crop, full = await asyncio.to_thread(encode, candidate, config.quality, config.max_width)
        except Exception as exc:  # a frame that cannot be encoded costs its snapshot, not the end event
            log.error("snapshot_failed", source=source, track=candidate.track_id, error=repr(exc))
            self._metrics.snapshots.labels(source, "error").inc()
            return None
        seconds = time.perf_counter() - started
        self.seconds.append(seconds)
        self._metrics.seconds.observe(seconds)
        label = candidate.label.replace(" ", "_")
        topic = self._sink.topic(source, f"snapshot/{label}")
        if not self._sink.publish(topic, crop, retain=True):
            self._metrics.snapshots.labels(source, "rejected").inc()  # logged by the sink
            return None  # the end event names no snapshot that was never published
        if full is not None:
            self._sink.publish(f"{topic}/full", full, retain=True)
        saved = None
        if store is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(candidate.ts))
            path = await asyncio.to_thread(store.save, source, f"{stamp}-{candidate.track_id}-{label}.jpg", crop)
            saved = str(path) if path is not None else None
            if path is None:  # logged by the store (once a minute); the MQTT copy went out
                self._metrics.snapshots.labels(source, "save_error").inc()
        self._metrics.snapshots.labels(source, "published").inc()
        self._notices.post("snapshot", source, {"track_id": candidate.track_id, "jpeg": crop, "file": saved})
        return {
            "topic": topic,
            "frame": candidate.frame,
            "ts": rfc3339(candidate.ts),
            "box": [round(v, 1) for v in candidate.box],
            "score": round(candidate.score, 4),
            "bytes": len(crop),
            **({"file": saved} if saved else {}),
        }

    async def drain(self, timeout: float) -> None:
        """Shutdown: the snapshots (and the end events waiting for them) go out before the sink closes."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=max(timeout, 0.1))
        await asyncio.sleep(0)  # the end events run as the tasks' done callbacks


class SourceSnapshots(SourceHandler):
    """One source's best view of each track, kept until the track ends."""

    end_key = "snapshot"  # the end event names the snapshot it published

    def __init__(self, source: str, config: SnapshotConfig, store: SnapshotStore | None, stage: SnapshotStage) -> None:
        self._source = source
        self._config = config
        self._store = store
        self._stage = stage
        self._keeper = SnapshotKeeper(config)

    def on_result(self, result: Result) -> None:
        frame = result.frame
        if not self._stage.is_enabled(self._source):
            self._keeper.clear()  # switched off: no snapshot of what was seen before either
            return
        if frame.image is None:
            return
        for track in result.tracks:
            if track.matched:
                self._keeper.observe(frame.image, frame.seq, frame.ts, track.id, track.label, track.score, track.box)

    def track_ended(self, track_id: int) -> asyncio.Task[dict[str, Any] | None] | None:
        """The track ended: a task that publishes its snapshot, or None when there is none."""
        candidate = self._keeper.take(track_id)
        if candidate is None or not self._stage.is_enabled(self._source):
            return None
        return self._stage.publish(self._source, candidate, self._config, self._store)

    def start(self) -> None:
        self._stage.metrics_of(self._source)

    def finish(self) -> None:
        self._keeper.clear()
