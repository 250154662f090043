"""``GET /clips/{source}/{file}`` on the health/metrics server, with ``Range`` (a browser or Home
Assistant seeks in a clip), streamed in chunks. Only a clip streamd named (``OWN_CLIP``), in the
folder of a source that records, as a regular file (checked again when it is opened, never
through a link): ``..``, encoded slashes, symlinks and anything else get 404."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from streamd.config import Config
from streamd.health import FileSlice, PathHandler, Reply
from streamd.recording.clip import OWN_CLIP

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
NOT_FOUND: Reply = ("404 Not Found", "text/plain", b"no such clip\n", {})


def recording_folders(config: Config) -> dict[str, Path]:
    return {s.name: s.recording.directory / s.name for s in config.sources if s.recording is not None}


def clips_handler(folders: Callable[[], Mapping[str, Path]]) -> PathHandler:
    """``folders()``: the recording sources' folders, by source, as the config says now."""

    async def handle(rest: str, headers: Mapping[str, str]) -> Reply:
        source, _, name = rest.partition("/")
        folder = folders().get(source)
        if folder is None or not OWN_CLIP.fullmatch(name):
            return NOT_FOUND
        return await asyncio.to_thread(_read, folder / name, headers.get("range"))

    return handle


def _read(path: Path, wanted: str | None) -> Reply:
    """What to send of the clip: the server streams it in chunks (a clip may be large)."""
    try:
        info = os.lstat(path)
    except OSError:
        return NOT_FOUND
    if not stat.S_ISREG(info.st_mode):  # a link with a clip's name, a folder...
        return NOT_FOUND
    size = info.st_size
    headers = {"Accept-Ranges": "bytes"}
    match = RANGE.fullmatch(wanted.strip()) if wanted else None
    if match is None or match.groups() == ("", ""):  # none, or one we do not serve: the whole file
        return "200 OK", "video/mp4", FileSlice(path, 0, size), headers
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    if start >= size or start > end:
        return "416 Range Not Satisfiable", "text/plain", b"", {**headers, "Content-Range": f"bytes */{size}"}
    body = FileSlice(path, start, end - start + 1)
    return "206 Partial Content", "video/mp4", body, {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
