"""The decoder process (``python -m streamd.sources.decoder_child MSG TOKENS MEMORY``): one per
source that decodes out of the daemon's process (``decoder_process.py``). It reads the stream
with :class:`~streamd.sources.packets.PacketCapture`, writes each picture (its 4:2:0 planes
stacked, or BGR) and, when asked, the model's input at the model's size into a ring of slots in
shared memory, and tells the daemon which slot holds which frame.

Why a process: in the daemon's process the reader's decode and conversions and the event loop's
Python take turns on one GIL; each of the reader's calls into FFmpeg or OpenCV gives it up and
waits to get it back. With a detector that costs nothing, the reader alone reads 2,400 frames a
second and the loop alone handles 2,300; together they managed 900 (``benchmarks/README.md``).

The camera's URL (and its password) comes through the pipe, never the command line. One process
serves the source's streams one after another (a looping file reopens at every pass); it dies
with the daemon (``PR_SET_PDEATHSIG``) and ends when its pipes close.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

# What the daemon sends first: one pickled dict (uri, timeout, transport, threads, device,
# target, slots), then one byte per slot it is done with.
# What this process sends (pickled tuples):
#   ("opened", fps, frames, width, height)     the stream is open
#   ("failed",)                                 it is not (the daemon diagnoses why itself)
#   ("fallback", reason)                        the hardware device is not used (said once)
#   ("layout", slot_bytes, picture_bytes)       slots' size in the memory (before the first frame, and when it grows)
#   ("frame", slot, layout, width, height, has_input, has_picture)
#   ("end",)                                    the stream ended or failed
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
PROCESS_NAME = b"streamd-decode"
# The shared memory's first page is the daemon's to write: byte 0 says whether it wants the
# pictures themselves (snapshots, a live viewer) besides the model's input; the slots follow.
CONTROL = 4096
WANT_PICTURES = 0


def _bound_to_parent(parent: int) -> None:
    """Killed with the daemon, even by SIGKILL; named so ``ps`` says what it is."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(PR_SET_NAME, PROCESS_NAME, 0, 0, 0)
    if os.getppid() != parent:  # the daemon was gone before the line above
        sys.exit(0)


