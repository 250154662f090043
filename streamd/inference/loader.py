"""Build a running engine from ``[model]``: read, place and compile off the loop, then say so."""

from __future__ import annotations

import asyncio

import openvino as ov

from streamd.config import ModelConfig
from streamd.inference.adapter import AdapterFactory, OpenVinoAdapter
from streamd.inference.engine import Engine, ResultCallback
from streamd.inference.model import prepare
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.runtime.failures import Failures

log = get_logger(__name__)


async def build_engine(
    cfg: ModelConfig,
    core: ov.Core,
    metrics: Metrics,
    on_result: ResultCallback,
    failures: Failures | None = None,
    adapter: AdapterFactory = OpenVinoAdapter,
) -> Engine:
    """Read, place and compile (in worker threads): the loop keeps serving meanwhile."""
    prepared = await asyncio.to_thread(prepare, cfg, core)
    engine = Engine(prepared, metrics, on_result, failures, adapter)
    variant = await engine.start()
    placed = variant.placement
    if placed.fallback:
        log.warning("device_fallback", requested=placed.requested, absent=placed.dropped, device=placed.device)
    log.info(
        "model_ready",
        model=prepared.name,
        device=placed.device,
        input=prepared.image.name,
        shape=prepared.image.shape,
        preprocess=prepared.preprocess_mode,
        precision=variant.precision,
        placement=placed.summary() if placed.heterogeneous else None,
        compile_seconds=round(variant.seconds, 3),
        requests=variant.requests,
    )
    metrics.model_info.clear()
    shape = "x".join(map(str, prepared.image.shape))
    metrics.model_info.labels(prepared.name, placed.device, shape, variant.precision_label).set(1)
    return engine
