"""/metrics, /healthz and /readyz on ``metrics.listen``: a few lines of asyncio, no framework.

The server knows only paths and handlers: a daemon serves its own registry and readiness, the
worker service's parent serves what it gathers from its workers (``service/parent.py``). A
``unix:/path`` listen address serves on a Unix socket (how a parent reaches its workers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamd.config import ConfigError
from streamd.logging import get_logger
from streamd.metrics import Metrics

if TYPE_CHECKING:
    from streamd.inference.engine import EngineStatus
    from streamd.publish import SinkStatus

log = get_logger(__name__)

Readiness = Callable[[], tuple[bool, dict[str, object]]]
Response = tuple[str, str, bytes]  # status line, content type, body
Handler = Callable[[], Awaitable[Response]]


@dataclass(frozen=True)
class FileSlice:
    """A body sent from a file in chunks, after the headers (a clip may be larger than memory
    should hold), past the request timeout: ``length`` bytes from ``offset``."""

    path: Path
    offset: int
    length: int


Reply = tuple[str, str, bytes | FileSlice, dict[str, str]]  # a Response with headers of its own
# Under a path prefix: (the rest of the path, still percent-encoded; request headers, lower-case names)
PathHandler = Callable[[str, Mapping[str, str]], Awaitable[Reply]]


def metrics_handler(metrics: Metrics) -> Handler:
    async def handle() -> Response:
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest(metrics.registry)

    return handle


def readiness_handler(readiness: Readiness) -> Handler:
    async def handle() -> Response:
        ready, info = readiness()
        return readiness_response(ready, info)

    return handle


def readiness_response(ready: bool, info: dict[str, object]) -> Response:
    status = "200 OK" if ready else "503 Service Unavailable"
    return status, "application/json", json.dumps(info).encode() + b"\n"


async def healthz() -> Response:
    return "200 OK", "application/json", b'{"status":"ok"}\n'


def standard_routes(metrics: Metrics, readiness: Readiness) -> dict[str, Handler]:
    return {"/metrics": metrics_handler(metrics), "/healthz": healthz, "/readyz": readiness_handler(readiness)}


# Connections still sending their request head: cheap (a socket and a small buffer), closed
# after HEADER_TIMEOUT, and past MAX_READING the oldest is closed for the newcomer. A probe or a
# scraper sends its head in one packet, so it is never queued behind clients that trickle theirs.
MAX_READING = 256
HEADER_TIMEOUT = 2.0
# Requests being answered: the probes and /metrics at any time (they cost microseconds);
# anything else (a clip's body may take minutes) at most this many at once, and per address.
MAX_CONNECTIONS = 64
MAX_PER_CLIENT = 16
ALWAYS_ANSWERED = ("/healthz", "/readyz", "/metrics")
MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 32768
MAX_HEADERS = 100
REQUEST_TIMEOUT = 5.0
MQTT_STALLED_AFTER = 10.0  # seconds connected with messages waiting and none acknowledged
CHUNK = 1 << 20  # bytes of a file body per write
CHUNK_TIMEOUT = 30.0  # seconds a client may take to accept one chunk


class HealthServer:
    def __init__(
        self, listen: str, routes: Mapping[str, Handler], prefixes: Mapping[str, PathHandler] | None = None
    ) -> None:
        """``prefixes``: e.g. ``{"/clips": handler}`` answers ``/clips/...``."""
        self.unix_path = listen.removeprefix("unix:") if listen.startswith("unix:") else None
        host, _, port = listen.rpartition(":")
        self.host, self.port = (host.strip("[]") or "0.0.0.0", int(port)) if self.unix_path is None else ("", 0)
        self._routes = dict(routes)
        self._prefixes = dict(prefixes or {})
        self._server: asyncio.Server | None = None
        self._reading: dict[asyncio.StreamWriter, str] = {}  # sending their head (by address), oldest first
        self._answering: dict[asyncio.StreamWriter, str] = {}  # being answered, by address
        self._refused_logged = 0.0

    async def start(self) -> None:
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
            self._server = await asyncio.start_unix_server(self._handle, self.unix_path, limit=MAX_HEADER_BYTES)
            address = f"unix:{self.unix_path}"
        else:
            try:
                self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_HEADER_BYTES)
            except OSError as exc:  # the port is taken, or the address is not this host's: exit 78
                raise ConfigError(
                    "metrics.listen", f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
                ) from None
            self.port = self._server.sockets[0].getsockname()[1]
            address = f"{self.host}:{self.port}"
        log.info("http_listening", address=address, paths=sorted(self._routes) + [f"{p}/" for p in self._prefixes])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _evict_for_newcomer(self) -> None:
        """Past MAX_READING, the connection that has been sending its head the longest goes."""
        while len(self._reading) >= MAX_READING:
            oldest = next(iter(self._reading))
            del self._reading[oldest]
            oldest.close()

    def _may_answer(self, path: str, client: str) -> bool:
        if path in ALWAYS_ANSWERED:
            return True
        mine = sum(1 for c in self._answering.values() if c == client)
        return len(self._answering) < MAX_CONNECTIONS and mine < MAX_PER_CLIENT

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        self._evict_for_newcomer()
        self._reading[writer] = client
        try:
            head = await asyncio.wait_for(self._read_head(reader, writer), HEADER_TIMEOUT)
            if writer not in self._reading:
                return  # evicted meanwhile
            del self._reading[writer]
            if head is None:
                return
            path = head.split(b" ", 2)[1].decode("latin-1").split("?", 1)[0] if head.count(b" ") >= 2 else ""
            if not self._may_answer(path, client):
                self._refused()
                await self._answer(
                    writer, "GET", "503 Service Unavailable", "text/plain", b"busy\n", {"Retry-After": "5"}
                )
                return
            self._answering[writer] = client
            body = await asyncio.wait_for(self._serve(head, writer), REQUEST_TIMEOUT)
            if body is not None:
                await self._stream(writer, body)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError, OSError):
            pass
        finally:
            self._reading.pop(writer, None)
            self._answering.pop(writer, None)
            writer.close()

    def _refused(self) -> None:
        now = time.monotonic()
        if now - self._refused_logged > 60:
            self._refused_logged = now
            log.warning("http_too_many_connections", limit=MAX_CONNECTIONS, per_client=MAX_PER_CLIENT)

    async def _read_head(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
        """The request line and headers; None when it was answered already (too large)."""
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            # Too much before the blank line: an oversized request line (414) or headers (431).
            start = await reader.read(MAX_REQUEST_LINE + 2)  # what is buffered, not waiting for more
            if b"\r\n" not in start:
                await self._answer(writer, "GET", "414 URI Too Long", "text/plain", b"request line too long\n")
            else:
                await self._answer(writer, "GET", "431 Request Header Fields Too Large", "text/plain", b"too large\n")
            return None

    async def _serve(self, request: bytes, writer: asyncio.StreamWriter) -> FileSlice | None:
        """Answers the request; a file body is returned to be streamed after the headers."""
        lines = request.split(b"\r\n")
        if len(lines[0]) > MAX_REQUEST_LINE:
            await self._answer(writer, "GET", "414 URI Too Long", "text/plain", b"request line too long\n")
            return None
        if len(lines) - 3 > MAX_HEADERS:
            await self._answer(writer, "GET", "431 Request Header Fields Too Large", "text/plain", b"too many\n")
            return None
        method, path, *_ = lines[0].decode("latin-1").split(" ")
        path = path.split("?", 1)[0]
        handler = self._routes.get(path)
        prefix, _, rest = path[1:].partition("/")
        under = self._prefixes.get(f"/{prefix}") if rest else None
        extra: dict[str, str] = {}
        body: bytes | FileSlice
        if method not in ("GET", "HEAD"):
            status, ctype, body = "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        elif handler is not None:
            status, ctype, body = await handler()
        elif under is not None:
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.decode("latin-1").partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            status, ctype, body, extra = await under(rest, headers)
        else:
            status, ctype, body = "404 Not Found", "text/plain", f"try {', '.join(sorted(self._routes))}\n".encode()
        if isinstance(body, FileSlice):
            await self._answer(writer, "HEAD", status, ctype, b"", {**extra, "Content-Length": str(body.length)})
            return body if method == "GET" else None
        await self._answer(writer, method, status, ctype, body, extra)
        return None

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter,
        method: str,
        status: str,
        ctype: str,
        body: bytes,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        fields = {"Content-Length": str(len(body)), **(extra or {})}
        lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{lines}Connection: close\r\n\r\n".encode()
        writer.write(head if method == "HEAD" else head + body)
        await writer.drain()

    @staticmethod
    async def _stream(writer: asyncio.StreamWriter, body: FileSlice) -> None:
        """The file's bytes in chunks, read off the loop; never through a link, only a regular file."""
        fd = await asyncio.to_thread(os.open, body.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            offset, left = body.offset, body.length
            while left > 0:
                chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, left), offset)
                if not chunk:
                    return  # cut short (retention took it): the client sees fewer bytes than announced
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), CHUNK_TIMEOUT)
                offset += len(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)


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
