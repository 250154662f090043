"""The daemon's end of a decoder process's message pipe (``decoder_child.py`` writes it with
``Connection.send``)."""

from __future__ import annotations

import math
import os
import pickle
import select
from typing import Any


class Messages:
    """The decoder's messages, framed as ``Connection.send`` frames them (a 4-byte length, then
    the pickle), read as many at a time as are there: with the decoder ahead of the reader, one
    system call takes several frames' (``Connection.recv`` made two per message, and each of its
    ``poll`` calls built a selector, all in the reader thread, which shares the loop's GIL)."""

    def __init__(self, fd: int) -> None:
        """``fd``: the pipe's reading end, this reader's to close."""
        self._fd = fd
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def _first(self) -> int:
        """The length of the first message, if all of it is here (else 0)."""
        if len(self._buffer) < 4:
            return 0
        size = int.from_bytes(self._buffer[:4], "big")
        return size if len(self._buffer) >= 4 + size else 0

    def waiting(self) -> bool:
        """Whether a message can be read without waiting."""
        return bool(self._first() or self._poll.poll(0))

    def next(self, wait: float) -> tuple[Any, ...] | None:
        """The next message, None after ``wait`` seconds of silence; EOFError once the decoder is gone."""
        while not (size := self._first()):
            if not self._poll.poll(math.ceil(wait * 1000)):
                return None
            data = os.read(self._fd, 1 << 16)
            if not data:
                raise EOFError
            self._buffer += data
        message: tuple[Any, ...] = pickle.loads(self._buffer[4 : 4 + size])
        del self._buffer[: 4 + size]
        return message

    def close(self) -> None:
        if self._fd >= 0:
            self._poll.unregister(self._fd)
            os.close(self._fd)
            self._fd = -1
