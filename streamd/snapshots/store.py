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
from streamd.private import private_folder, write_private
from streamd.retention import prune

log = get_logger(__name__)

# What save() names a snapshot: {YYYYmmdd-HHMMSS}-{track id}-{label}.jpg
OWN_FILE = re.compile(r"\d{8}-\d{6}-\d+-[A-Za-z0-9_.-]+\.jpg")
OWN_PARTIAL = re.compile(r"\d{8}-\d{6}-\d+-[A-Za-z0-9_.-]+\.part")  # a crash's leftover


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
            private_folder(folder)
            write_private(partial, data)  # 0600, never through a link planted under that name
            os.replace(partial, path)
        except OSError as exc:
            now = time.monotonic()
            if now - self._warned > 60:
                self._warned = now
                log.error("snapshot_write_failed", path=str(path), error=str(exc))
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            return None
        self.prune(source, keep=path.name)
        return path

    def prune(self, source: str, keep: str | None = None) -> int:
        """Delete what is older than ``max_age``, then the oldest until the rest fits ``max_bytes``
        (``retention.prune``: only files of this naming, in the source's own folder, never
        through a link)."""
        folder = self.directory / source
        kept = (keep,) if keep else ()
        return len(prune(folder, OWN_FILE, self.max_age, self.max_bytes, keep=kept, partials=OWN_PARTIAL)[1])
