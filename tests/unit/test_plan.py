"""The worker plan: how many workers, which cores, which sources (pure functions)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from streamd.service.merge import merge_expositions, merge_stats
from streamd.service.plan import Assignment, assign, format_cores, make_plan, moved, split_cores, worker_count


@pytest.mark.parametrize(
    ("setting", "cores", "sources", "expected"),
    [
        ("auto", 2, 4, 1),  # this machine: one process
        ("auto", 4, 4, 1),
        ("auto", 8, 16, 2),
        ("auto", 16, 16, 4),
        ("auto", 64, 3, 3),  # never more workers than sources
        (2, 2, 4, 2),
        (8, 2, 4, 2),  # nor than cores
        (3, 16, 1, 1),
    ],
)
def test_worker_count(setting: str | int, cores: int, sources: int, expected: int) -> None:
    assert worker_count(setting, cores, sources) == expected  # type: ignore[arg-type]


def test_cores_are_split_disjoint_contiguous_and_even() -> None:
    runs = split_cores(list(range(16)), 4)
    assert runs == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    uneven = split_cores([0, 2, 3, 5, 6, 7, 9], 3)
    assert [len(r) for r in uneven] == [3, 2, 2]
    assert sorted(itertools.chain(*uneven)) == [0, 2, 3, 5, 6, 7, 9]
    assert format_cores([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"


@pytest.mark.parametrize(("sources", "count"), [(4, 2), (5, 3), (7, 3), (16, 4), (17, 5), (1, 1), (3, 3)])
def test_split_is_balanced(sources: int, count: int) -> None:
    names = [f"cam-{i}" for i in range(sources)]
    placed = assign(names, count)
    loads = [list(placed.values()).count(w) for w in range(count)]
    assert max(loads) - min(loads) <= 1
    assert assign(names, count) == placed  # the same config gives the same split


def test_reload_moves_as_few_sources_as_possible() -> None:
    names = [f"cam-{i}" for i in range(12)]
    before = assign(names, 4)
    # A new source: nothing that was placed moves.
    after = assign([*names, "porch"], 4, before)
    assert moved(before, after) == []
    # A source removed: at most one moves to keep the balance.
    after = assign(names[1:], 4, before)
    assert len(moved(before, after)) <= 1
    # Every source of worker 0 removed: the others give it just enough to balance.
    kept = [n for n in names if before[n] != 0]
    after = assign(kept, 4, before)
    loads = [list(after.values()).count(w) for w in range(4)]
    assert max(loads) - min(loads) <= 1
    assert len(moved(before, after)) == 2  # 9 sources over 4: worker 0 takes 2 of the 9


def test_the_assignment_file_round_trips_and_knows_what_is_elsewhere(tmp_path: Path) -> None:
    plan = make_plan(["a", "b", "c"], 2, [0, 1, 2, 3], "home")
    first = plan.workers[0]
    first.write(tmp_path / "w.json")
    read = Assignment.read(tmp_path / "w.json")
    assert read == first
    others = [n for n in ["a", "b", "c"] if n not in first.sources]
    assert all(read.elsewhere(n) for n in others)
    assert not any(read.elsewhere(n) for n in first.sources)
    assert not read.elsewhere("never-configured")
    assert plan.placement == {n: w.index for w in plan.workers for n in w.sources}


def test_metrics_of_workers_merge_into_one_valid_exposition() -> None:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.parser import text_string_to_metric_families

    own = CollectorRegistry()
    Counter("streamd_worker_restarts", "restarts", ["worker"], registry=own).labels("0").inc()
    worker = (
        b"# HELP streamd_frames_inferred_total Frames\n# TYPE streamd_frames_inferred_total counter\n"
        b'streamd_frames_inferred_total{source="%s"} 5.0\n'
        b"# HELP streamd_queue_depth Frames waiting\n# TYPE streamd_queue_depth gauge\nstreamd_queue_depth 2.0\n"
    )
    text = merge_expositions(own, [(0, worker % b"a"), (1, worker % b"b")]).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    inferred = {(s.labels["source"], s.labels["worker"]) for s in families["streamd_frames_inferred"].samples}
    assert inferred == {("a", "0"), ("b", "1")}
    assert text.count("# TYPE streamd_queue_depth gauge") == 1  # one family, a sample per worker
    assert len(families["streamd_queue_depth"].samples) == 2
    assert families["streamd_worker_restarts"].samples[0].value == 1.0


def test_stats_of_workers_merge_per_source() -> None:
    merged = merge_stats(
        [
            {"fps": {"a": 10.0}, "states": {"a": "streaming"}, "queue_depth": 1, "inference_ms_p50": 9.0},
            {"fps": {"b": 12.0}, "states": {"b": "streaming"}, "queue_depth": 2, "inference_ms_p50": 11.0},
        ]
    )
    assert merged["fps"] == {"a": 10.0, "b": 12.0}
    assert merged["states"] == {"a": "streaming", "b": "streaming"}
    assert merged["queue_depth"] == 3
    assert merged["inference_ms_p50"] == 11.0
    assert merged["workers"] == 2
