"""The event history's retention: rows older than ``retain_days`` go, and the snapshots the
history kept itself (those no ``save_dir`` kept) go with them; other files are left alone."""

from __future__ import annotations

import os
import time
from pathlib import Path

from streamd.config import Config, ModelConfig, MqttConfig, SourceConfig
from streamd.events.config import EventsConfig
from streamd.events.stage import EventsStage
from streamd.metrics import Metrics
from streamd.sinks.mqtt import MqttSink
from streamd.stages import StageContext
from streamd.tracking.config import TrackingConfig


def test_pruning_removes_the_historys_own_old_snapshots_and_nothing_else(tmp_path: Path) -> None:
    metrics = Metrics()
    mqtt = MqttConfig(instance="test")
    config = Config(
        model=ModelConfig.model_construct(path=Path("model.xml")),
        sources=[SourceConfig(name="porch", uri="/tmp/a.mp4", tracking=TrackingConfig())],
        mqtt=mqtt,
        events=EventsConfig(db=f"sqlite:///{tmp_path / 'events.db'}", retain_days=1),
    )
    stage = EventsStage(StageContext(MqttSink(mqtt, metrics), metrics, config, tmp_path))
    folder = tmp_path / "event-snapshots"
    folder.mkdir()
    old, recent, foreign = folder / "1000-porch-1.jpg", folder / "2000-porch-2.jpg", folder / "notes.jpg"
    for path in (old, recent, foreign):
        path.write_bytes(b"jpeg")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(foreign, (two_days_ago, two_days_ago))
    try:
        stage.writer.prune_before(time.time() - 86400)
        deadline = time.monotonic() + 10
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not old.exists(), "the history's own snapshot older than retain_days went"
        assert recent.exists() and foreign.exists()
    finally:
        stage.writer.close(5)
        stage.store.close()
