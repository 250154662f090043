"""Camera URLs parsed one way, shown without secrets, and the log's last line of defence: every
known secret masked in every line, tracebacks included (issue #32: a password with '/' crashed
diagnosis and the traceback carried it)."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import structlog

from streamd import logging as streamd_logging
from streamd.logging import add_secrets, configure, get_logger
from streamd.redact import CameraUrlError, parse_camera_url, redact_uri, uri_secrets
from streamd.sources.diagnose import diagnose

SLASHED = "rtsp://admin:s3cret/x@127.0.0.1:1/x"


def test_a_password_with_a_slash_is_user_info_not_a_port() -> None:
    url = parse_camera_url(SLASHED)
    assert (url.username, url.password, url.host, url.port, url.target) == ("admin", "s3cret/x", "127.0.0.1", 1, "/x")
    assert url.without_credentials == "rtsp://127.0.0.1:1/x"
    assert redact_uri(SLASHED) == "rtsp://***@127.0.0.1:1/x"
    assert uri_secrets(SLASHED) == {"s3cret/x"}


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("rtsp://admin:pw@127.0.0.1:99999/x", "port"),
        ("http://[::1/x", "IPv6"),
        ("rtsp://a:b@fe80::1/x", "brackets"),
        ("rtsp:///x", "no host"),
    ],
)
def test_unusable_urls_are_refused_without_their_secret(uri: str, says: str) -> None:
    with pytest.raises(CameraUrlError) as caught:
        parse_camera_url(uri)
    assert says in str(caught.value) and "pw" not in str(caught.value)
    assert diagnose(uri, 0.5) == ("unreachable", None)  # never raises into a reader


@pytest.mark.parametrize(
    "key",
    # Keys no list names: a credential is recognised by its shape, not by an enumeration.
    ["loginpas", "PassWord", "usr_pwd", "x-amz-signature", "authkey", "sessionid", "camToken", "pass_word2"],
)
def test_query_values_under_credential_looking_keys_are_secret(key: str) -> None:
    uri = f"http://cam.local/snapshot.cgi?loginuse=admin&{key}=hunter%232&chn=1"
    assert redact_uri(uri) == f"http://cam.local/snapshot.cgi?loginuse=admin&{key}=***&chn=1"
    assert uri_secrets(uri) == {"hunter%232", "hunter#2"}


def test_a_query_secret_holding_an_ampersand_is_hidden_whole() -> None:
    assert redact_uri("rtsp://h/x?pwd=a&b&user=x") == "rtsp://h/x?pwd=***&user=x"


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    hooks = sys.excepthook, threading.excepthook, logging.getLogger().handlers[:]
    known = list(streamd_logging._secrets)
    configure("json", "info")
    yield out
    streamd_logging._secrets[:] = known  # this test's secrets are not the rest of the session's
    sys.excepthook, threading.excepthook = hooks[0], hooks[1]
    logging.getLogger().handlers = hooks[2]
    structlog.reset_defaults()


def test_every_log_path_masks_known_secrets(log_output: io.StringIO) -> None:
    password, token = 's3cr"t/é@x', "tok-12345"
    uri = f"rtsp://admin:{password}@cam/x?token={token}"
    add_secrets(uri_secrets(uri) | {"broker-pw-987"})
    log = get_logger("test")
    log.info("plain", uri=uri, nested={"list": [uri, ("broker-pw-987",)]}, obj=ValueError(uri))
    try:
        raise RuntimeError(f"failed on {uri}")
    except RuntimeError:
        log.exception("with_traceback")
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(OSError(uri)), name="reader")
    thread.start()
    thread.join()
    logging.getLogger("paho").error("library says %s", uri)
    lines = log_output.getvalue().splitlines()
    events = [json.loads(line) for line in lines]
    masked = "rtsp://admin:***@cam/x?token=***"
    assert [e["event"] for e in events] == ["plain", "with_traceback", "thread_crashed", f"library says {masked}"]
    assert events[0]["uri"] == masked and events[0]["obj"] == f"ValueError('{masked}')"
    text = log_output.getvalue()
    for secret in (password, json.dumps(password)[1:-1], token, "broker-pw-987"):
        assert secret not in text
    assert "Traceback" in events[1]["exception"] and "Traceback" in events[2]["exception"]


class _Recorder(BaseHTTPRequestHandler):
    """A camera (or the host it redirects to): remembers each request's Authorization header."""

    seen: ClassVar[list[tuple[str, str | None]]] = []
    redirect_to: ClassVar[str] = ""

    def do_GET(self) -> None:
        _Recorder.seen.append((f"{self.server.server_address[0]}{self.path}", self.headers.get("Authorization")))
        if self.path == "/cam" and _Recorder.redirect_to:
            self.send_response(302)
            self.send_header("Location", _Recorder.redirect_to)
            self.end_headers()
            return
        self.send_response(401)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def two_hosts() -> Iterator[tuple[int, int]]:
    """Two HTTP servers on loopback, at different addresses (two origins)."""
    servers = [ThreadingHTTPServer((host, 0), _Recorder) for host in ("127.0.0.1", "127.0.0.2")]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    _Recorder.seen = []
    yield servers[0].server_address[1], servers[1].server_address[1]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_credentials_are_not_sent_to_a_redirect_on_another_origin(two_hosts: tuple[int, int]) -> None:
    camera, other = two_hosts
    _Recorder.redirect_to = f"http://127.0.0.2:{other}/elsewhere"
    assert diagnose(f"http://user:pw@127.0.0.1:{camera}/cam", 5.0) == ("auth", 401)
    assert [path for path, _ in _Recorder.seen] == ["127.0.0.1/cam", "127.0.0.2/elsewhere"]
    assert _Recorder.seen[0][1] is not None and _Recorder.seen[0][1].startswith("Basic ")
    assert _Recorder.seen[1][1] is None, "the Authorization header followed the redirect to another host"


def test_a_redirect_on_the_same_origin_keeps_them(two_hosts: tuple[int, int]) -> None:
    camera, _ = two_hosts
    _Recorder.redirect_to = f"http://127.0.0.1:{camera}/moved"
    assert diagnose(f"http://user:pw@127.0.0.1:{camera}/cam", 5.0) == ("auth", 401)
    assert [auth is not None for _, auth in _Recorder.seen] == [True, True]


def test_a_password_that_is_a_word_does_not_rename_events(log_output: io.StringIO) -> None:
    add_secrets({"stream"})
    get_logger("test").info("source_streaming", uri="rtsp://u:stream@cam/x", note="a stream of frames")
    event = json.loads(log_output.getvalue().splitlines()[-1])
    assert event["event"] == "source_streaming" and event["uri"] == "rtsp://u:***@cam/x"
    assert event["note"] == "a *** of frames"  # hiding too much, never too little
