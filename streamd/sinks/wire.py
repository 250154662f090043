"""The sink's publishes, one level under aiomqtt: paho's ``publish`` and its PUBACK callback.

aiomqtt's ``publish`` is a coroutine that waits on an ``asyncio.Event`` per message, so a
sink with hundreds of messages in flight needs a task, an Event and a ``wait_for`` for each
(with a detector that costs nothing, that was the largest part of streamd's own time per frame).
aiomqtt keeps the connection, its socket callbacks, the session, subscriptions and the
``online``/``offline`` messages; the stream of messages goes through paho's client directly:
``send`` queues the packet (aiomqtt's socket callbacks write it), ``on_acked`` is called from
paho's ``on_publish`` (the PUBACK at QoS 1, the write at QoS 0), on the event loop's thread.

Writes, too, skip a round trip: aiomqtt registers paho's socket for writing with
``call_soon_threadsafe`` (paho may call it from the thread that connects), which costs a wake-up
through the loop's self-pipe and one more loop iteration per burst. Once connected, paho only
calls from the loop's thread, so the wire registers the socket directly, and ``flush`` writes
what a burst of publishes queued at once, in the same iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from streamd.logging import get_logger
from streamd.sinks.outbox import Message

log = get_logger(__name__)


class Wire:
    def __init__(
        self, client: aiomqtt.Client, on_acked: Callable[[Message], None], on_lost: Callable[[Exception], None]
    ) -> None:
        """``client``: connected, made with ``max_inflight_messages`` as high as the sink keeps
        in flight (paho's default, 20, would hold the rest back in its own queue). For the rest of
        this connection's life its socket's writes are the wire's; ``on_lost`` hears if one fails."""
        self._loop = asyncio.get_running_loop()
        # aiomqtt has no public accessor for its paho client; 2.x keeps it here.
        self._paho: paho.Client = client._client
        self._on_acked = on_acked
        self._on_lost = on_lost
        self._sent: dict[int, Message] = {}  # by paho's message id
        self._chained = self._paho.on_publish  # aiomqtt's own (status, ...) publishes
        self._paho.on_publish = self._on_publish
        self._paho.on_socket_register_write = self._register_write
        self._paho.on_socket_unregister_write = self._unregister_write

    def send(self, message: Message) -> None:
        """Queue one PUBLISH. Raises ``aiomqtt.MqttCodeError`` when the connection is gone, and
        ``ValueError`` for a message no broker would take (paho checks topic and size)."""
        info = self._paho.publish(message.topic, message.payload, message.qos, message.retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if info.is_published():  # written at once (QoS 0): never registered
            self._on_acked(message)
        else:
            self._sent[info.mid] = message

    def flush(self) -> None:
        """Write what the last publishes queued, now (what the socket does not take waits for
        it to be writable)."""
        if self._paho.want_write():
            self._write()

    def close(self) -> None:
        """The connection is over: messages in flight are the sink's to send again."""
        self._sent.clear()
        if self._paho.on_publish == self._on_publish:
            self._paho.on_publish = self._chained

    def _register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.add_writer(sock.fileno(), self._write)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_writer(sock.fileno())

    def _write(self) -> None:
        try:
            self._paho.loop_write()
        except Exception as exc:  # a broken pipe, say: the connection is over
            self._on_lost(exc)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, *rest: Any) -> None:
        # Inside paho's read loop: an exception here would end the connection.
        message = self._sent.pop(mid, None)
        try:
            if message is None:
                if self._chained is not None:
                    self._chained(client, userdata, mid, *rest)
            else:
                self._on_acked(message)
        except Exception:
            log.exception("mqtt_ack_failed", mid=mid)
