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
from urllib.parse import SplitResult, unquote, urlsplit

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
    """(reason, protocol status or None) for a source that did not open."""
    if uri.startswith("/dev/video"):
        return ("not_found", None) if not os.path.exists(uri) else ("no_video", None)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "rtsp":
        return _rtsp(uri, timeout)
    if scheme in ("http", "https"):
        return _http(uri, timeout)
    return _connect_only(parts.hostname or "", parts.port or 322, timeout)  # rtsps: is anything there


def _without_credentials(parts: SplitResult) -> str:
    """The URL to ask for: credentials go in an Authorization header, not in the request line."""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # IPv6
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()


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


def _rtsp(uri: str, timeout: float) -> tuple[str, int | None]:
    parts = urlsplit(uri)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    target = _without_credentials(parts)
    status, challenge = _describe(parts.hostname or "", parts.port or 554, target, None, timeout)
    if isinstance(status, str):
        return status, None
    if status == 401 and user and challenge:
        status, _ = _describe(
            parts.hostname or "", parts.port or 554, target, _authorization(challenge, user, password, target), timeout
        )
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


def _http(uri: str, timeout: float) -> tuple[str, int | None]:
    parts = urlsplit(uri)
    request = urllib.request.Request(_without_credentials(parts), headers={"User-Agent": "streamd"})
    if parts.username:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
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
