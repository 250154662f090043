"""HTTP Basic auth for everything but the probes and /metrics: camera footage (frames, the live
view, clips) is never served to whoever asks. The password comes from a file (systemd
``LoadCredential=``) and is compared in constant time; it is never logged."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from streamd.config import ConfigError
from streamd.logging import get_logger
from streamd.web.config import HttpConfig

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHALLENGE = {"WWW-Authenticate": 'Basic realm="streamd", charset="UTF-8"'}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def match(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both compared, whatever the first gives: the time says nothing about which was wrong.
        same_user = hmac.compare_digest(user.encode(), self.username.encode())
        same_password = hmac.compare_digest(password.encode(), self.password.encode())
        return bool(sep) and same_user and same_password


def credentials(config: HttpConfig) -> Credentials | None:
    """The ``[http]`` user, or None when the server is open (loopback, or allow_anonymous)."""
    if not config.username:
        return None
    try:
        password = Path(config.password_file).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("http.password_file", f"cannot read the password file: {exc}") from None
    return Credentials(config.username, password)


def require_credentials(user: Credentials, open_paths: Collection[str]) -> Middleware:
    refused_logged = [0.0]

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths or user.match(request.headers.get("Authorization", "")):
            return await handler(request)
        if "Authorization" in request.headers and time.monotonic() - refused_logged[0] > 60:
            refused_logged[0] = time.monotonic()  # once a minute: a guesser cannot flood the log
            log.warning("http_auth_failed", client=request.remote, path=request.path)
        return web.Response(status=401, text="authentication required\n", headers=CHALLENGE)

    return check
