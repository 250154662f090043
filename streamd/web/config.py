"""``[http]``: the one HTTP server's address and who may use it (``[metrics] listen`` is its
deprecated name). A listen address other hosts reach serves camera footage, so it needs a user
unless the operator says anonymous access is meant."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, ValidationInfo, field_validator, model_validator

from streamd.config_objects import Strict


def _host_port(value: str) -> str:
    if value and not value.startswith("unix:"):
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9108")
    return value


def well_formed(listen: str) -> bool:
    try:
        _host_port(listen)
    except ValueError:
        return False
    return True


def is_loopback(listen: str) -> bool:
    """A listen address only this host reaches (a Unix socket counts)."""
    if listen.startswith("unix:"):
        return True
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class MetricsConfig(Strict):
    # Deprecated (0.8.0): http.listen. Still read when http.listen is not set (one log line says so).
    listen: str | None = None

    _listen = field_validator("listen")(classmethod(lambda cls, v: v if v is None else _host_port(v)))


class HttpConfig(Strict):
    """The one HTTP server: /metrics and the probes, and (behind ``username``) the live view, the
    API, the page and the clips."""

    # (Declared before listen, whose check reads them.)
    username: str = ""  # set: every path but /metrics, /healthz and /readyz needs Basic auth
    password_file: str = ""  # the password, alone in a file (systemd: LoadCredential=)
    # A listen address others reach serves camera footage: refused without a username unless this.
    allow_anonymous: bool = False
    listen: str = "127.0.0.1:9108"  # "" disables the HTTP server
    max_viewers: int = Field(default=4, ge=1, le=256)  # live.mjpeg streams per source at once
    # What a notification can open: the base URL this server is reached at from outside (a reverse
    # proxy, the host's name), put before the paths in messages (a clip's ``url``). "" = paths only.
    public_url: str = ""

    @field_validator("listen")
    @classmethod
    def _private_footage(cls, value: str, info: ValidationInfo) -> str:
        _host_port(value)
        anonymous = not info.data.get("username") and not info.data.get("allow_anonymous")
        if value and not is_loopback(value) and anonymous:
            raise ValueError(
                f"{value!r} is reachable from other hosts and serves camera footage: set http.username "
                "and http.password_file, or http.allow_anonymous = true (metrics.listen, deprecated, sets it too)"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http:// or https:// URL, e.g. https://nvr.example.org/streamd")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _password_with_username(self) -> HttpConfig:
        if self.username and not self.password_file:
            raise ValueError("username needs password_file (the password, alone in a file)")
        return self
