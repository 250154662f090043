"""A source decoded in a process of its own (``[[sources]] decode_in``: "process", or "auto" when
decoding on the CPU; not for sources that record): :class:`ProcessCapture` offers the reader the
capture surface it always reads through, while ``decoder_child.py`` demuxes, decodes and
converts in another process, out of the daemon's GIL, and hands each picture over in shared
memory (a ring of slots in a ``memfd``; one small pickled message per frame on a pipe).

The reader gets a :class:`SlotPicture`: the model's input is already made (copied out of the
slot, since OpenVINO shares it for as long as the request runs); the full-size BGR frame and the
motion gate's grey picture are made from the slot's planes only when asked. A slot goes back to
the decoder at the next ``grab``, when nothing made from it is still read.

A decoder that dies (killed, crashed) ends the connection like a camera that hangs up: the reader
logs it, counts it and reconnects with a new process."""

from __future__ import annotations

import contextlib
import mmap
import os
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import cv2
import numpy as np

from streamd.images import BgrImage, Decoded, InputTarget, PictureMissing, Size
from streamd.logging import get_logger
from streamd.redact import redact_uri
from streamd.sources.av_image import PlanarImage
from streamd.sources.decoder_child import CONTROL, WANT_PICTURES
from streamd.sources.decoder_pipe import Messages

log = get_logger(__name__)

SLOTS = 6  # pictures in flight: those the reader is done with go back in batches of RETURN
RETURN = 3  # (the decoder wakes once per batch when it is ahead), or at once before the reader waits
START_GRACE = 30.0  # seconds the process may take to start (imports) beyond the stream's own timeout


class SlotPicture:
    """A picture in a slot of the shared memory; what leaves it is always a copy (the slot is
    written again once handed back). ``picture`` None: the decoder left it out."""

    __slots__ = ("_picture", "_ready", "_target", "height", "width")

    def __init__(
        self, picture: Decoded | None, ready: np.ndarray | None, target: InputTarget | None, size: Size
    ) -> None:
        self._picture, self._ready, self._target = picture, ready, target
        self.width, self.height = size

    def _whole(self) -> Decoded:
        if self._picture is None:
            raise PictureMissing("the decoder process made the model's input alone")
        return self._picture

    def bgr(self) -> np.ndarray:
        return self._whole().bgr()

    def scaled(self, size: Size, rgb: bool) -> np.ndarray:
        if self._ready is not None and self._target == (size, rgb):
            return self._ready.copy()
        return self._whole().scaled(size, rgb)

    def grey(self, size: Size) -> np.ndarray:
        return self._whole().grey(size)


