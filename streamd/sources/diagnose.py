"""Why a camera does not open, in one word, asked the way its protocol asks.

OpenCV only says "not opened" (and FFmpeg's own messages carry the URL with its password), so a
wrong password looked exactly like a dead camera. After a failed open the reader asks the server
itself: an RTSP ``DESCRIBE`` (with the URL's credentials, Basic or Digest as the camera wants) or
an HTTP ``GET``; a refused connection, a timeout and a missing device speak for themselves.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import urllib.error
import urllib.request
from http.client import HTTPMessage
from typing import IO
from urllib.parse import urlsplit

from streamd.redact import CameraUrl, CameraUrlError, parse_camera_url

# The reasons (metrics.STREAM_ERROR_KINDS, streamd_source_errors_total{kind}) as check prints them.
LABELS = {
    "auth": "AUTH FAILED",
    "refused": "REFUSED",
    "timeout": "TIMEOUT",
    "not_found": "NOT FOUND",
    "no_video": "NO VIDEO",
    "unreachable": "UNREACHABLE",
}


def describe_failure(reason: str, status: int | None) -> str:
    """``AUTH FAILED (401)`` for check's table."""
    return LABELS.get(reason, reason.upper()) + (f" ({status})" if status else "")


def diagnose(uri: str, timeout: float = 5.0) -> tuple[str, int | None]:
    """(reason, protocol status or None) for a source that did not open. Never raises: a reader
    that asks why must go on retrying whatever the answer (a URL it cannot parse is
    ``unreachable``; the config refuses those before a reader starts)."""
    if uri.startswith("/dev/video"):
        return ("not_found", None) if not os.path.exists(uri) else ("no_video", None)
    try:
        url = parse_camera_url(uri)
    except CameraUrlError:
        return "unreachable", None
    try:
        if url.scheme == "rtsp":
            return _rtsp(url, timeout)
        if url.scheme in ("http", "https"):
            return _http(url, timeout)
        return _connect_only(url.host, url.default_port(322), timeout)  # rtsps: is anything there
    except Exception:
        return "unreachable", None


def _status_reason(status: int) -> str:
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if 200 <= status < 300:
        return "no_video"  # the server answers and has the stream: OpenCV could not read it
    return "refused"


def _connect(host: str, port: int, timeout: float) -> tuple[socket.socket | None, str | None]:
    try:
        return socket.create_connection((host, port), timeout), None
    except ConnectionRefusedError:
        return None, "refused"
    except TimeoutError:
        return None, "timeout"
    except OSError:  # no route, name does not resolve
        return None, "unreachable"


def _connect_only(host: str, port: int, timeout: float) -> tuple[str, int | None]:
    sock, failure = _connect(host, port, timeout)
    if sock is not None:
        sock.close()
        return "no_video", None
    return failure or "unreachable", None


def _rtsp(url: CameraUrl, timeout: float) -> tuple[str, int | None]:
    target, port = url.without_credentials, url.default_port(554)
    status, challenge = _describe(url.host, port, target, None, timeout)
    if isinstance(status, str):
        return status, None
    if status == 401 and url.username and challenge:
        authorization = _authorization(challenge, url.username, url.password, target)
        status, _ = _describe(url.host, port, target, authorization, timeout)
        if isinstance(status, str):
            return status, None
    return _status_reason(status), status


def _describe(
    host: str, port: int, target: str, authorization: str | None, timeout: float
) -> tuple[int | str, str | None]:
    """(RTSP status, WWW-Authenticate) or (failure reason, None)."""
    sock, failure = _connect(host, port, timeout)
    if sock is None:
        return failure or "unreachable", None
    request = f"DESCRIBE {target} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\nUser-Agent: streamd\r\n"
    if authorization:
        request += f"Authorization: {authorization}\r\n"
    try:
        with sock:
            sock.settimeout(timeout)
            sock.sendall((request + "\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return "timeout", None
    except OSError:
        return "unreachable", None
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"RTSP/\d\.\d (\d{3})", lines[0]) if lines else None
    if not match:
        return "refused", None  # something answers, not an RTSP server
    challenge = next(
        (line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("www-authenticate:")), None
    )
    return int(match.group(1)), challenge


def _authorization(challenge: str, user: str, password: str, target: str) -> str:
    if challenge.lower().startswith("digest"):
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"DESCRIBE:{target}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        return f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{target}", response="{response}"'
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class _SameOriginCredentials(urllib.request.HTTPRedirectHandler):
    """Follow a redirect, but carry the camera's credentials only to the same origin: a camera
    that answers 302 to another host must not receive our Authorization header there."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for name in list(new.headers):
                if name.lower() in ("authorization", "cookie"):
                    del new.headers[name]
        return new


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(parts.scheme)


def _http(url: CameraUrl, timeout: float) -> tuple[str, int | None]:
    request = urllib.request.Request(url.without_credentials, headers={"User-Agent": "streamd"})
    if url.username:
        token = f"{url.username}:{url.password}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    opener = urllib.request.build_opener(_SameOriginCredentials)
    try:
        with opener.open(request, timeout=timeout) as response:
            return _status_reason(response.status), response.status
    except urllib.error.HTTPError as exc:
        return _status_reason(exc.code), exc.code
    except TimeoutError:
        return "timeout", None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return "refused", None
        if isinstance(exc.reason, TimeoutError | socket.timeout):
            return "timeout", None
        return "unreachable", None
    except OSError:
        return "unreachable", None
