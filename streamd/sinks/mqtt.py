"""MQTT sink (aiomqtt): the pipeline hands messages over without ever waiting on the broker.

``publish()`` only appends to a bounded buffer; a pump task sends from it with many publishes
in flight, and puts back (in order) whatever was not acknowledged when a connection dies.
While the broker is away the buffer fills; when full, the oldest message goes and is counted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from streamd.backoff import Backoff
from streamd.config import MqttConfig
from streamd.logging import get_logger
from streamd.metrics import Metrics

log = get_logger("streamd.mqtt")

MAX_INFLIGHT = 256  # publishes awaiting their acknowledgement at once
# aiomqtt warns on every publish past 10 in flight; we run many on purpose, and report
# connection problems ourselves through structlog.
_AIOMQTT_LOG = logging.getLogger("streamd.aiomqtt")
_AIOMQTT_LOG.setLevel(logging.ERROR)


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    source: str | None = None  # for the end-to-end histogram
    captured: float = 0.0  # monotonic capture time
    id: int = field(default=0)


class MqttSink:
    def __init__(self, config: MqttConfig, metrics: Metrics) -> None:
        self.config = config
        self._metrics = metrics
        prefix = f"{config.topic_prefix}/{config.instance}"
        self.prefix = prefix
        self.status_topic = f"{prefix}/status"
        self._pending: deque[Message] = deque()
        self._unacked: dict[int, Message] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._closing = False
        self._conn_error: Exception | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.first_attempt_done = asyncio.Event()
        self.last_error: str | None = None
        # Called with (message, seconds from capture) when a frame's message is acknowledged.
        self.on_acked: Callable[[Message, float], None] | None = None

    def topic(self, source: str, kind: str) -> str:
        return f"{self.prefix}/{source}/{kind}"

    @property
    def buffered(self) -> int:
        return len(self._pending) + len(self._unacked)

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int | None = None,
        retain: bool = False,
        source: str | None = None,
        captured: float = 0.0,
    ) -> None:
        """Queue a message; never blocks. Over ``mqtt.buffer`` the oldest is dropped."""
        data = payload.encode() if isinstance(payload, str) else payload
        message = Message(
            topic, data, self.config.qos if qos is None else qos, retain, source, captured, next(self._ids)
        )
        if len(self._pending) >= self.config.buffer:
            self._pending.popleft()
            self._metrics.mqtt_dropped.labels("buffer_full").inc()
        self._pending.append(message)
        self._metrics.mqtt_buffered.set(self.buffered)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-sink")

    async def close(self, timeout: float) -> None:
        """Flush what is buffered (bounded by ``timeout``), publish ``offline``, disconnect."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            left = self.buffered
            if left:
                self._metrics.mqtt_dropped.labels("shutdown").inc(left)
                log.warning("mqtt_unflushed", messages=left, reason=self.last_error or "timeout")

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        password = None
        if cfg.password_file:
            password = Path(cfg.password_file).read_text().strip()
        tls_context = None
        if cfg.tls.ca or cfg.tls.cert:
            tls_context = ssl.create_default_context(cafile=cfg.tls.ca or None)
            if cfg.tls.cert:
                tls_context.load_cert_chain(cfg.tls.cert, cfg.tls.key or None)
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=f"streamd-{cfg.instance}",
            username=cfg.username or None,
            password=password,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            clean_session=cfg.qos == 0,
            keepalive=cfg.keepalive,
            tls_context=tls_context,
            timeout=10.0,
            logger=_AIOMQTT_LOG,
        )

    async def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                async with self._client() as client:
                    self._on_connected()
                    backoff.reset()
                    await client.publish(self.status_topic, b"online", qos=1, retain=True)
                    await self._pump(client)
                    await client.publish(self.status_topic, b"offline", qos=1, retain=True)
                    log.info("mqtt_closed", host=self.config.host, port=self.config.port)
                    self._set_connected(False)
                    return
            except aiomqtt.MqttError as exc:
                self._on_lost(exc)
            finally:
                self.first_attempt_done.set()
            if self._closing and not self._pending and not self._unacked:
                return
            await asyncio.sleep(backoff.next_delay())

    def _on_connected(self) -> None:
        self._conn_error = None
        self.last_error = None
        self._set_connected(True)
        log.info("mqtt_connected", host=self.config.host, port=self.config.port, buffered=self.buffered)

    def _on_lost(self, exc: Exception) -> None:
        # Unacknowledged messages go back to the front, in their original order.
        for message in reversed(list(self._unacked.values())):
            self._pending.appendleft(message)
        self._unacked.clear()
        was_connected = self.connected.is_set()
        self._set_connected(False)
        self.last_error = str(exc)
        if was_connected or not self.first_attempt_done.is_set():
            log.warning(
                "mqtt_disconnected",
                host=self.config.host,
                port=self.config.port,
                error=str(exc),
                buffered=self.buffered,
            )

    def _set_connected(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        self._metrics.mqtt_connected.set(1 if up else 0)

    async def _pump(self, client: aiomqtt.Client) -> None:
        sends: set[asyncio.Task[None]] = set()
        watcher = asyncio.create_task(self._watch(client))
        try:
            while True:
                if self._conn_error is not None:
                    raise aiomqtt.MqttError(str(self._conn_error))
                if self._pending and len(self._unacked) < MAX_INFLIGHT:
                    message = self._pending.popleft()
                    self._unacked[message.id] = message
                    task = asyncio.create_task(self._send(client, message))
                    sends.add(task)
                    task.add_done_callback(sends.discard)
                    continue
                if self._closing and not self._pending and not self._unacked:
                    return
                self._wake.clear()
                await self._wake.wait()
        finally:
            watcher.cancel()
            for task in list(sends):
                task.cancel()

    async def _watch(self, client: aiomqtt.Client) -> None:
        """aiomqtt reports a dropped connection through its message iterator."""
        try:
            async for _ in client.messages:
                pass
        except aiomqtt.MqttError as exc:
            self._conn_error = exc
            self._wake.set()

    async def _send(self, client: aiomqtt.Client, message: Message) -> None:
        try:
            await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        except aiomqtt.MqttError as exc:
            self._metrics.mqtt_published.labels("error").inc()
            self._conn_error = exc
            self._wake.set()
            return
        if self._unacked.pop(message.id, None) is None:
            return
        self._metrics.mqtt_published.labels("ok").inc()
        self._metrics.mqtt_buffered.set(self.buffered)
        if message.source is not None:
            seconds = time.monotonic() - message.captured
            self._metrics.end_to_end_seconds.labels(message.source).observe(seconds)
            if self.on_acked is not None:
                self.on_acked(message, seconds)
        self._wake.set()
