"""The MQTT wire's reads: a plain socket that gave less than asked is not asked again until the
event loop says it is readable (paho's read loop ends on "nothing yet" either way)."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator

import pytest

from streamd.sinks.wire import _BatchedSocket


class CountingSocket(socket.socket):
    """A real socket that counts its ``recv`` system calls."""

    reads = 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.reads += 1
        return super().recv(size, flags)


@pytest.fixture
def pair() -> Iterator[tuple[CountingSocket, socket.socket]]:
    ours, peer = socket.socketpair()
    counted = CountingSocket(fileno=ours.detach())
    counted.setblocking(False)
    yield counted, peer
    counted.close()
    peer.close()


def _readable(sock: socket.socket) -> None:
    assert select.select([sock], [], [], 30.0)[0], "the peer's bytes never arrived"


def test_a_short_read_answers_the_next_read_without_a_system_call(pair: tuple[CountingSocket, socket.socket]) -> None:
    sock, peer = pair
    loop = asyncio.new_event_loop()
    try:
        wire = _BatchedSocket(sock, loop, lambda exc: None)
        peer.sendall(b"abc")
        _readable(sock)
        assert wire.recv(2) == b"ab"
        assert wire.recv(2) == b"c"
        assert sock.reads == 1
        with pytest.raises(BlockingIOError):
            wire.recv(2)  # the socket was empty a moment ago: paho's loop ends here
        assert sock.reads == 1
        peer.sendall(b"d")  # arrives later: the next read (the loop saw it readable) gets it
        _readable(sock)
        assert wire.recv(2) == b"d"
        assert sock.reads == 2
        with pytest.raises(BlockingIOError):
            wire.recv(2)
        with pytest.raises(BlockingIOError):
            wire.recv(2)  # now a real read, on an empty socket
        assert sock.reads == 3
        peer.close()  # the broker hangs up: an empty read says so
        _readable(sock)
        assert wire.recv(2) == b""
    finally:
        loop.close()
