"""A file body sent in chunks after the headers (a clip may be larger than memory should hold),
read off the loop, never through a link, only a regular file."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CHUNK = 1 << 20  # bytes of a file body per write
CHUNK_TIMEOUT = 30.0  # seconds a client may take to accept one chunk


@dataclass(frozen=True)
class FileSlice:
    """``length`` bytes of ``path`` from ``offset``."""

    path: Path
    offset: int
    length: int


async def send_file(
    request: web.Request, status: int, content_type: str, body: FileSlice, headers: Mapping[str, str]
) -> web.StreamResponse:
    try:
        fd = await asyncio.to_thread(os.open, body.path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return web.Response(status=404, text="no such file\n")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return web.Response(status=404, text="no such file\n")
        response = web.StreamResponse(status=status, headers={**headers, "Content-Type": content_type})
        response.content_length = body.length
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        offset, left = body.offset, body.length
        while left > 0:
            chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, left), offset)
            if not chunk:
                break  # cut short (retention took it): the client sees fewer bytes than announced
            await asyncio.wait_for(response.write(chunk), CHUNK_TIMEOUT)
            offset += len(chunk)
            left -= len(chunk)
        return response
    finally:
        os.close(fd)


Reply = tuple[int, bytes | FileSlice, dict[str, str]]  # status, body, headers


def ranged(path: Path, wanted: str | None) -> Reply:
    """What to send of a regular file (never a link) for a ``Range`` header: the whole file, one
    range (206), or 416; 404 when it is not there. Called in a thread (it stats the file)."""
    try:
        info = os.lstat(path)
    except OSError:
        return (404, b"not found\n", {})
    if not stat.S_ISREG(info.st_mode):  # a link, a folder...
        return (404, b"not found\n", {})
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
