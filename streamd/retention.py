"""A folder of files streamd wrote, kept within an age and a size budget: the oldest go first,
only files of streamd's own naming, never through a link (the folder may be, or sit beside,
files of the user's). Snapshots (``save_dir``) and clips (``recording.dir``) both use it."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path


def prune(
    folder: Path, own: re.Pattern[str], max_age: float, max_bytes: int, now: float | None = None
) -> tuple[int, list[str]]:
    """Delete what is older than ``max_age`` seconds, then the oldest until the rest fits
    ``max_bytes``. Returns (bytes kept, names deleted); a folder that is a link, or unreadable,
    is left alone."""
    now = time.time() if now is None else now
    if folder.is_symlink():
        return 0, []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0, []
    files: list[tuple[float, int, Path]] = []
    for entry in entries:
        if not own.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        files.append((stat.st_mtime, stat.st_size, Path(entry.path)))
    files.sort()
    total = sum(size for _, size, _ in files)
    deleted: list[str] = []
    for mtime, size, path in files:
        if mtime >= now - max_age and total <= max_bytes:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        deleted.append(path.name)
    return total, deleted
