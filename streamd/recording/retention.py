"""A source's clips within ``retain_days`` and ``max_bytes``: the oldest go first, only files
streamd named (``OWN_CLIP``), only inside the source's folder."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from streamd.logging import get_logger
from streamd.recording.clip import OWN_CLIP

log = get_logger(__name__)


def sweep(folder: Path, retain_days: float, max_bytes: int, now: float | None = None) -> tuple[int, list[str]]:
    """Returns (bytes of the clips kept, names deleted)."""
    now = time.time() if now is None else now
    clips: list[tuple[float, int, Path]] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if OWN_CLIP.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                clips.append((stat.st_mtime, stat.st_size, Path(entry.path)))
    clips.sort()
    total = sum(size for _, size, _ in clips)
    deleted: list[str] = []
    oldest_kept = now - retain_days * 86400.0
    for mtime, size, path in clips:
        if mtime >= oldest_kept and total <= max_bytes:
            break
        try:
            path.unlink()
        except OSError as exc:
            log.warning("clip_delete_failed", file=str(path), error=exc.strerror)
            continue
        total -= size
        deleted.append(path.name)
    if deleted:
        log.info("clips_deleted", folder=str(folder), files=len(deleted), kept_bytes=total)
    return total, deleted
