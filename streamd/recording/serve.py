"""``GET /clips/{source}/{file}`` on the HTTP server, with ``Range`` (a browser or Home
Assistant seeks in a clip), streamed in chunks. Only a clip streamd named (``OWN_CLIP``), in the
folder of a source that records, as a regular file (checked again when it is opened, never
through a link): ``..``, encoded slashes, symlinks and anything else get 404."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from streamd.config import Config
from streamd.recording.clip import OWN_CLIP
from streamd.web.files import FileSlice, Reply, ranged, send_file

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
            status, body, headers = await asyncio.to_thread(ranged, folder / name, request.headers.get("Range"))
        if isinstance(body, FileSlice):
            return await send_file(request, status, "video/mp4", body, headers)
        return web.Response(status=status, body=body, headers=headers, content_type="text/plain")

    return web.get("/clips/{source}/{file}", handle)
