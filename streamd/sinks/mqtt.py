"""MQTT sink (aiomqtt): the pipeline hands messages over without ever waiting on the broker.

``publish()`` only appends to a buffer; a pump task sends from it with many publishes in
flight. While connected and caught up, the buffer is a bounded deque in memory. When the
connection drops, what was not acknowledged and everything after it goes to a bounded SQLite
file (``mqtt.buffer_dir``), which survives a crash or ``kill -9`` and is flushed, in order,
before anything newer once the broker is back. When full, the oldest message is dropped and
counted (``streamd_mqtt_dropped_total{reason="buffer_full"}``); memory never grows past it. A
message the broker refuses (MQTT 5: its ACL) is dropped and counted (``reason="refused"``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections import Counter
from collections.abc import Callable

import aiomqtt

from streamd.config import MqttConfig
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.publish import SinkStatus
from streamd.runtime.backoff import Backoff
from streamd.runtime.supervisor import end_within
from streamd.sinks.connect import MAX_PAYLOAD, Connection, make_client, too_long, watch_acks, watch_messages
from streamd.sinks.outbox import Message, Outbox
from streamd.sinks.refusal import MqttUnavailable, describe_refusal, refused_protocol
from streamd.sinks.retained import RetainedTopics
from streamd.sinks.wire import Wire

log = get_logger(__name__)

MAX_INFLIGHT = 256  # publishes awaiting their acknowledgement at once
HEALTHY_CONNECTION = 10.0  # a connection that lived this long resets the reconnect backoff
ACK_TIMEOUT = 10.0  # seconds a publish may wait for its PUBACK before the connection is given up


class MqttSink:
    def __init__(
        self,
        config: MqttConfig,
        metrics: Metrics,
        worker: int | None = None,
        on_acked: Callable[[Message, float], None] | None = None,
    ) -> None:
        """``worker``: one of several worker processes. The service's ``{prefix}/status`` is then
        the parent's; this client's ``online``/``offline`` (not retained) go to
        ``{prefix}/workers/{worker}/status``. ``on_acked(message, seconds from capture)``: a
        frame's message was acknowledged."""
        self.config = config
        self._metrics = metrics
        self.prefix = f"{config.topic_prefix}/{config.instance}"
        # The service's status (retained; the parent's in a worker service): what Home Assistant's
        # entities watch, so they stay available across a Home Assistant restart.
        self.service_status_topic = f"{self.prefix}/status"
        self.status_topic = self.service_status_topic if worker is None else f"{self.prefix}/workers/{worker}/status"
        self._retain_status = worker is None
        self._keys = itertools.count(1)
        self.outbox = Outbox(config, metrics)
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._state = Connection.STARTING
        self.last_error: str | None = None  # why it is not UP (the refusal, when REFUSED)
        # Waiters on the state (the state itself is _state): UP now; the first attempt ended.
        self._up = asyncio.Event()
        self._attempted = asyncio.Event()
        # Set by the connection's watchers (a dropped connection, a missing PUBACK); the pump raises it.
        self._lost: Exception | None = None
        self.protocol = aiomqtt.ProtocolVersion.V5  # MQTT 5 first, 3.1.1 if the broker refuses it
        self._on_acked = on_acked
        self.close_timeout = 10.0  # what ``async with`` allows the final flush
        self._progress_at = time.monotonic()  # connected, or the broker acknowledged a message
        self._subscriptions: list[str] = []
        self._on_message: Callable[[str, bytes], None] | None = None
        # Retained topics published for each source: cleared when the source is removed for good.
        self._retained = RetainedTopics(self.prefix)

    def subscribe(self, topics: list[str], on_message: Callable[[str, bytes], None]) -> None:
        """Subscribe (QoS 1) on every connection; ``on_message(topic, payload)`` must not raise."""
        self._subscriptions = list(topics)
        self._on_message = on_message

    @property
    def buffered(self) -> int:
        return self.outbox.buffered

    @property
    def state(self) -> Connection:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is Connection.UP

    async def until_connected(self) -> None:
        await self._up.wait()

    @property
    def counts(self) -> Counter[str]:
        """published / dropped_<reason>, since start."""
        return self.outbox.counts

    def status(self) -> SinkStatus:
        return SinkStatus(
            connected=self.connected,
            last_error=self.last_error,
            buffered=self.outbox.buffered,
            capacity=self.config.buffer,
            disk_error=self.outbox.disk_error,
            counts=dict(self.counts),
            waiting_for=(time.monotonic() - self._progress_at if self.connected and self.outbox.buffered else 0.0),
        )

    def topic(self, source: str, kind: str) -> str:
        return f"{self.prefix}/{source}/{kind}"

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int | None = None,
        retain: bool = False,
        source: str | None = None,
        captured: float = 0.0,
    ) -> bool:
        """Queue a message; never blocks, never raises. Over ``mqtt.buffer`` the oldest is dropped.
        False: no broker would take it (a wildcard or an oversized topic or payload); dropped and
        counted now, so a caller never announces what will not be published."""
        data = payload.encode() if isinstance(payload, str) else payload
        if "+" in topic or "#" in topic or len(data) > MAX_PAYLOAD or (len(topic) > 16383 and too_long(topic)):
            self.outbox.dropped("rejected")
            log.error("mqtt_rejected", topic=topic[:120], bytes=len(data), error="not a valid MQTT topic or payload")
            return False
        if retain:
            self._retained.published(topic, bool(data))
        message = Message(
            topic, data, self.config.qos if qos is None else qos, retain, source, captured, next(self._keys)
        )
        self.outbox.add(message, connected=self.connected)
        self._wake.set()
        return True

    def owns(self, source: str, topic: str) -> None:
        """A retained topic outside ``{prefix}/{source}/`` that belongs to the source (its Home
        Assistant discovery configs): cleared with the source's own."""
        self._retained.own(source, topic)

    def forget(self, source: str) -> int:
        """The source is gone for good: every retained message published for it is cleared (an
        empty retained payload), so neither a subscriber nor Home Assistant keeps a ghost."""
        topics = self._retained.take(source)
        for topic in topics:
            self.publish(topic, b"", qos=1, retain=True)
        return len(topics)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-sink")

    async def first_attempt(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout``) for the first connection attempt. Refused credentials or a
        bad certificate will not fix themselves: :class:`MqttUnavailable`. A broker that is merely
        down is retried with backoff while messages wait in the buffer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), timeout)
        if self.refused:
            raise MqttUnavailable(self.last_error or "refused")

    @property
    def refused(self) -> bool:
        return self._state is Connection.REFUSED

    async def __aenter__(self) -> MqttSink:
        self.start()
        try:
            await self.first_attempt()
        except MqttUnavailable:
            await self.close(1.0)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(self.close_timeout)

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def close(self, timeout: float) -> None:
        """Flush (bounded by ``timeout``), publish ``offline``, disconnect; keep the rest on disk."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        flushed = False
        try:
            flushed = await end_within(self._task, timeout)
        except Exception as exc:  # the pump cannot die (see _run), but a shutdown must not either
            log.error("mqtt_sink_failed", error=repr(exc))
        self.outbox.close(reason=self.last_error or "timeout", requeue=not flushed)

    def _client(self) -> aiomqtt.Client:
        return make_client(
            self.config, self.protocol, self.status_topic, retain_status=self._retain_status, inflight=MAX_INFLIGHT
        )

    async def _run(self) -> None:
        """Connect, pump, reconnect with backoff: forever, whatever fails, until close()."""
        backoff = Backoff(0.5, 30.0)
        while True:
            connected_at: float | None = None
            try:
                async with self._client() as client:
                    # Connected means the broker acknowledged 'online': a server that accepts the
                    # connection and then drops or ignores what it gets is not a broker to count on.
                    await client.publish(
                        self.status_topic, b"online", qos=1, retain=self._retain_status, timeout=ACK_TIMEOUT
                    )
                    for topic in self._subscriptions:
                        await client.subscribe(topic, qos=1, timeout=ACK_TIMEOUT)
                    self._on_connected()
                    connected_at = time.monotonic()
                    await self._pump(client)
                    await client.publish(
                        self.status_topic, b"offline", qos=1, retain=self._retain_status, timeout=ACK_TIMEOUT
                    )
                    log.info("mqtt_closed", host=self.config.host, port=self.config.port)
                    self._set_state(Connection.CLOSED)
                    return
            except (aiomqtt.MqttError, OSError, ssl.SSLError, TimeoutError) as exc:
                if self.protocol == aiomqtt.ProtocolVersion.V5 and refused_protocol(exc):
                    # An MQTT 3.1.1 broker refuses the 5 handshake: speak 3.1.1 from now on.
                    log.info("mqtt_protocol_fallback", host=self.config.host, error=str(exc), protocol="3.1.1")
                    self.protocol = aiomqtt.ProtocolVersion.V311
                    continue
                refusal = describe_refusal(exc)
                if refusal is not None and self._state in (Connection.STARTING, Connection.UNREACHABLE):
                    self.last_error = refusal
                    log.error("mqtt_refused", host=self.config.host, port=self.config.port, error=refusal)
                    self.outbox.requeue()
                    self._set_state(Connection.REFUSED)
                    return
                self._on_lost(exc)
            except Exception as exc:  # a bug or an unforeseen error: say so, keep the sink alive
                log.exception("mqtt_sink_error", error=repr(exc))
                self._on_lost(exc)
            # Only a connection that stayed up a while proves the broker is back; one that is
            # accepted and dropped at once must not reset the backoff (it would hammer it).
            if connected_at is not None and time.monotonic() - connected_at >= HEALTHY_CONNECTION:
                backoff.reset()
            if self._closing and not self.buffered:
                return  # closing with nothing to flush; otherwise keep trying until close() times out
            await asyncio.sleep(backoff.next_delay())

    def _on_connected(self) -> None:
        self._progress_at = time.monotonic()
        self._lost = None
        self.last_error = None
        self._set_state(Connection.UP)
        log.info(
            "mqtt_connected",
            host=self.config.host,
            port=self.config.port,
            buffered=self.outbox.buffered,
            protocol="5" if self.protocol == aiomqtt.ProtocolVersion.V5 else "3.1.1",
        )

    def _on_lost(self, exc: Exception) -> None:
        self.outbox.requeue()
        before = self._state
        self.last_error = describe_refusal(exc) or str(exc)
        self._set_state(Connection.DOWN if before in (Connection.UP, Connection.DOWN) else Connection.UNREACHABLE)
        if before in (Connection.UP, Connection.STARTING):  # once per outage, not per retry
            log.warning(
                "mqtt_disconnected",
                host=self.config.host,
                port=self.config.port,
                error=self.last_error,
                buffered=self.outbox.buffered,
            )

    def _set_state(self, state: Connection) -> None:
        self._state = state
        if state is Connection.UP:
            self._up.set()
        else:
            self._up.clear()
        if state is not Connection.STARTING:
            self._attempted.set()
        self._metrics.mqtt_connected.set(1 if state is Connection.UP else 0)

    async def _pump(self, client: aiomqtt.Client) -> None:
        wire = Wire(client, self._acked, self._connection_lost)
        watcher = asyncio.create_task(watch_messages(client, self._on_message, self._connection_lost))
        acks = asyncio.create_task(watch_acks(self.outbox.overdue, ACK_TIMEOUT, self._connection_lost))
        outbox = self.outbox
        try:
            while True:
                if self._lost is not None:
                    raise aiomqtt.MqttError(str(self._lost))
                now = time.monotonic()
                with wire.batch():
                    while outbox.inflight < MAX_INFLIGHT and (message := outbox.take(now)) is not None:
                        try:
                            wire.send(message)
                        except aiomqtt.MqttError:
                            self._metrics.mqtt_published.labels("error").inc()
                            raise
                        except (ValueError, TypeError) as exc:
                            self._rejected(message, exc)
                if self._closing and not self.buffered:
                    return
                self._wake.clear()
                await self._wake.wait()
        finally:
            wire.close()
            watcher.cancel()
            acks.cancel()

    def _connection_lost(self, error: Exception) -> None:
        self._lost = error
        self._wake.set()

    def _rejected(self, message: Message, exc: Exception) -> None:
        """The client refuses this message itself (topic too long, payload too large): it will
        refuse it every time, so it is dropped and counted, never retried."""
        self.outbox.rejected(message)
        log.error("mqtt_rejected", topic=message.topic[:120], bytes=len(message.payload), error=str(exc))

    def _acked(self, message: Message, refusal: str | None) -> None:
        """The broker has it, or refused it (``refusal``: MQTT 5's reason), on the loop's thread."""
        if not (self.outbox.acked(message) if refusal is None else self.outbox.refused(message, refusal)):
            return  # the connection was given up meanwhile; it will be sent again
        now = time.monotonic()
        self._progress_at = now
        if refusal is None:
            self._metrics.published_ok.inc()
            if message.source is not None:
                seconds = now - message.captured
                self._metrics.end_to_end_for(message.source).observe(seconds)
                if self._on_acked is not None:
                    self._on_acked(message, seconds)
        # The pump can move only at the cap, when this stored row held newer ones back, or closing.
        if self._closing or message.row or self.outbox.inflight >= MAX_INFLIGHT - 1:
            self._wake.set()
