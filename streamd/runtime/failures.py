"""Per-frame failures (a decoder or a stage that raises) made visible, not just logged: counted per
source and stage, the traceback logged once and then at most once a minute with how many were
not, and a run of them (every frame failing) turns /readyz 503 naming the source and stage."""

from __future__ import annotations

import time
from dataclasses import dataclass

from streamd.logging import get_logger
from streamd.metrics import Metrics

log = get_logger(__name__)

FAILING_AFTER = 20  # consecutive failed frames of one source in one stage: not ready
LOG_EVERY = 60.0  # seconds between tracebacks of the same source and stage


@dataclass
class _Run:
    consecutive: int = 0
    suppressed: int = 0
    logged_at: float = float("-inf")
    last_error: str = ""


class Failures:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._runs: dict[tuple[str, str], _Run] = {}
        self.active = False  # some source and stage is in a run of failures (callers skip succeeded())

    def failed(self, source: str, stage: str, frame: int, error: BaseException) -> None:
        """Call from an ``except`` block (the traceback is the one being handled)."""
        self._metrics.processing_errors.labels(source, stage).inc()
        run = self._runs.setdefault((source, stage), _Run())
        run.consecutive += 1
        self.active = True
        run.last_error = repr(error)[:300]
        now = time.monotonic()
        if now - run.logged_at >= LOG_EVERY:
            log.exception(
                f"{stage}_failed" if stage == "decode" else "stage_failed",
                source=source,
                stage=stage,
                frame=frame,
                not_logged_since_last=run.suppressed,
                consecutive=run.consecutive,
            )
            run.logged_at, run.suppressed = now, 0
        else:
            run.suppressed += 1

    def succeeded(self, source: str, stage: str) -> None:
        run = self._runs.get((source, stage))
        if run is not None and run.consecutive:
            if run.consecutive >= FAILING_AFTER:
                log.info("stage_recovered", source=source, stage=stage, after=run.consecutive)
            run.consecutive = 0
            self.active = any(r.consecutive for r in self._runs.values())

    def reasons(self) -> list[str]:
        """/readyz: every source and stage failing frame after frame."""
        return [
            f"source {source}: {stage} failed {run.consecutive} frames in a row ({run.last_error})"
            for (source, stage), run in self._runs.items()
            if run.consecutive >= FAILING_AFTER
        ]

    def forget(self, source: str) -> None:
        for key in [k for k in self._runs if k[0] == source]:
            del self._runs[key]
        self.active = any(r.consecutive for r in self._runs.values())
