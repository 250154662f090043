"""A real RTSP server (GStreamer's gst-rtsp-server) looping JPEG frames as H.264 (or H.265 with
RTSP_CODEC=h265: most new cameras send it), for the tests.

Runs under the system Python (/usr/bin/python3, python3-gi), not the project's venv:
    /usr/bin/python3 tests/servers/rtsp_server.py PORT FRAMES_DIR FPS [USER:PASSWORD]
Serves rtsp://127.0.0.1:PORT/stream and prints "READY" once listening; with USER:PASSWORD, only
to that user (HTTP Basic, as most IP cameras do; anything else gets 401).
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, frames, fps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    encode = {
        "h264": f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! rtph264pay",
        "h265": f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! rtph265pay",
    }[os.environ.get("RTSP_CODEC", "h264")]
    factory.set_launch(
        f'( multifilesrc location="{frames}/%04d.jpg" index=0 loop=true caps="image/jpeg,framerate={fps}/1" '
        f"! jpegdec ! videoconvert ! video/x-raw,format=I420 ! {encode} name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    if len(sys.argv) > 4:
        user, password = sys.argv[4].split(":", 1)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        factory.add_role_from_structure(
            Gst.Structure.new_from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on {port}")
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
