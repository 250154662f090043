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

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


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
