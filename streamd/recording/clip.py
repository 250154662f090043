"""One clip file: the camera's packets muxed into MP4 as they came (no re-encode), ``faststart``
(the index first, so a browser plays while it loads), written under a hidden temporary name and
renamed when complete: a crash never leaves a half file under a clip's name."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import av
import av.container

from streamd.private import create_private
from streamd.sources.packets import StoredPacket, StreamTemplate

# What streamd names a clip: {YYYYmmdd-HHMMSS}-{first track id}[-n].mp4 (retention and the HTTP
# server touch no other file).
OWN_CLIP = re.compile(r"\d{8}-\d{6}-\d+(-\d+)?\.mp4")
# Its temporary name while written: a crash leaves one, which the next sweep removes.
OWN_PARTIAL = re.compile(r"\.\d{8}-\d{6}-\d+(-\d+)?\.mp4\.part")


def partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


class ClipFile:
    def __init__(self, path: Path, template: StreamTemplate) -> None:
        self.path = path
        self.codec = template.codec
        self._partial = partial_name(path)
        # Created here (0600, no link followed) and handed to FFmpeg by descriptor: its own open
        # would follow a link planted under the temporary name. faststart's second pass reopens
        # the same path, which stays this file while the descriptor is open.
        self._fd = create_private(self._partial)
        try:
            self._out: av.container.OutputContainer = av.open(
                f"/proc/self/fd/{self._fd}", "w", format="mp4", options={"movflags": "+faststart"}
            )
            self._stream = self._out.add_stream_from_template(template.stream)
        except BaseException:
            self.abandon()
            raise
        self._origin: int | None = None
        self.first_wall: float | None = None
        self.last_wall = 0.0
        self.packets = 0

    def write(self, packet: StoredPacket) -> None:
        """Raises OSError (or av's) when the disk refuses it: the caller abandons the clip."""
        if packet.dts is None:
            return
        if self._origin is None:
            self._origin = packet.dts
            self.first_wall = packet.wall
        elif packet.dts < self._origin:
            return  # from before the clip's first keyframe (a reconnect): not part of it
        out = av.Packet(packet.data)
        out.dts = packet.dts - self._origin
        out.pts = (packet.pts if packet.pts is not None else packet.dts) - self._origin
        out.time_base = packet.time_base
        out.is_keyframe = packet.keyframe
        out.stream = self._stream
        self._out.mux(out)
        self.last_wall = packet.wall
        self.packets += 1

    def finish(self) -> int:
        """Close (the index moves to the front) and give the file its name; returns its bytes."""
        self._out.close()
        self._close_fd()
        os.replace(self._partial, self.path)
        return self.path.stat().st_size

    def _close_fd(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            if hasattr(self, "_out"):
                self._out.close()
        self._close_fd()
        with contextlib.suppress(OSError):
            self._partial.unlink()
