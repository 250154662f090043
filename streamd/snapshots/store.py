"""``save_dir``: snapshots on disk within a size and age budget, the oldest deleted first.
Runs in the encoding thread; a full or read-only disk is logged (once a minute) and counted,
never raised into the pipeline."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

from streamd.logging import get_logger

log = get_logger(__name__)

# What save() names a snapshot: {YYYYmmdd-HHMMSS}-{track id}-{label}.jpg
OWN_FILE = re.compile(r"\d{8}-\d{6}-\d+-[A-Za-z0-9_.-]+\.jpg")


class SnapshotStore:
    def __init__(self, directory: Path, max_bytes: int, max_age: float) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._warned = 0.0

    def save(self, source: str, name: str, data: bytes) -> Path | None:
        folder = self.directory / source
        path = folder / name
        partial = path.with_suffix(".part")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, path)
        except OSError as exc:
            now = time.monotonic()
            if now - self._warned > 60:
                self._warned = now
                log.error("snapshot_write_failed", path=str(path), error=str(exc))
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            return None
        self.prune(source)
        return path

    def prune(self, source: str) -> int:
        """Delete what is older than ``max_age``, then the oldest until the rest fits ``max_bytes``:
        only files streamd wrote (its naming, in the source's own folder), never through a link
        (``save_dir`` may be a folder, or a link to one, that holds other files of the user's)."""
        folder = self.directory / source
        files: list[tuple[float, int, Path]] = []
        if folder.is_symlink():
            return 0
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return 0
        for entry in entries:
            if not OWN_FILE.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            files.append((stat.st_mtime, stat.st_size, Path(entry.path)))
        files.sort()
        total = sum(size for _, size, _ in files)
        cutoff = time.time() - self.max_age
        removed = 0
        for mtime, size, path in files:
            if mtime >= cutoff and total <= self.max_bytes:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            removed += 1
        return removed
