"""A source's route: the handlers each stage builds for it (or not), what it asks of its reader,
and one finish however it retires."""

from __future__ import annotations

from pathlib import Path

from streamd.config import Config, ModelConfig, MqttConfig, SourceConfig
from streamd.detections.stage import DetectionsStage
from streamd.metrics import Metrics
from streamd.pipeline import Chain
from streamd.sinks.mqtt import MqttSink
from streamd.snapshots.config import SnapshotConfig
from streamd.snapshots.stage import SnapshotStage, SourceSnapshots
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.stats.stage import StatsStage
from streamd.tracking.config import TrackingConfig
from streamd.tracking.stage import SourceTracking, TrackingStage
from streamd.types import Detection, Frame, Result


class Seen(Stage, SourceHandler):
    """The last stage, its own handler for every source: which frames reached the end."""

    name = "seen"
    order = 1000

    def __init__(self) -> None:
        self.frames: list[tuple[str, int]] = []

    def for_source(self, source: SourceConfig) -> SourceHandler:
        return self

    def on_result(self, result: Result) -> None:
        self.frames.append((result.frame.source, result.frame.seq))


def chain_of(publish_empty: bool = False) -> tuple[Chain, Seen]:
    metrics = Metrics()
    mqtt = MqttConfig(instance="test", publish_empty=publish_empty)
    config = Config(
        model=ModelConfig.model_construct(path=Path("model.xml")),
        sources=[SourceConfig(name="plain", uri="/tmp/a.mp4")],
        mqtt=mqtt,
    )
    context = StageContext(MqttSink(mqtt, metrics), metrics, config, Path("/tmp"))
    seen = Seen()
    stages = [StatsStage(context), TrackingStage(context), SnapshotStage(context), DetectionsStage(context)]
    return Chain([*stages, seen]), seen


def result(source: str, seq: int, detections: list[Detection]) -> Result:
    return Result(Frame(source, seq, float(seq), float(seq), 640, 480, None), detections, "m", "CPU")


async def test_each_source_gets_the_handlers_its_config_asks_for_and_skipped_frames_only_where_needed() -> None:
    chain, _ = chain_of()
    plain = chain.route(SourceConfig(name="plain", uri="/tmp/a.mp4"))
    tracked = chain.route(
        SourceConfig(
            name="porch",
            uri="/tmp/b.mp4",
            tracking=TrackingConfig(),
            snapshots=SnapshotConfig(),
        )
    )
    assert [name for name, _ in plain.handlers] == ["StatsStage", "DetectionsStage", "Seen"]
    assert not plain.wants_skipped, "nothing in its route needs the frames motion gating skips"
    kinds = [type(handler) for _, handler in tracked.handlers]
    assert SourceTracking in kinds and SourceSnapshots in kinds
    assert tracked.wants_skipped, "its tracks age in the frames where nothing moved"
    assert chain_of(publish_empty=True)[0].route(SourceConfig(name="plain", uri="/tmp/a.mp4")).wants_skipped


async def test_a_route_finishes_once_and_a_detached_source_gets_no_more_results() -> None:
    chain, seen = chain_of()
    route = chain.route(SourceConfig(name="porch", uri="/tmp/b.mp4", tracking=TrackingConfig(min_hits=2)))
    chain.attach(route)
    tracking = next(h for _, h in route.handlers if isinstance(h, SourceTracking))
    person = Detection("person", 1, 0.9, (100.0, 100.0, 180.0, 300.0))
    for seq in range(5):
        chain(result("porch", seq, [person]))
    assert tracking.events.counts["new"] == 1
    chain.detach(route)  # its reader ended, say
    chain.detach(route)  # and a reload stopped it in the same breath
    route.finish()
    assert tracking.events.counts["end"] == 1, "every track ends once"
    chain(result("porch", 5, [person]))
    assert seen.frames[-1] == ("porch", 4), "a frame that outlived its source reaches no handler"
    again = chain.route(SourceConfig(name="porch", uri="/tmp/b.mp4", tracking=TrackingConfig(min_hits=2)))
    chain.attach(again)
    chain(result("porch", 6, [person]))
    assert seen.frames[-1] == ("porch", 6)
    fresh = next(h for _, h in again.handlers if isinstance(h, SourceTracking))
    assert fresh is not tracking and fresh.events.counts["new"] == 0, "a new tracker: no track yet"
