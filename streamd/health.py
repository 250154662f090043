"""/metrics, /healthz and /readyz: the routes every server answers (without auth), and what
readiness means. A daemon serves its own registry and readiness; the worker service's parent
serves what it gathers from its workers (``service/parent.py``)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamd.metrics import Metrics

if TYPE_CHECKING:
    from streamd.inference.engine import EngineStatus
    from streamd.publish import SinkStatus

Readiness = Callable[[], tuple[bool, dict[str, object]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MQTT_STALLED_AFTER = 10.0  # seconds connected with messages waiting and none acknowledged


def exposition(body: bytes) -> web.Response:
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def readiness_response(ready: bool, info: dict[str, object]) -> web.Response:
    return web.Response(
        status=200 if ready else 503, body=json.dumps(info).encode() + b"\n", content_type="application/json"
    )


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}\n', content_type="application/json")


def standard_routes(metrics: Metrics, readiness: Readiness) -> list[web.RouteDef]:
    async def metrics_route(request: web.Request) -> web.Response:
        return exposition(generate_latest(metrics.registry))

    async def readyz(request: web.Request) -> web.Response:
        return readiness_response(*readiness())

    return [web.get("/metrics", metrics_route), web.get("/healthz", healthz), web.get("/readyz", readyz)]


def readiness(
    engine: EngineStatus | None,
    sink: SinkStatus,
    states: dict[str, str],
    failed: dict[str, str],
    failing: list[str] | None = None,
) -> tuple[bool, dict[str, object]]:
    """/readyz: 200 only when the model is compiled, MQTT is connected, the buffer takes writes,
    no background task died and a source streams; otherwise every reason, in words."""
    reasons: list[str] = []
    if engine is None or not engine.compiled:
        reasons.append("model not compiled yet")
    if not sink.connected:
        reasons.append(
            f"mqtt disconnected ({sink.last_error or 'not connected yet'}); buffering {sink.buffered}/{sink.capacity}"
        )
    if sink.waiting_for > MQTT_STALLED_AFTER:
        reasons.append(
            f"mqtt connected but no message acknowledged for {sink.waiting_for:.0f} s; {sink.buffered} waiting"
        )
    if sink.disk_error is not None:
        reasons.append(
            f"mqtt buffer unwritable ({sink.disk_error}); messages wait in memory, {sink.buffered}/{sink.capacity}"
        )
    if not any(state == "streaming" for state in states.values()):
        reasons.append("no source streaming")
    reasons += [f"task {name} failed: {why}" for name, why in failed.items()]
    reasons += failing or []
    body: dict[str, object] = {
        "ready": not reasons,
        "reasons": reasons,
        "mqtt_connected": sink.connected,
        "mqtt_buffered": sink.buffered,
        "sources": dict(states),
        "device": engine.device if engine else None,
    }
    return not reasons, body
