"""The sink's publishes, one level under aiomqtt: paho's ``publish`` and its PUBACK callback.

aiomqtt's ``publish`` is a coroutine that waits on an ``asyncio.Event`` per message, so a
sink with hundreds of messages in flight needs a task, an Event and a ``wait_for`` for each
(with a detector that costs nothing, that was the largest part of streamd's own time per frame).
aiomqtt keeps the connection, its socket callbacks, the session, subscriptions and the
``online``/``offline`` messages; the stream of messages goes through paho's client directly:
``send`` queues the packet (aiomqtt's socket callbacks write it), ``on_acked`` is called from
paho's ``on_publish`` (the PUBACK at QoS 1, the write at QoS 0), on the event loop's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from streamd.logging import get_logger
from streamd.sinks.outbox import Message

log = get_logger(__name__)


class Wire:
    def __init__(self, client: aiomqtt.Client, on_acked: Callable[[Message], None]) -> None:
        """``client``: connected, made with ``max_inflight_messages`` as high as the sink keeps
        in flight (paho's default, 20, would hold the rest back in its own queue)."""
        # aiomqtt has no public accessor for its paho client; 2.x keeps it here.
        self._paho: paho.Client = client._client
        self._on_acked = on_acked
        self._sent: dict[int, Message] = {}  # by paho's message id
        self._chained = self._paho.on_publish  # aiomqtt's own (status, ...) publishes
        self._paho.on_publish = self._on_publish

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

    def close(self) -> None:
        """The connection is over: messages in flight are the sink's to send again."""
        self._sent.clear()
        if self._paho.on_publish == self._on_publish:
            self._paho.on_publish = self._chained

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