class Slots:
    """The ring: ``count`` slots in the shared memory, handed back by the daemon in order."""

    def __init__(self, memory: int, tokens: int, count: int) -> None:
        self._memory, self._tokens, self.count = memory, tokens, count
        self._free = count
        self._next = 0
        self.picture_bytes = 0
        self.slot_bytes = 0
        self._map: mmap.mmap | None = None

    def _back(self, wanted: int) -> bool:
        """Until ``wanted`` slots are free (the daemon hands them back); False when it is gone."""
        while self._free < wanted:
            returned = os.read(self._tokens, 64)
            if not returned:
                return False
            self._free += len(returned)
        return True

    def take(self) -> int | None:
        """The next slot, once the daemon is done with it; None when the daemon is gone."""
        if not self._back(1):
            return None
        self._free -= 1
        slot, self._next = self._next, (self._next + 1) % self.count
        return slot

    def all_back(self) -> bool:
        return self._back(self.count)

    def resize(self, picture_bytes: int, input_bytes: int) -> None:
        """Room for pictures of ``picture_bytes`` (every slot is back: nothing is being read).
        The memory only grows: a map of it the daemon still holds never reaches past its end."""
        self.picture_bytes = picture_bytes
        self.slot_bytes = -(-(picture_bytes + input_bytes) // 64) * 64
        total = CONTROL + self.slot_bytes * self.count
        if os.fstat(self._memory).st_size < total:
            os.ftruncate(self._memory, total)
        self._map = mmap.mmap(self._memory, total, flags=mmap.MAP_SHARED)

    def pictures_wanted(self) -> bool:
        assert self._map is not None
        return bool(self._map[WANT_PICTURES])

    def close(self) -> None:
        self._map = None  # unmapped once the last view of it goes

    def view(self, slot: int, offset: int, size: int) -> np.ndarray:
        assert self._map is not None
        return np.frombuffer(self._map, np.uint8, size, CONTROL + slot * self.slot_bytes + offset)


def serve(messages: Connection, settings: dict[str, Any], memory: int, tokens: int) -> None:
    from av.codec.hwaccel import HWAccel

    from streamd.images import one_thread_per_call
    from streamd.sources.av_image import PlanarImage, av_picture, layout_of, stacked_size
    from streamd.sources.packets import PacketCapture

    one_thread_per_call()
    device = settings["device"]
    capture = PacketCapture(
        settings["uri"],
        None,
        settings["timeout"],
        settings["transport"],
        settings["threads"],
        HWAccel(device, allow_software_fallback=True) if device else None,
        lambda reason: messages.send(("fallback", reason)),
    )
    if not capture.isOpened():
        messages.send(("failed",))
        return
    import cv2

    messages.send(
        (
            "opened",
            capture.get(cv2.CAP_PROP_FPS),
            capture.get(cv2.CAP_PROP_FRAME_COUNT),
            capture.get(cv2.CAP_PROP_FRAME_WIDTH),
            capture.get(cv2.CAP_PROP_FRAME_HEIGHT),
        )
    )
    target: tuple[tuple[int, int], bool] | None = settings["target"]
    input_bytes = target[0][0] * target[0][1] * 3 if target else 0
    slots = Slots(memory, tokens, settings["slots"])
    try:
        while capture.grab():
            frame = capture.frame()
            assert frame is not None
            layout, width, height = layout_of(frame), frame.width, frame.height
            size = stacked_size(layout, width, height)
            if size > slots.picture_bytes:  # the first frame, or a bigger picture than so far
                if not slots.all_back():
                    return
                slots.resize(size, input_bytes)
                messages.send(("layout", slots.slot_bytes, slots.picture_bytes))
            slot = slots.take()
            if slot is None:
                return
            picture = av_picture(frame)
            # The picture itself only where the daemon makes it or may want it (a 1080p frame
            # is 3 MB to copy); the model's input, when asked for, always.
            with_picture = target is None or slots.pictures_wanted()
            if with_picture:
                out = slots.view(slot, 0, size)
                if isinstance(picture, PlanarImage):
                    stacked = out.reshape(height * 3 // 2, width)
                    picture.stack_into(stacked)
                    picture = PlanarImage.from_stacked(layout, stacked, width, height)  # stacked once
                else:
                    out[:] = picture.bgr().reshape(-1)
            if target is not None:
                (w, h), rgb = target
                model_input = slots.view(slot, slots.picture_bytes, input_bytes).reshape(h, w, 3)
                if isinstance(picture, PlanarImage):
                    picture.scaled_into((w, h), rgb, model_input)
                else:
                    model_input[:] = picture.scaled((w, h), rgb)
            messages.send(("frame", slot, layout, width, height, target is not None, with_picture))
        if slots.all_back():  # the pipe holds no token then, only the next stream's settings
            messages.send(("end",))
    finally:
        slots.close()
        capture.release()


def main() -> None:
    message_fd, token_fd, memory_fd, parent = (int(arg) for arg in sys.argv[1:5])
    _bound_to_parent(parent)
    messages = Connection(message_fd, readable=False)
    tokens = Connection(token_fd, writable=False)  # kept: the Connection closes its fd when it goes
    settings: dict[str, Any] = {}
    try:
        while True:  # one stream after another (a looping file reopens), until the daemon goes
            settings = tokens.recv()
            serve(messages, settings, memory_fd, token_fd)
    except (BrokenPipeError, ConnectionError, EOFError):
        pass  # the daemon closed its end: nothing to tell
    except Exception as exc:  # said without the URL (it may carry a password), then ended
        from streamd.redact import redact_uri

        uri = str(settings.get("uri", ""))
        text = f"{type(exc).__name__}: {exc}".replace(uri, redact_uri(uri)) if uri else str(exc)
        print(f"streamd-decode: {text}", file=sys.stderr)
        with contextlib.suppress(OSError):
            messages.send(("end",))


if __name__ == "__main__":
    main()
