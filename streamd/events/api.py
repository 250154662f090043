"""``GET /api/events`` (newest first; ``source``, ``label``, ``zone``, ``after``, ``before``
(RFC 3339), ``limit`` (at most 500), ``before_id`` for the next page) and ``/api/events/{id}``,
answered from the store in a thread (never on the loop). Rows as ``schemas/event-row.schema.json``
describes them."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web

from streamd.events.store import EventStore, Query
from streamd.timestamps import rfc3339

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

    return [web.get("/api/events", listing), web.get("/api/events/{id}", one)]
