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

import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from streamd.service.child import State, WorkerProcess
from streamd.service.plan import format_cores
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


def merge_readiness(
    workers: Sequence[WorkerProcess], answers: Sequence[tuple[int, bytes]], extra: list[str], status_connected: bool
) -> tuple[bool, dict[str, object]]:
    """The service's /readyz from its workers' (``answers``, in ``workers`` order), then the
    parent's own ``extra`` reasons: ready when every worker is and a source streams somewhere."""
    reasons: list[str] = []
    sources: dict[str, object] = {}
    source_errors: dict[str, object] = {}
    states: dict[str, object] = {}
    connected: list[bool] = []
    buffered = 0
    devices: list[str] = []
    for worker, (status, raw) in zip(workers, answers, strict=True):
        names = ", ".join(worker.assignment.sources) or "no sources"
        info: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            info = json.loads(raw) if raw else {}
        sources.update(info.get("sources") or {})
        # What a single daemon's /readyz says, for every worker (#37: AUTH FAILED was lost).
        source_errors.update(info.get("source_errors") or {})
        if "mqtt_connected" in info:
            connected.append(bool(info["mqtt_connected"]))
        buffered += int(info.get("mqtt_buffered") or 0)
        if info.get("device") and info["device"] not in devices:
            devices.append(str(info["device"]))
        states[str(worker.index)] = {
            "state": worker.state.value,
            "pid": worker.pid,
            "cores": format_cores(worker.assignment.cores),
            "sources": worker.assignment.sources,
            "restarts": worker.restarts,
        }
        if worker.state is State.DONE:
            continue
        if worker.state is not State.READY:
            why = f" after {worker.last_exit}" if worker.last_exit else ""
            reasons.append(f"worker {worker.index} ({names}) {worker.state.value}{why}")
            continue
        if status == 0:
            reasons.append(f"worker {worker.index} ({names}) does not answer")
        for reason in info.get("reasons") or []:
            if reason != "no source streaming":
                reasons.append(f"worker {worker.index}: {reason}")
    if not any(state == "streaming" for state in sources.values()):
        reasons.append("no source streaming")
    reasons += extra
    body: dict[str, object] = {
        "ready": not reasons,
        "reasons": reasons,
        "mqtt_connected": status_connected and all(connected),
        "mqtt_buffered": buffered,
        "sources": sources,
        "source_errors": source_errors,
        "device": ", ".join(devices) or None,
        "workers": states,
    }
    return not reasons, body
