"""``GET /clips/{source}/{file}`` on the HTTP server, with ``Range`` (a browser or Home
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

from aiohttp import web

from streamd.config import Config
from streamd.recording.clip import OWN_CLIP
from streamd.web.files import FileSlice, send_file

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
Reply = tuple[int, bytes | FileSlice, dict[str, str]]  # status, body, headers
NOT_FOUND: Reply = (404, b"no such clip\n", {})


def recording_folders(config: Config) -> dict[str, Path]:
    return {s.name: s.recording.directory / s.name for s in config.sources if s.recording is not None}


def clips_route(
    folders: Callable[[], Mapping[str, Path]],
) -> web.RouteDef:
    """``folders()``: the recording sources' folders, by source, as the config says now."""

    async def handle(request: web.Request) -> web.StreamResponse:
        source, name = request.match_info["source"], request.match_info["file"]
        folder = folders().get(source)
        if folder is None or not OWN_CLIP.fullmatch(name):
            status, body, headers = NOT_FOUND
        else:
            status, body, headers = await asyncio.to_thread(_read, folder / name, request.headers.get("Range"))
        if isinstance(body, FileSlice):
            return await send_file(request, status, "video/mp4", body, headers)
        return web.Response(status=status, body=body, headers=headers, content_type="text/plain")

    return web.get("/clips/{source}/{file}", handle)


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
        return 200, FileSlice(path, 0, size), headers
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    if start >= size or start > end:
        return 416, b"", {**headers, "Content-Range": f"bytes */{size}"}
    body = FileSlice(path, start, end - start + 1)
    return 206, body, {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
