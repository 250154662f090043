"""The snapshot store's budget touches only what streamd wrote (issue: a save_dir that is a link to
a folder of the user's photos lost a 30-day-old photo at the first save)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from streamd.snapshots.store import SnapshotStore


def _aged(path: Path, days: float, data: bytes = b"x" * 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - days * 86400
    os.utime(path, (then, then))
    return path


def test_pruning_deletes_only_streamds_own_old_snapshots(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    family = _aged(photos / "holiday" / "family-photo.jpg", 30)
    in_source_folder = _aged(photos / "cam" / "my-own.jpg", 30)
    elsewhere = _aged(tmp_path / "outside" / "20250101-000000-1-person.jpg", 30)
    (photos / "cam" / "linked.jpg").symlink_to(elsewhere)
    old_own = _aged(photos / "cam" / "20250101-000000-7-person.jpg", 30)
    save_dir = tmp_path / "snapshots"
    save_dir.symlink_to(photos)  # save_dir is a link to the user's folder

    store = SnapshotStore(save_dir, max_bytes=1 << 20, max_age=86400.0)
    saved = store.save("cam", "20261130-120000-8-person.jpg", b"jpeg")

    assert saved is not None and saved.read_bytes() == b"jpeg"
    assert not old_own.exists(), "streamd's own snapshot past max_age is deleted"
    assert family.exists() and in_source_folder.exists() and elsewhere.exists()
    assert (photos / "cam" / "linked.jpg").is_symlink()


def test_the_byte_budget_counts_only_streamds_files(tmp_path: Path) -> None:
    big_user_file = _aged(tmp_path / "cam" / "video-export.jpg", 0, b"x" * 4096)
    own = [_aged(tmp_path / "cam" / f"20261130-12000{i}-{i}-person.jpg", 0.01 * (5 - i), b"y" * 400) for i in range(5)]
    store = SnapshotStore(tmp_path, max_bytes=1000, max_age=86400.0)
    store.save("cam", "20261130-120010-9-person.jpg", b"z" * 400)
    kept = sorted(p.name for p in (tmp_path / "cam").glob("2026*.jpg"))
    assert big_user_file.exists()
    assert kept == ["20261130-120004-4-person.jpg", "20261130-120010-9-person.jpg"], kept
    assert not own[0].exists()
