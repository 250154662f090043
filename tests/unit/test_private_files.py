"""Footage on disk (issue #32): private whatever the umask, never written through a planted link,
the clip just announced never deleted by the same sweep, a crash's temporary files removed."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from streamd.private import create_private, private_folder
from streamd.recording.clip import OWN_CLIP, OWN_PARTIAL, ClipFile, partial_name
from streamd.retention import prune
from streamd.snapshots.store import SnapshotStore
from streamd.sources.packets import StoredPacket, StreamTemplate


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """What a container or a login shell gives: 0022 (group and others may read)."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_private_folders_and_files_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    folder = private_folder(tmp_path / "a" / "b" / "c")
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", folder)] == [0o700] * 3
    os.close(create_private(folder / "f"))
    assert mode(folder / "f") == 0o600


def test_a_link_planted_under_a_temporary_name_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = tmp_path / ".x.part"
    planted.symlink_to(victim)
    os.close(create_private(planted))
    assert victim.read_text() == "precious" and not planted.is_symlink()


@pytest.fixture(scope="module")
def h264(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "src.mp4"
    pattern = "testsrc=size=160x120:rate=10"
    command = ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", pattern, "-t", "2", "-c:v", "libx264", "-g", "10"]
    subprocess.run([*command, str(path)], check=True)
    return path


def test_a_clip_is_written_private_and_never_through_a_planted_link(
    tmp_path: Path, h264: Path, loose_umask: None
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = private_folder(tmp_path / "porch")
    target = folder / "20261205-120000-7.mp4"
    partial_name(target).symlink_to(victim)  # what #32 planted: the clip's temporary name, linked out
    with av.open(str(h264)) as source:
        stream = source.streams.video[0]
        clip = ClipFile(target, StreamTemplate(stream))
        for packet in source.demux(stream):
            if packet.dts is None:
                continue
            wall = float(packet.dts * stream.time_base)
            clip.write(StoredPacket(bytes(packet), packet.pts, packet.dts, packet.is_keyframe, stream.time_base, wall))
        size = clip.finish()
    assert victim.read_text() == "precious"
    assert mode(target) == 0o600 and size == target.stat().st_size > 0
    assert not partial_name(target).exists()
    with av.open(str(target)) as back:  # a whole clip (faststart's second pass found its file)
        assert sum(1 for _ in back.decode(video=0)) == 20


def test_the_sweep_keeps_the_clip_just_announced_and_removes_a_crashs_leftovers(tmp_path: Path) -> None:
    folder = tmp_path / "porch"
    folder.mkdir()
    older = folder / "20261205-110000-1.mp4"
    older.write_bytes(b"o" * 3_000_000)
    newest = folder / "20261205-120000-2.mp4"
    newest.write_bytes(b"n" * 5_000_000)  # alone over max_bytes
    open_now = partial_name(folder / "20261205-120500-3.mp4")
    open_now.write_bytes(b"p")
    leftover = partial_name(folder / "20261205-100000-0.mp4")
    leftover.write_bytes(b"crash")
    kept, deleted = prune(folder, OWN_CLIP, 86400.0, 1 << 20, keep={newest.name, open_now.name}, partials=OWN_PARTIAL)
    assert sorted(deleted) == sorted([older.name, leftover.name])
    assert newest.exists() and open_now.exists() and kept == 5_000_000


def test_snapshots_are_private_and_a_planted_link_is_not_followed(tmp_path: Path, loose_umask: None) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    store = SnapshotStore(tmp_path / "snaps", 1 << 20, 3600.0)
    name = "20261205-120000-3-person.jpg"
    private_folder(tmp_path / "snaps" / "porch")
    (tmp_path / "snaps" / "porch" / "20261205-120000-3-person.part").symlink_to(victim)
    path = store.save("porch", name, b"\xff\xd8jpeg")
    assert path is not None and path.read_bytes() == b"\xff\xd8jpeg"
    assert victim.read_text() == "precious"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(tmp_path / "snaps") == 0o700
