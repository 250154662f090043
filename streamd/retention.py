"""A folder of files streamd wrote, kept within an age and a size budget: the oldest go first,
only files of streamd's own naming, never through a link (the folder may be, or sit beside,
files of the user's). Snapshots (``save_dir``) and clips (``recording.dir``) both use it."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection
from pathlib import Path


def prune(
    folder: Path,
    own: re.Pattern[str],
    max_age: float,
    max_bytes: int,
    now: float | None = None,
    *,
    keep: Collection[str] = (),
    partials: re.Pattern[str] | None = None,
) -> tuple[int, list[str]]:
    """Delete what is older than ``max_age`` seconds, then the oldest until the rest fits
    ``max_bytes``; ``keep`` is never deleted (the file just announced: a message must not point
    at a file already gone), though it counts in the budget, so older files go first. Temporary
    files (``partials``) not in ``keep`` are what a crash left: deleted. Returns (bytes kept,
    names deleted); a folder that is a link, or unreadable, is left alone."""
    now = time.time() if now is None else now
    if folder.is_symlink():
        return 0, []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0, []
    deleted: list[str] = []
    protected = 0
    files: list[tuple[float, int, Path]] = []
    for entry in entries:
        if partials is not None and entry.name not in keep and partials.fullmatch(entry.name):
            try:
                os.unlink(entry.path)  # a link under that name is removed, never followed
            except OSError:
                continue
            deleted.append(entry.name)
            continue
        if not own.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if entry.name in keep:
            protected += stat.st_size
            continue
        files.append((stat.st_mtime, stat.st_size, Path(entry.path)))
    files.sort()
    total = sum(size for _, size, _ in files)
    for mtime, size, path in files:
        if mtime >= now - max_age and total + protected <= max_bytes:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        deleted.append(path.name)
    return total + protected, deleted
