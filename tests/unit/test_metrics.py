"""Per-source series start at 0 for the features a source has, and only for those."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from streamd.config import Config, ModelConfig, MqttConfig, SourceConfig
from streamd.metrics import Metrics
from streamd.sinks.mqtt import MqttSink
from streamd.snapshots.stage import SnapshotStage
from streamd.stages import StageContext
from streamd.tracking.stage import TrackingStage


def _names(metrics: Metrics, source: str) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return {
        line.split("{")[0] + "{" + line.split("{")[1].split("}")[0]
        for line in text.splitlines()
        if f'source="{source}"' in line
    }


def test_series_exist_from_the_start_for_the_features_a_source_has() -> None:
    metrics = Metrics()
    drive_config = SourceConfig(
        name="drive",
        uri="rtsp://cam/1",
        tracking={},
        snapshots={},
        motion={},
        filters={"person": {"min_score": 0.6}},
    )
    metrics.init_source(drive_config)
    metrics.init_source(SourceConfig(name="plain", uri="/clips/a.mp4"))
    # A feature's own series come with its stage's handler, when the source starts.
    mqtt = MqttConfig(instance="test")
    config = Config(model=ModelConfig.model_construct(path=Path("m.xml")), sources=[drive_config], mqtt=mqtt)
    context = StageContext(MqttSink(mqtt, metrics), metrics, config, Path("/tmp"))
    for stage in (SnapshotStage(context), TrackingStage(context)):
        handler = stage.for_source(drive_config)
        assert handler is not None and stage.for_source(SourceConfig(name="plain", uri="/clips/a.mp4")) is None
        handler.start()
    drive, plain = _names(metrics, "drive"), _names(metrics, "plain")
    assert 'streamd_frames_skipped_total{reason="no_motion",source="drive"' in drive
    assert 'streamd_tracks_stationary{source="drive"' in drive
    assert 'streamd_snapshots_total{outcome="published",source="drive"' in drive
    assert 'streamd_detections_filtered_total{label="person",reason="min_score",source="drive"' in drive
    assert 'streamd_source_errors_total{kind="auth",source="drive"' in drive  # a stream: why it fails
    assert not any("tracks_" in n or "snapshots_total" in n or "no_motion" in n for n in plain), plain
    assert 'streamd_source_errors_total{kind="corrupt",source="plain"' in plain  # a file: how it fails
    assert not any('kind="auth"' in n for n in plain)
