"""The sink's publishes, one level under aiomqtt: paho's ``publish`` and its PUBACK callback.

aiomqtt's ``publish`` is a coroutine that waits on an ``asyncio.Event`` per message, so a
sink with hundreds of messages in flight needs a task, an Event and a ``wait_for`` for each
(with a detector that costs nothing, that was the largest part of streamd's own time per frame).
aiomqtt keeps the connection, its socket callbacks, the session, subscriptions and the
``online``/``offline`` messages; the stream of messages goes through paho's client directly:
``send`` queues the packet (the wire writes it, see below), ``on_acked`` is called from
paho's ``on_publish`` (the PUBACK at QoS 1, the write at QoS 0), on the event loop's thread,
with the broker's refusal where an MQTT 5 PUBACK carries a failure (else None).

The socket, too, is the wire's once connected (:class:`_BatchedSocket` around paho's): paho
writes each packet with its own ``send`` and reads each incoming one with three or more
``recv`` calls (type, length, body), every one a system call that also gives up the GIL. The
first packet paho queues in a loop iteration schedules one flush (``call_soon``), which lets
paho write everything queued by then into one buffer, sent with one ``send`` (what the kernel
does not take waits for the socket to be writable, in order); reads fill a buffer with one
``recv`` and paho takes its small reads from it (``pending()`` tells aiomqtt's reader to read
on, as it does for TLS sockets); after a plain socket gave less than asked, paho's next read
hears "nothing yet" without the system call that would have said so (about one a frame: paho
reads until a read finds nothing, and the loop calls it again when the socket is readable).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from streamd.logging import get_logger
from streamd.sinks.internals import fast_pubacks, paho_client, paho_socket, replace_paho_socket
from streamd.sinks.outbox import Message

log = get_logger(__name__)

READ_SIZE = 65536


class Wire:
    def __init__(
        self,
        client: aiomqtt.Client,
        on_acked: Callable[[Message, str | None], None],
        on_lost: Callable[[Exception], None],
    ) -> None:
        """``client``: connected, made with ``max_inflight_messages`` as high as the sink keeps
        in flight (paho's default, 20, would hold the rest back in its own queue). For the rest of
        this connection's life its socket's writes are the wire's; ``on_lost`` hears if one fails."""
        self._loop = asyncio.get_running_loop()
        self._paho: paho.Client = paho_client(client)
        self._on_acked = on_acked
        self._on_lost = on_lost
        self._sent: dict[int, Message] = {}  # by paho's message id
        self._chained = self._paho.on_publish  # aiomqtt's own (status, ...) publishes
        self._paho.on_publish = self._on_publish
        self._socket = _BatchedSocket(paho_socket(self._paho), self._loop, on_lost)
        replace_paho_socket(self._paho, self._socket)
        self._flush_soon = False
        self._holding = False
        self._paho.on_socket_register_write = self._register_write
        self._paho.on_socket_unregister_write = self._unregister_write
        fast_pubacks(self._paho)

    def send(self, message: Message) -> None:
        """Queue one PUBLISH. Raises ``aiomqtt.MqttCodeError`` when the connection is gone, and
        ``ValueError`` for a message no broker would take (paho checks topic and size)."""
        info = self._paho.publish(message.topic, message.payload, message.qos, message.retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if info.is_published():  # written at once (QoS 0): never registered
            self._on_acked(message, None)
        else:
            self._sent[info.mid] = message

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Packets queued inside go out in one write at its end (the sink's pump sends a batch,
        written then instead of a turn of the event loop later)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if self._flush_soon:
                self._flush()

    def _flush(self) -> None:
        """Write what this loop iteration's publishes queued, in one ``send`` (what the socket
        does not take waits for it to be writable)."""
        self._flush_soon = False
        if not self._paho.want_write():
            return
        self._socket.collecting = True
        try:
            self._paho.loop_write()
        except Exception as exc:  # the connection is over
            self._on_lost(exc)
        finally:
            self._socket.collecting = False
        self._socket.push()

    def close(self) -> None:
        """The connection is over: messages in flight are the sink's to send again."""
        self._sent.clear()
        if self._paho.on_publish == self._on_publish:
            self._paho.on_publish = self._chained

    def _register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # paho queued a packet (a publish, a ping, aiomqtt's own): written at the end of this
        # loop iteration, with whatever else is queued by then. The socket never refuses paho a
        # write (the batch buffer takes it), so paho never needs to wait for writability.
        if not self._flush_soon:
            self._flush_soon = True
            if not self._holding:
                self._loop.call_soon(self._flush)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        pass  # the batched socket watches writability itself, while it holds unsent bytes

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, *rest: Any) -> None:
        # Inside paho's read loop: an exception here would end the connection.
        message = self._sent.pop(mid, None)
        try:
            if message is None:
                if self._chained is not None:
                    self._chained(client, userdata, mid, *rest)
            else:
                code = rest[0] if rest else None  # paho's callback API 2: (reason code, properties)
                self._on_acked(message, str(code) if isinstance(code, ReasonCode) and code.is_failure else None)
        except Exception:
            log.exception("mqtt_ack_failed", mid=mid)


class _BatchedSocket:
    """paho's socket as the wire lends it: sends gathered while ``collecting`` go out in one
    system call; reads come from a buffer filled by one. Everything else is the socket's."""

    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop, on_lost: Callable[[Exception], None]) -> None:
        self._sock = sock
        self._loop = loop
        self._on_lost = on_lost
        self.collecting = False
        self._out = bytearray()
        self._watching = False  # waiting for the socket to be writable again
        self._in = b""
        self._at = 0
        self._closed = False
        # A plain socket that gave less than asked was empty then: the next read after that
        # buffer says "nothing yet" without a system call (the loop calls again when readable).
        self._plain = isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
        self._drained = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def send(self, data: bytes | bytearray | memoryview) -> int:
        self._out += data
        if not self.collecting:
            self.push()
        return len(data)

    def push(self) -> None:
        """Send what is gathered; what the kernel does not take now goes when it can."""
        if self._closed:
            return
        try:
            while self._out:
                sent = self._sock.send(self._out)
                del self._out[:sent]
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            if not self._watching:
                self._watching = True
                self._loop.add_writer(self._sock.fileno(), self.push)
            return
        except OSError as exc:
            self._on_lost(exc)
            return
        if self._watching:
            self._watching = False
            self._loop.remove_writer(self._sock.fileno())

    def recv(self, size: int) -> bytes:
        if self._at >= len(self._in):
            if self._drained:
                self._drained = False
                raise BlockingIOError  # paho tries later (the socket was empty a moment ago)
            self._in, self._at = self._sock.recv(READ_SIZE), 0  # BlockingIOError: paho tries later
            if not self._in:
                return b""  # the broker closed the connection
            self._drained = self._plain and len(self._in) < READ_SIZE
        chunk = self._in[self._at : self._at + size]
        self._at += len(chunk)
        return chunk

    def pending(self) -> int:
        """Bytes read but not yet taken (aiomqtt's reader reads on while there are)."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._in) - self._at + int(inner)

    def close(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_writer(self._sock.fileno())
        if self._out:  # the last packets (a DISCONNECT, say): one try, never waiting
            with contextlib.suppress(OSError, ValueError):
                self._sock.send(self._out)
            self._out.clear()
        self._closed = True
        self._sock.close()
