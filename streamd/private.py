"""Files of camera footage and buffers: private (0600 in 0700 folders) whatever the umask, and
created without following links (a link planted under a name streamd is about to write must
not turn that write onto a file elsewhere)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """``mkdir -p`` with every level it creates 0700 (``Path.mkdir(parents=True)`` gives the
    parents the umask's mode). A folder that exists is left as its owner set it."""
    missing: list[Path] = []
    node = path
    while not node.exists() and not node.is_symlink() and node != node.parent:
        missing.append(node)
        node = node.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=FOLDER_MODE)
            os.chmod(folder, FOLDER_MODE)  # mkdir's mode is masked by the umask; 0700 is what we mean
    return path


def create_private(path: Path) -> int:
    """A new file at ``path``, 0600, opened for writing; returns its descriptor. Whatever stood
    under that name (a leftover temporary file, a planted link) is removed first, never
    followed; ``O_EXCL | O_NOFOLLOW`` refuses a link that appears in between."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_symlink() or path.is_file():
            path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: Path, data: bytes) -> None:
    """``data`` into a new private file at ``path`` (see :func:`create_private`)."""
    fd = create_private(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
