"""Sharding sources between instances by rendezvous hashing, with real processes and a real broker."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import pytest

from streamd.config import ConfigError
from streamd.shard import Shard, owner
from tests.clips import mixed_clip
from tests.conftest import Collected, Streamd, write_config

NAMES = [f"door-{i}" for i in range(1, 10)]


def test_parse_and_auto_ordinal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Shard.parse("1/3") == Shard(1, 3)
    monkeypatch.setenv("HOSTNAME", "streamd-2")
    assert Shard.parse("auto/3") == Shard(2, 3)
    for bad in ("3/3", "x/2", "1", "auto/2"):
        if bad == "auto/2":
            monkeypatch.setenv("HOSTNAME", "laptop")
        with pytest.raises(ConfigError):
            Shard.parse(bad)


def test_adding_an_instance_moves_only_what_it_wins() -> None:
    names = [f"camera-{i}" for i in range(3000)]
    before = {n: owner(n, 3) for n in names}
    after = {n: owner(n, 4) for n in names}
    moved = [n for n in names if before[n] != after[n]]
    assert all(after[n] == 3 for n in moved), "sources only move to the new instance"
    assert 0.2 < len(moved) / len(names) < 0.3  # ~1/4 of them
    counts = [list(before.values()).count(i) for i in range(3)]
    assert max(counts) / min(counts) < 1.15, f"balanced: {counts}"


async def run_instances(tmp_path: Path, config: Path, count: int, subscriber: Collected) -> dict[str, int]:
    daemons = [await Streamd("run", "-c", str(config), "--shard", f"{i}/{count}").start() for i in range(count)]
    # An instance that owns no file keeps running (a reload may give it one): stop it once the
    # others are done.
    waits = [asyncio.create_task(d.wait(120)) for d in daemons]
    _, idle = await asyncio.wait(waits, timeout=90, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.wait(idle, timeout=15)
    for daemon, wait in zip(daemons, waits, strict=True):
        if not wait.done():
            daemon.signal(signal.SIGTERM)
    codes = await asyncio.gather(*waits)
    assert codes == [0] * count, [d.stderr.decode()[-1500:] for d in daemons]

    def owners(c: Collected) -> dict[str, set[int]]:
        seen: dict[str, set[int]] = {}
        for topic, _ in c.messages:
            match = re.fullmatch(r"streamd/test-(\d+)/(door-\d+)/detections", topic)
            if match and int(match.group(1)) < count:
                seen.setdefault(match.group(2), set()).add(int(match.group(1)))
        return seen

    # Every source's messages, then every instance's offline: all that was published is here.
    await subscriber.wait_for(lambda c: len(owners(c)) == len(NAMES), 30)
    await subscriber.wait_for(
        lambda c: all(c.on(f"streamd/test-{i}/status")[-1:] == [b"offline"] for i in range(count)), 30
    )
    seen = owners(subscriber)
    subscriber.messages.clear()
    assert all(len(owners) == 1 for owners in seen.values()), f"a source ran twice: {seen}"
    return {name: owners.pop() for name, owners in seen.items()}


async def test_three_then_four_real_instances_split_nine_sources(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip, _ = mixed_clip(tmp_path, script=["astronaut"] * 3)
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": n, "uri": clip, "realtime": False} for n in NAMES],
        broker.port,
    )
    three = await run_instances(tmp_path, config, 3, subscriber)
    assert sorted(three) == NAMES, "every source processed by exactly one of three instances"
    four = await run_instances(tmp_path, config, 4, subscriber)
    assert sorted(four) == NAMES
    moved = sorted(n for n in NAMES if three[n] != four[n])
    assert all(four[n] == 3 for n in moved) and len(moved) <= 4, f"moved {moved}"
    print(f"shards: 3 instances {three}; 4 instances moved {len(moved)}/9: {moved}")
