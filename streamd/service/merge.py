"""One /metrics for the whole service: each worker's exposition, parsed by prometheus_client's own
parser, every sample labelled ``worker="<index>"``, families merged by name, plus the parent's
registry; rendered by prometheus_client again.

Chosen over prometheus_client's multiprocess mode, which keeps no Info metrics, needs a
directory of mmap files shared by every process and a policy per gauge, and keeps a dead
worker's files until someone removes them: here a worker that is away (ended, restarting) shows
its last exposition (the one it wrote as it exited, else the last scraped) until it is back and
replaces it, its counters then restarting from 0 (``rate()`` treats that as a counter reset).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from streamd.timestamps import rfc3339


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge_expositions(own: CollectorRegistry, workers: Iterable[tuple[int, bytes]]) -> bytes:
    """``own``: the parent's registry; ``workers``: (index, text exposition) of each that answered."""
    families: dict[str, Metric] = {}
    order: list[str] = []
    for index, text in workers:
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
                order.append(family.name)
            label = str(index)
            merged.samples.extend(s._replace(labels={**s.labels, "worker": label}) for s in family.samples)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([families[name] for name in order]))
    return generate_latest(own) + generate_latest(registry)


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-source maps joined; queue and buffer summed; inference percentiles the worst worker's."""

    def joined(key: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in parts:
            out.update(part.get(key) or {})
        return out

    def worst(key: str) -> float | None:
        values = [p[key] for p in parts if p.get(key) is not None]
        return max(values) if values else None

    merged: dict[str, Any] = {"ts": rfc3339(time.time())}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                merged[key] = joined(key)
            elif key in ("queue_depth", "mqtt_buffered"):
                merged[key] = sum(int(p.get(key) or 0) for p in parts)
            elif key.startswith("inference_ms"):
                merged[key] = worst(key)
            elif key != "ts":
                merged.setdefault(key, value)
    merged["workers"] = len(parts)
    return merged
