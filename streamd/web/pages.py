"""The page at ``/``: static files in the package (no build step, nothing from a CDN). It reads
the JSON API and the live view; the zone editor writes TOML for the operator to paste."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def page_routes() -> list[web.AbstractRouteDef]:
    return [web.get("/", index), web.static("/static", STATIC, follow_symlinks=False)]
