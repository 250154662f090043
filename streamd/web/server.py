"""The HTTP server on ``[http] listen`` (or a worker's Unix socket): aiohttp.web with streamd's
rules on top. The server knows only routes: a daemon serves its own, the worker service's
parent serves what it gathers from (or routes to) its workers.

- ``/metrics``, ``/healthz`` and ``/readyz`` are always answered, without auth (probes and
  scrapers carry no password); everything else needs the ``[http]`` user when one is set;
- requests other than those are capped at MAX_CONNECTIONS at once and MAX_PER_CLIENT per
  address (a clip or a live stream may take minutes): past it, ``503`` with ``Retry-After``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.typedefs import Middleware

from streamd.config import Config, ConfigError
from streamd.logging import get_logger
from streamd.web.auth import Credentials, require_credentials

log = get_logger(__name__)


class _ClientMistakes(logging.Filter):
    """A malformed or oversized request is the client's mistake, answered 400 by aiohttp: one
    line without a traceback (it would carry the request's bytes), not an error of ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BadHttpMessage):
            record.exc_info, record.exc_text = None, None
            record.msg, record.args = "http_bad_request: %s", (type(error).__name__,)
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("aiohttp.server").addFilter(_ClientMistakes())

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALWAYS_ANSWERED = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_CONNECTIONS = 64
MAX_PER_CLIENT = 16
SHUTDOWN_GRACE = 1.0  # seconds open streams (live views, clips) get to end at shutdown


class WebServer:
    def __init__(self, listen: str, routes: Sequence[web.AbstractRouteDef], credentials: Credentials | None) -> None:
        """``listen``: ``HOST:PORT`` or ``unix:/path``; ``credentials``: None serves everyone."""
        self.unix_path = listen.removeprefix("unix:") if listen.startswith("unix:") else None
        host, _, port = listen.rpartition(":")
        self.host, self.port = (host.strip("[]") or "0.0.0.0", int(port)) if self.unix_path is None else ("", 0)
        self._answering: dict[str, int] = {}  # requests being answered, by client address
        self._refused_logged = 0.0
        middlewares: list[Middleware] = [self._limits]
        if credentials is not None:
            middlewares.append(require_credentials(credentials, ALWAYS_ANSWERED))
        self.app = web.Application(middlewares=middlewares, handler_args={"max_field_size": 16384})
        self.app.add_routes(routes)
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE,
            # A client that goes away ends its handler at once (a live stream frees its viewer's place).
            handler_cancellation=True,
        )

    async def start(self) -> None:
        await self._runner.setup()
        site: web.BaseSite
        if self.unix_path is not None:
            site = web.UnixSite(self._runner, self.unix_path)
        else:
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:  # the port is taken, or the address is not this host's: exit 78
            await self._runner.cleanup()
            raise ConfigError("http.listen", f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        if self.unix_path is None:
            self.port = int(self._runner.addresses[0][1])
        address = f"unix:{self.unix_path}" if self.unix_path is not None else f"{self.host}:{self.port}"
        paths = sorted(
            {r.get_info().get("path") or r.get_info().get("formatter", "") for r in self.app.router.resources()}
        )
        log.info("http_listening", address=address, paths=paths)

    async def stop(self) -> None:
        await self._runner.cleanup()

    @web.middleware
    async def _limits(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ALWAYS_ANSWERED:
            return await handler(request)
        client = request.remote or "local"
        mine = self._answering.get(client, 0)
        if sum(self._answering.values()) >= MAX_CONNECTIONS or mine >= MAX_PER_CLIENT:
            self._refused()
            return web.Response(status=503, text="busy\n", headers={"Retry-After": "5"})
        self._answering[client] = mine + 1
        try:
            return await handler(request)
        finally:
            left = self._answering[client] - 1
            if left:
                self._answering[client] = left
            else:
                del self._answering[client]

    def _refused(self) -> None:
        now = time.monotonic()
        if now - self._refused_logged > 60:
            self._refused_logged = now
            log.warning("http_too_many_connections", limit=MAX_CONNECTIONS, per_client=MAX_PER_CLIENT)


def deprecated_listen(config: Config) -> None:
    """One line at start: ``metrics.listen`` still works, ``http.listen`` is its name now."""
    if config.metrics.listen is not None:
        log.warning("config_deprecated", key="metrics.listen", replaced_by="http.listen", listen=config.http.listen)
