"""The worker service's web surface beyond the probes: ``/api/sources`` gathered from every
worker, and each source's pictures and live stream passed through from the worker that runs it
(over its Unix socket), so the page works the same for one process or many."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from streamd.service.child import WorkerProcess

PASSED_HEADERS = ("Content-Type", "Content-Length", "Cache-Control", "Retry-After")


def gateway_routes(
    workers: Callable[[], Sequence[WorkerProcess]], placement: Callable[[], dict[str, int]]
) -> list[web.RouteDef]:
    async def list_sources(request: web.Request) -> web.Response:
        answers = await asyncio.gather(*(w.get("/api/sources") for w in workers()))
        found: list[Any] = []
        for status, raw in answers:
            with contextlib.suppress(ValueError):
                if status == 200:
                    found += json.loads(raw)
        order = list(placement())
        found.sort(key=lambda s: order.index(s["name"]) if s.get("name") in order else len(order))
        return web.json_response(found)

    async def per_source(request: web.Request) -> web.StreamResponse:
        index = placement().get(request.match_info["name"])
        worker = next((w for w in workers() if w.index == index), None)
        if worker is None:
            return web.Response(status=404, text="no such source\n")
        return await _pass_through(request, worker)

    return [
        web.get("/api/sources", list_sources),
        web.get("/api/sources/{name}/{what}", per_source),
    ]


async def _pass_through(request: web.Request, worker: WorkerProcess) -> web.StreamResponse:
    """The worker's answer, streamed as it comes (a live stream never ends by itself)."""
    timeout = aiohttp.ClientTimeout(total=None, connect=2.0, sock_read=60.0)
    response: web.StreamResponse | None = None
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(worker.http_path)), timeout=timeout) as http,
            http.get(f"http://worker{request.rel_url}") as upstream,
        ):
            headers = {k: upstream.headers[k] for k in PASSED_HEADERS if k in upstream.headers}
            response = web.StreamResponse(status=upstream.status, headers=headers)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            return response
    except (aiohttp.ClientConnectionError, TimeoutError, OSError):
        if response is not None:
            return response  # the viewer or the worker went away mid-stream
        return web.Response(status=503, text=f"worker {worker.index} does not answer\n", headers={"Retry-After": "2"})
