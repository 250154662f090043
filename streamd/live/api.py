"""``GET /api/sources``, ``/api/sources/{name}/latest.jpg`` and ``/api/sources/{name}/live.mjpeg``:
what each source is, and its latest picture with overlays (``bbox``, ``zones``, ``masks``,
``motion``, ``timestamp``: ``0``/``1``), resized to ``h`` rows, JPEG ``quality``. Pictures are
encoded on request, off the loop, once per picture and set of options however many look."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from streamd.config import SourceConfig
from streamd.live.render import Overlays, render
from streamd.live.stage import LiveStage
from streamd.live.view import LiveSource
from streamd.types import Picture

FIRST_PICTURE_WAIT = 3.0  # seconds latest.jpg waits for a picture once it asked (none kept before)
WRITE_TIMEOUT = 30.0  # a viewer that takes no part of the stream for this long is let go
BOUNDARY = "streamd-frame"
MAX_FPS = 30.0


class BadQuery(ValueError):
    pass


def features(source: SourceConfig) -> list[str]:
    """What the source has, for the page and the API."""
    have = {
        "tracking": source.tracking is not None,
        "zones": bool(source.zones or source.lines),
        "motion": source.motion is not None,
        "snapshots": source.takes_snapshots,
        "recording": source.recording is not None,
    }
    return [name for name, on in have.items() if on]


def describe(source: SourceConfig, state: str, view: LiveSource | None) -> dict[str, Any]:
    captured, inferred = view.rates() if view is not None else (0.0, 0.0)
    return {
        "name": source.name,
        "state": state,
        "width": view.width if view is not None and view.width else None,
        "height": view.height if view is not None and view.height else None,
        "fps": round(inferred, 2),
        "captured_fps": round(captured, 2),
        "features": features(source),
    }


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "0")
    if value not in ("0", "1"):
        raise BadQuery(f"{name} must be 0 or 1")
    return value == "1"


def _number(query: Mapping[str, str], name: str, default: float | None, low: float, high: float) -> float | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a number") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be within {low:g}..{high:g}")
    return value


class View:
    """What a request asks to see: overlays, rows, quality."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self.overlays = Overlays(*(_flag(query, n) for n in ("bbox", "zones", "masks", "motion", "timestamp")))
        height = _number(query, "h", None, 16, 4320)
        self.height = int(height) if height is not None else None
        self.quality = int(_number(query, "quality", 70, 1, 100) or 70)

    async def encode(
        self, view: LiveSource, picture: Picture, after: int = -1, within: float = 0.0
    ) -> tuple[int, bytes]:
        """(seq, JPEG) of ``picture``, or of one encoded for another viewer with the same options
        that is newer than ``after`` and at most ``within`` seconds older: ten viewers at 5 fps
        cost about 5 encodes a second, not 50."""
        seen = view.seen if self.overlays.bbox or self.overlays.zones else None
        key = (self.overlays, self.height, self.quality)
        hit = view.cached(key)
        if hit is not None and (hit[0] == picture.seq or (hit[0] > after and picture.ts - hit[1] <= within)):
            return hit[0], hit[2]
        jpeg = await asyncio.to_thread(render, picture, seen, view.config, self.overlays, self.height, self.quality)
        view.remember(key, picture, jpeg)
        return picture.seq, jpeg


def live_routes(
    stage: LiveStage,
    sources: Callable[[], list[SourceConfig]],
    states: Callable[[], Mapping[str, str]],
    max_viewers: int,
) -> list[web.RouteDef]:
    def lookup(request: web.Request) -> tuple[LiveSource, View]:
        name = request.match_info["name"]
        view = stage.views.get(name)
        if view is None:
            known = any(s.name == name for s in sources())
            raise (
                web.HTTPServiceUnavailable(text="not running\n") if known else web.HTTPNotFound(text="no such source\n")
            )
        try:
            return view, View(request.query)
        except BadQuery as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None

    async def list_sources(request: web.Request) -> web.Response:
        now = states()
        return web.json_response([describe(s, now.get(s.name, "starting"), stage.views.get(s.name)) for s in sources()])

    async def latest(request: web.Request) -> web.Response:
        view, wanted = lookup(request)
        picture = await view.first_picture(FIRST_PICTURE_WAIT)
        if picture is None:
            return web.Response(status=503, text="no frame yet\n", headers={"Retry-After": "1"})
        _, jpeg = await wanted.encode(view, picture)
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def live(request: web.Request) -> web.StreamResponse:
        view, wanted = lookup(request)
        try:
            fps = _number(request.query, "fps", 5.0, 0.1, MAX_FPS) or 5.0
        except BadQuery as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        if view.viewers >= max_viewers:
            return web.Response(status=503, text=f"at most {max_viewers} viewers\n", headers={"Retry-After": "5"})
        return await _stream(request, stage, view, wanted, 1.0 / fps)

    return [
        web.get("/api/sources", list_sources),
        web.get("/api/sources/{name}/latest.jpg", latest),
        web.get("/api/sources/{name}/live.mjpeg", live),
    ]


async def _stream(
    request: web.Request, stage: LiveStage, view: LiveSource, wanted: View, period: float
) -> web.StreamResponse:
    """Each new picture at most every ``period`` seconds: a slow viewer gets fewer (the newest when
    it can take one), never a backlog, and never slows the source."""
    response = web.StreamResponse(
        headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-store"}
    )
    last = -1
    name = view.config.name
    view.viewers += 1
    try:
        await response.prepare(request)
        while True:
            started = time.monotonic()
            current = stage.views.get(name)
            if current is not None and current is not view:  # the source restarted (a reload)
                view.viewers -= 1
                current.viewers += 1
                view, last = current, -1
            view.ask()
            picture = view.picture
            if picture is not None and picture.seq != last:
                last, jpeg = await wanted.encode(view, picture, last, period)
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                await asyncio.wait_for(response.write(head + jpeg + b"\r\n"), WRITE_TIMEOUT)
            await asyncio.sleep(max(0.005, period - (time.monotonic() - started)))
    except (ConnectionError, TimeoutError):
        pass  # the viewer went away (or stopped reading): everything it held goes now
    finally:
        view.viewers -= 1
    return response
