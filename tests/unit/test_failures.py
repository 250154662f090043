"""A stage that fails on every frame: counted, not ready after a run, forgotten when the source goes."""

from __future__ import annotations

from streamd.config import SourceConfig
from streamd.metrics import Metrics
from streamd.pipeline import Chain
from streamd.runtime.failures import FAILING_AFTER, Failures
from streamd.stages import SourceHandler, Stage
from streamd.types import Frame, Result


class Broken(Stage, SourceHandler):
    name = "broken"

    def __init__(self) -> None:
        return None

    def for_source(self, source: SourceConfig) -> SourceHandler:
        return self

    def on_result(self, result: Result) -> None:
        raise ValueError("bad payload")


def test_a_run_of_failures_is_a_reason_until_the_source_finishes() -> None:
    metrics = Metrics()
    failures = Failures(metrics)
    chain = Chain([Broken()], failures)
    route = chain.route(SourceConfig(name="cam", uri="/tmp/clip.mp4"))
    chain.attach(route)
    for seq in range(FAILING_AFTER):
        chain(Result(Frame("cam", seq, 0.0, 0.0, 640, 480, None), [], "m", "CPU"))
    assert failures.reasons() == [
        f"source cam: Broken failed {FAILING_AFTER} frames in a row (ValueError('bad payload'))"
    ]
    assert metrics.processing_errors.labels("cam", "Broken")._value.get() == FAILING_AFTER
    chain.detach(route)  # removed by a reload, or its file ended: no longer failing
    assert failures.reasons() == [] and not failures.active
