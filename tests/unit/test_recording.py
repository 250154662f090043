"""The pre-capture ring and retention, on their own."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

from streamd.recording.clip import OWN_CLIP
from streamd.recording.ring import PacketRing
from streamd.retention import prune
from streamd.sources.packets import StoredPacket

DAY = 86400.0


def packet(wall: float, keyframe: bool = False, size: int = 100) -> StoredPacket:
    tick = int(wall * 90000)
    return StoredPacket(b"x" * size, tick, tick, keyframe, Fraction(1, 90000), wall)


def test_the_ring_keeps_whole_groups_back_to_a_keyframe_before_pre_capture() -> None:
    ring = PacketRing(seconds=2.0, max_bytes=1 << 20)
    ring.add(packet(0.0))  # before the first keyframe: undecodable, not kept
    for frame in range(1, 151):  # 10 s at 15 fps, a keyframe every second
        ring.add(packet(frame / 15, keyframe=frame % 15 == 1))
    kept = list(ring.since(0.0))
    assert kept[0].keyframe and kept[0].wall <= 10.0 - 2.0 < kept[0].wall + 1.0, kept[0].wall
    since = list(ring.since(9.0))
    assert since[0].keyframe and since[0].wall <= 9.0 and since[-1].wall == 10.0
    assert ring.bytes == sum(len(p.data) for p in kept)


def test_the_ring_stays_within_its_bytes_but_keeps_the_current_group() -> None:
    ring = PacketRing(seconds=60.0, max_bytes=5_000)
    for frame in range(1, 151):
        ring.add(packet(frame / 15, keyframe=frame % 15 == 1, size=200))
    assert ring.bytes <= 5_000 + 15 * 200 and next(iter(ring.since(0.0))).keyframe


def write(folder: Path, name: str, size: int, age_days: float, now: float) -> Path:
    path = folder / name
    path.write_bytes(b"v" * size)
    os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    return path


def test_retention_deletes_the_oldest_own_clips_only(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    folder = tmp_path / "porch"
    folder.mkdir()
    old = write(folder, "20261101-000000-1.mp4", 1000, 30, now)
    a = write(folder, "20261128-000000-2.mp4", 1000, 2, now)
    b = write(folder, "20261129-000000-3.mp4", 1000, 1, now)
    c = write(folder, "20261130-000000-4-1.mp4", 1000, 0, now)
    foreign = write(folder, "holiday.mp4", 5000, 60, now)
    partial = write(folder, ".20261130-000000-5.mp4.part", 1000, 60, now)
    outside = write(tmp_path, "20250101-000000-9.mp4", 1000, 400, now)
    (folder / "20250101-000000-8.mp4").symlink_to(outside)
    kept, deleted = prune(folder, OWN_CLIP, max_age=7 * DAY, max_bytes=2500, now=now)
    assert deleted == [old.name, a.name], "past retain_days, then the oldest while over max_bytes"
    assert kept == 2000 and b.exists() and c.exists()
    assert foreign.exists() and partial.exists() and outside.exists(), "only clips streamd named, never via a link"