class DecoderProcess:
    """A source's decoder process, started at its first stream and kept for the next (a looping
    file reopens at every pass: starting Python each time cost more than the decoding); a
    stream closed before its end, or a process that died, means a new one next time."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._process: subprocess.Popen[bytes] | None = None
        self.inbox: Messages | None = None
        self.tokens: Connection | None = None
        self.memory = -1
        self._control: mmap.mmap | None = None

    def want_pictures(self, wanted: bool) -> None:
        """Whether the frames decoded from now on come with their picture (not only the model's input)."""
        if self._control is not None:
            self._control[WANT_PICTURES] = wanted

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def ready(self) -> bool:
        """Running, or started now (False if it cannot be started)."""
        if self._process is not None and self._process.poll() is None:
            return True
        self.close()
        message_read, message_write = os.pipe()
        token_read, token_write = os.pipe()
        self.memory = os.memfd_create("streamd-frames", os.MFD_CLOEXEC)
        os.ftruncate(self.memory, CONTROL)
        self._control = mmap.mmap(self.memory, CONTROL, flags=mmap.MAP_SHARED)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "streamd.sources.decoder_child"]
                + [str(fd) for fd in (message_write, token_read, self.memory, os.getpid())],
                pass_fds=(message_write, token_read, self.memory),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.error("decoder_not_started", source=self.source, error=str(exc))
            for fd in (message_read, token_write):
                os.close(fd)
            return False
        finally:
            os.close(message_write)
            os.close(token_read)
        self.inbox = Messages(message_read)
        self.tokens = Connection(token_write, readable=False)
        return True

    def exit_code(self) -> int | None:
        """The process's exit status once it has ended (None while it runs a little longer)."""
        try:
            return self._process.wait(5) if self._process is not None else None
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Ends the process: its pipes close (it ends), or, blocked on the network, it is killed."""
        process, self._process = self._process, None
        for pipe in (self.tokens, self.inbox):
            if pipe is not None:
                pipe.close()
        self.tokens, self.inbox = None, None
        if process is not None:
            try:
                process.wait(1.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._control is not None:
            self._control.close()
            self._control = None
        if self.memory >= 0:
            os.close(self.memory)
            self.memory = -1


class ProcessCapture:
    """One stream through the source's :class:`DecoderProcess`."""

    def __init__(
        self,
        decoder: DecoderProcess,
        uri: str,
        timeout: float,
        transport: str,
        threads: int,
        device: str | None,
        on_fallback: Callable[[str], None],
        target: InputTarget | None,
        wants_pictures: Callable[[], bool] = lambda: True,
    ) -> None:
        """``device``: a PyAV hardware device type, or None for the CPU; ``on_fallback(reason)``:
        told once if the device is not used; ``target``: the model's input the decoder makes
        with every picture (None: the reader makes it when it needs it, from the picture);
        ``wants_pictures()``: asked at every frame, whether the pictures must come too (with a
        target; without one they always do)."""
        self._decoder = decoder
        self._uri_safe = redact_uri(uri)
        self._timeout = timeout
        self._on_fallback = on_fallback
        self._target = target
        self._wants_pictures = wants_pictures
        self._map: mmap.mmap | None = None
        self._slot_bytes = self._picture_bytes = 0
        self._holding = False
        self._done = 0  # slots the reader is done with, not handed back yet
        self._message: tuple[Any, ...] | None = None
        self._info: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self._open = False
        self._ended = False
        if not decoder.ready():
            return
        settings = {
            "uri": uri,
            "timeout": timeout,
            "transport": transport,
            "threads": threads,
            "device": device,
            "target": target,
            "slots": SLOTS,
        }
        try:
            assert decoder.tokens is not None
            decoder.want_pictures(wants_pictures())
            decoder.tokens.send(settings)
            opened = self._next(timeout + START_GRACE)
        except OSError:
            opened = None
        if opened is None or opened[0] != "opened":
            self._ended = True  # "failed": the decoder waits for the next stream
            return
        self._open = True
        self._info = opened[1:5]

    def _next(self, wait: float) -> tuple[Any, ...] | None:
        """The decoder's next message (a fallback is passed on here); None if it said nothing
        for ``wait`` seconds or is gone."""
        inbox = self._decoder.inbox
        assert inbox is not None
        while True:
            try:
                message = inbox.next(wait)
                if message is None:
                    log.warning("decoder_silent", source=self._decoder.source, uri=self._uri_safe, seconds=wait)
                    self._decoder.close()
                    return None
            except (EOFError, OSError):
                code = self._decoder.exit_code()
                log.warning("decoder_exited", source=self._decoder.source, uri=self._uri_safe, returncode=code)
                self._decoder.close()
                return None
            if message[0] == "fallback":
                self._on_fallback(message[1])
                continue
            return message

    def isOpened(self) -> bool:  # cv2's name
        return self._open

    def get(self, prop: int) -> float:
        fps, frames, width, height = self._info
        return {
            cv2.CAP_PROP_FPS: fps,
            cv2.CAP_PROP_FRAME_COUNT: frames,
            cv2.CAP_PROP_FRAME_WIDTH: width,
            cv2.CAP_PROP_FRAME_HEIGHT: height,
        }.get(prop, 0.0)

    def grab(self) -> bool:
        """The next frame the decoder wrote (the slot of the last one goes back first)."""
        if not self._open or self._ended:
            return False
        try:
            inbox, tokens = self._decoder.inbox, self._decoder.tokens
            assert inbox is not None and tokens is not None
            self._decoder.want_pictures(self._wants_pictures())
            if self._holding:
                self._holding = False
                self._done += 1
            if self._done and (self._done >= RETURN or not inbox.waiting()):
                os.write(tokens.fileno(), b"\x01" * self._done)
                self._done = 0
            while True:
                message = self._next(self._timeout * 2 + 5)  # the decoder's own read timeout first
                if message is None or message[0] != "layout":
                    break
                self._remap(message[1], message[2])
        except OSError:
            message = None
        if message is None or message[0] != "frame":
            self._ended = True  # "end": the decoder waits for the next stream
            return False
        self._message, self._holding = message, True
        return True

    def _remap(self, slot_bytes: int, picture_bytes: int) -> None:
        self._unmap()
        self._slot_bytes, self._picture_bytes = slot_bytes, picture_bytes
        length = CONTROL + slot_bytes * SLOTS
        self._map = mmap.mmap(self._decoder.memory, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)

    def _unmap(self) -> None:
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a picture still viewed keeps the map alive
                self._map.close()
            self._map = None

    def retrieve(self) -> tuple[bool, Decoded | None]:
        if self._message is None or self._map is None:
            return False, None
        _, slot, layout, width, height, has_input, has_picture = self._message
        base = CONTROL + slot * self._slot_bytes
        picture: Decoded | None = None
        if has_picture and layout == "bgr24":
            bgr = np.frombuffer(self._map, np.uint8, width * height * 3, base).reshape(height, width, 3)
            picture = BgrImage(bgr.copy())
        elif has_picture:
            whole = np.frombuffer(self._map, np.uint8, width * height * 3 // 2, base)
            picture = PlanarImage.from_stacked(layout, whole.reshape(height * 3 // 2, width), width, height)
        ready = None
        if has_input and self._target is not None:
            (w, h), _ = self._target
            ready = np.frombuffer(self._map, np.uint8, w * h * 3, base + self._picture_bytes).reshape(h, w, 3)
        return True, SlotPicture(picture, ready, self._target, (width, height))

    def read(self) -> tuple[bool, Decoded | None]:
        return self.retrieve() if self.grab() else (False, None)

    def release(self) -> None:
        """A stream that ended leaves the decoder waiting for the next; one closed before its
        end (a stop, a stall) ends the decoder with it."""
        if self._open and not self._ended:
            self._decoder.close()
        self._open = False
        self._unmap()
