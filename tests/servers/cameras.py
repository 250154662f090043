"""Camera stand-ins that speak real protocols: GStreamer RTSP, HTTP MJPEG, and a host that stalls."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from streamd.demo.broker import free_port
from streamd.demo.clip import make_clip

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


def jpeg_frames(directory: Path, script: list[str | None]) -> list[bytes]:
    """The clip's frames as JPEG files (0000.jpg...) and bytes: the cameras below serve these."""
    directory.mkdir(parents=True, exist_ok=True)
    clip = directory / "clip.mp4"
    make_clip(clip, script)
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        data = cv2.imencode(".jpg", image)[1].tobytes()
        (directory / f"{len(frames):04d}.jpg").write_bytes(data)
        frames.append(data)
    return frames


def rtsp_available() -> str | None:
    """None when the GStreamer RTSP server can run here, else why not."""
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer;"
        "Gst.init(None); assert all(Gst.ElementFactory.find(e) for e in ('x264enc', 'x265enc', 'jpegdec'))"
    )
    if not Path(SYSTEM_PYTHON).exists():
        return "no /usr/bin/python3"
    result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True)
    return None if result.returncode == 0 else "GStreamer RTSP server packages missing: " + result.stderr[-300:]


class RtspCamera:
    def __init__(
        self, frames: Path, fps: int = 15, port: int | None = None, credentials: str = "", codec: str = "h264"
    ) -> None:
        """``credentials``: ``user:password`` the camera asks for (Basic auth), "" for none;
        ``codec``: ``h264`` or ``h265``."""
        self.frames, self.fps, self.codec = frames, fps, codec
        self.port = port or free_port()
        self.credentials = credentials
        self.url = f"rtsp://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}/stream"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> RtspCamera:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SERVER), str(self.port), str(self.frames), str(self.fps)]
            + ([self.credentials] if self.credentials else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "RTSP_CODEC": self.codec},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"RTSP server did not start: {line!r}")
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class MjpegCamera:
    """An HTTP MJPEG endpoint (multipart/x-mixed-replace), like most IP cameras' /video.mjpg."""

    def __init__(self, frames: list[bytes], fps: float = 15.0) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while not camera.stopped.is_set():
                        data = frames[index % len(frames)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                        index += 1
                        time.sleep(1.0 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.stopped = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


class StallingCamera:
    """Accepts TCP connections, then never says a word: the camera that hangs a naive reader."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    def __enter__(self) -> StallingCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()
        for conn in self.accepted:
            conn.close()
        self.sock.close()
