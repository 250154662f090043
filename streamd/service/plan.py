"""How many worker processes, which cores each, which sources each: pure functions, no processes.

The split is balanced (no worker carries more than one source above another) and stable: a
reload keeps every source where it was unless balance needs it elsewhere, and then moves the
fewest. A first plan starts from rendezvous hashing (``shard.owner``), so the same config gives
the same split on every start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from streamd.shard import owner

CORES_PER_WORKER = 4  # "auto": one worker per 4 cores (below 8 cores: one process, no parent)


def usable_cores() -> list[int]:
    """The CPUs this process may run on (taskset, cgroup cpusets, systemd's CPUAffinity=)."""
    return sorted(os.sched_getaffinity(0))


def worker_count(setting: Literal["auto"] | int, cores: int, sources: int) -> int:
    """``auto``: cores // 4 (1 on small machines); never more workers than sources or cores."""
    wanted = max(1, cores // CORES_PER_WORKER) if setting == "auto" else setting
    return max(1, min(wanted, sources, cores))


def split_cores(cores: Sequence[int], count: int) -> list[list[int]]:
    """Disjoint, contiguous runs of the usable CPUs, as even as the count allows (neighbouring
    CPU ids usually share a cache; a worker's inference threads stay on its own run)."""
    runs: list[list[int]] = []
    start = 0
    for index in range(count):
        size = len(cores) // count + (1 if index < len(cores) % count else 0)
        runs.append(list(cores[start : start + size]))
        start += size
    return runs


def assign(sources: Sequence[str], count: int, previous: dict[str, int] | None = None) -> dict[str, int]:
    """Source name -> worker index: balanced, and moving as few sources as possible from
    ``previous`` (a source that stays keeps its worker unless that worker has too many)."""
    previous = previous or {}
    ceiling = -(-len(sources) // count) if sources else 0
    floor = len(sources) // count
    placed: dict[str, int] = {}
    load = [0] * count
    # Where a source was (or, new, where rendezvous hashing puts it), while that worker has room.
    for name in sources:
        wanted = previous.get(name)
        if wanted is None or wanted >= count:
            wanted = owner(name, count)
        if load[wanted] < ceiling:
            placed[name] = wanted
            load[wanted] += 1
    # The rest to the least loaded worker.
    for name in sources:
        if name not in placed:
            target = min(range(count), key=lambda w: (load[w], w))
            placed[name] = target
            load[target] += 1
    # Balance: no worker under the floor (so none more than one source above another).
    for target in range(count):
        while load[target] < floor:
            donor = max(range(count), key=lambda w: (load[w], -w))
            moved = next(n for n in reversed(sources) if placed[n] == donor)
            placed[moved] = target
            load[donor] -= 1
            load[target] += 1
    return {name: placed[name] for name in sources}


@dataclass(frozen=True)
class Assignment:
    """What one worker runs: the file the parent writes and the worker reads (at start and at
    every SIGHUP), so a restarted worker always comes back with its current share."""

    index: int
    count: int
    cores: list[int]
    sources: list[str]  # this worker's, in config order
    all_sources: list[str]  # every configured source (the others are another worker's)
    instance: str  # mqtt.instance of the service (with --shard, the shard's)

    def write(self, path: Path) -> None:
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(asdict(self)))
        os.replace(partial, path)

    @classmethod
    def read(cls, path: Path) -> Assignment:
        data = json.loads(path.read_text())
        return cls(
            int(data["index"]),
            int(data["count"]),
            [int(c) for c in data["cores"]],
            [str(s) for s in data["sources"]],
            [str(s) for s in data["all_sources"]],
            str(data["instance"]),
        )

    def elsewhere(self, source: str) -> bool:
        return source in self.all_sources and source not in self.sources


@dataclass(frozen=True)
class Plan:
    """Every worker's assignment."""

    workers: list[Assignment]

    @property
    def placement(self) -> dict[str, int]:
        return {name: a.index for a in self.workers for name in a.sources}

    def describe(self) -> list[dict[str, object]]:
        return [{"worker": a.index, "cores": a.cores, "sources": a.sources} for a in self.workers]


def make_plan(
    sources: Sequence[str],
    count: int,
    cores: Sequence[int],
    instance: str,
    previous: dict[str, int] | None = None,
) -> Plan:
    placed = assign(sources, count, previous)
    runs = split_cores(cores, count)
    everything = list(sources)
    return Plan(
        [
            Assignment(i, count, runs[i], [n for n in sources if placed[n] == i], everything, instance)
            for i in range(count)
        ]
    )


def moved(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return [name for name, worker in after.items() if name in before and before[name] != worker]


def format_cores(cores: Iterable[int]) -> str:
    """``0-3,8`` as taskset prints it."""
    runs: list[list[int]] = []
    for core in sorted(cores):
        if runs and core == runs[-1][-1] + 1:
            runs[-1].append(core)
        else:
            runs.append([core])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
