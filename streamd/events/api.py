"""``GET /api/events`` (newest first; ``source``, ``label``, ``zone``, ``after``, ``before``
(RFC 3339), ``limit`` (at most 500), ``before_id`` for the next page) and ``/api/events/{id}``,
answered from the store in a thread (never on the loop). Rows as ``schemas/event-row.schema.json``
describes them."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from streamd.events.store import EventStore, Query
from streamd.timestamps import rfc3339
from streamd.web.files import FileSlice, ranged, send_file

MAX_LIMIT = 500


def _time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an RFC 3339 time, e.g. 2026-12-05T14:00:00Z\n") from None


def shown(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "start": rfc3339(row["start"]),
        "end": rfc3339(row["end"]) if row["end"] is not None else None,
        "updated": rfc3339(row["updated"]),
    }


def event_routes(store: EventStore) -> list[web.RouteDef]:
    async def listing(request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be a whole number\n") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise web.HTTPBadRequest(text=f"limit must be within 1..{MAX_LIMIT}\n")
        wanted = Query(
            source=query.get("source") or None,
            label=query.get("label") or None,
            zone=query.get("zone") or None,
            after=_time(query.get("after"), "after"),
            before=_time(query.get("before"), "before"),
            limit=limit,
            before_id=query.get("before_id") or None,
        )
        rows = await asyncio.to_thread(store.query, wanted)
        return web.json_response([shown(row) for row in rows])

    async def one(request: web.Request) -> web.Response:
        row = await asyncio.to_thread(store.get, request.match_info["id"])
        if row is None:
            return web.Response(status=404, text="no such event\n")
        return web.json_response(shown(row))

    async def media(request: web.Request) -> web.StreamResponse:
        """The event's snapshot (JPEG) or clip (MP4, with Range): the files the row names, while
        they are kept (their own retention may have removed them: 404)."""
        row = await asyncio.to_thread(store.get, request.match_info["id"])
        kind = request.match_info["kind"]
        column, content_type = ("snapshot", "image/jpeg") if kind == "snapshot.jpg" else ("clip", "video/mp4")
        if row is None or not row.get(column):
            return web.Response(status=404, text=f"no {column} for this event\n")
        status, body, headers = await asyncio.to_thread(ranged, Path(row[column]), request.headers.get("Range"))
        if isinstance(body, FileSlice):
            return await send_file(request, status, content_type, body, headers)
        return web.Response(status=status, body=body, headers=headers, content_type="text/plain")

    return [
        web.get("/api/events", listing),
        web.get("/api/events/{id}", one),
        web.get(r"/api/events/{id}/{kind:snapshot\.jpg|clip\.mp4}", media),
    ]
