"""MQTT sink (aiomqtt): the pipeline hands messages over without ever waiting on the broker.

``publish()`` only appends to a buffer; a pump task sends from it with many publishes in
flight. While connected and caught up, the buffer is a bounded deque in memory. When the
connection drops, what was not acknowledged and everything after it goes to a bounded SQLite
file (``mqtt.buffer_dir``), which survives a crash or ``kill -9`` and is flushed, in order,
before anything newer once the broker is back. When full, the oldest message is dropped and
counted (``streamd_mqtt_dropped_total{reason="buffer_full"}``); memory never grows past it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
import sqlite3
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttCodeError, MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from streamd.backoff import Backoff
from streamd.config import ConfigError, MqttConfig
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.sinks.buffer import BufferUnavailable, DiskBuffer

log = get_logger("streamd.mqtt")

SESSION_EXPIRY = 24 * 3600  # seconds the broker keeps our session (MQTT 5) after a disconnect
MAX_INFLIGHT = 256  # publishes awaiting their acknowledgement at once
DISK_BATCH = 128
DISK_RETRY = 5.0  # seconds between attempts to write to a buffer that refused a write
HEALTHY_CONNECTION = 10.0  # a connection that lived this long resets the reconnect backoff
ACK_TIMEOUT = 10.0  # seconds a publish may wait for its PUBACK before the connection is given up
# aiomqtt warns on every publish past 10 in flight; we run many on purpose, and report
# connection problems ourselves through structlog.
_AIOMQTT_LOG = logging.getLogger("streamd.aiomqtt")
_AIOMQTT_LOG.setLevel(logging.ERROR)


class MqttUnavailable(Exception):
    """The broker refused us at start (credentials, TLS): exit 69, it will not fix itself."""


@dataclass(frozen=True)
class SinkStatus:
    connected: bool  # the broker acknowledged 'online' on the current connection
    last_error: str | None
    buffered: int
    capacity: int
    disk_error: str | None  # the disk buffer refuses writes (messages wait in memory)
    counts: dict[str, int]  # published / dropped_<reason>


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    source: str | None = None  # for the end-to-end histogram
    captured: float = 0.0  # monotonic capture time
    key: int = 0  # unique while unacknowledged
    row: int = 0  # its row in the disk buffer, 0 when it lives in memory
    sent: float = 0.0  # monotonic time of the (last) publish attempt


def default_buffer_dir() -> Path:
    base = os.environ.get("STATE_DIRECTORY") or os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    return Path(base.split(":")[0]) / ("" if os.environ.get("STATE_DIRECTORY") else "streamd")


def buffer_path(config: MqttConfig) -> Path:
    directory = Path(config.buffer_dir).expanduser() if config.buffer_dir else default_buffer_dir()
    return directory / f"mqtt-{config.instance}.sqlite3"


# CONNACK reason codes that retrying will not fix: 3.1.1 (4 bad user name or password, 5 not
# authorised) and 5 (134, 135, 138 banned, 140 bad authentication method).
REFUSED_CODES = frozenset({4, 5, 134, 135, 138, 140})
PROTOCOL_CODES = frozenset({1, 132})  # unacceptable / unsupported protocol version


def connack_code(exc: BaseException) -> int | None:
    if not isinstance(exc, MqttCodeError):
        return None
    rc = exc.rc
    return int(rc.value) if isinstance(rc, ReasonCode) else rc


def describe_refusal(exc: BaseException) -> str | None:
    """A plain sentence for errors that retrying will not fix, None for the ones it may."""
    code = connack_code(exc) if isinstance(exc, MqttConnectError) else None
    if code in REFUSED_CODES:
        reason = re.sub(r"^\[code:\d+\]\s*", "", str(exc))
        return f"the broker refused the connection: {reason} (check mqtt.username and mqtt.password_file)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate check failed: {exc} (check mqtt.tls.ca, or the broker's certificate)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc} (check mqtt.tls.* and that the port speaks TLS)"
    text = str(exc)
    # aiomqtt wraps connection errors in MqttError with the original's text only.
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS certificate check failed: {text} (check mqtt.tls.ca, or the broker's certificate)"
    if "SSL" in text and isinstance(exc, aiomqtt.MqttError):
        return f"TLS handshake failed: {text} (check mqtt.tls.* and that the port speaks TLS)"
    return None


def _refused_protocol(exc: BaseException) -> bool:
    """The broker answered CONNECT with 'unsupported protocol version' (an MQTT 3.1.1 broker)."""
    return isinstance(exc, MqttConnectError) and connack_code(exc) in PROTOCOL_CODES


class MqttSink:
    def __init__(self, config: MqttConfig, metrics: Metrics) -> None:
        self.config = config
        self._metrics = metrics
        self.prefix = f"{config.topic_prefix}/{config.instance}"
        self.status_topic = f"{self.prefix}/status"
        self._memory: deque[Message] = deque()
        self._unacked: dict[int, Message] = {}
        self._keys = itertools.count(1)
        self._disk: DiskBuffer | None = None
        if config.buffer_dir != "":
            try:
                self._disk = DiskBuffer(buffer_path(config), config.buffer)
            except BufferUnavailable as exc:
                raise ConfigError("mqtt.buffer_dir", str(exc)) from None
            if self._disk.count:
                log.info("mqtt_buffer_recovered", messages=self._disk.count, path=str(self._disk.path))
        # Set while the disk buffer refuses writes (full disk, I/O error): messages wait in memory.
        self.disk_error: str | None = None
        self._disk_retry_at = 0.0
        self._disk_cursor = 0
        self._disk_batch: deque[Message] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._conn_error: Exception | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.first_attempt_done = asyncio.Event()
        self.ever_connected = False
        self.fatal: str | None = None
        self.counts: Counter[str] = Counter()
        self.connections = 0  # times the broker acknowledged 'online' (tests, stats)
        self.protocol = (
            aiomqtt.ProtocolVersion.V5
        )  # MQTT 5 first, 3.1.1 if the broker refuses it  # published / dropped_*: the shutdown log reports them
        self.last_error: str | None = None
        # Called with (message, seconds from capture) when a frame's message is acknowledged.
        self.on_acked: Callable[[Message, float], None] | None = None

    def status(self) -> SinkStatus:
        return SinkStatus(
            connected=self.connected.is_set(),
            last_error=self.last_error,
            buffered=self.buffered,
            capacity=self.config.buffer,
            disk_error=self.disk_error,
            counts=dict(self.counts),
        )

    def topic(self, source: str, kind: str) -> str:
        return f"{self.prefix}/{source}/{kind}"

    @property
    def buffered(self) -> int:
        return len(self._memory) + len(self._unacked) + (self._disk.count if self._disk else 0)

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
        """Queue a message; never blocks, never raises. Over ``mqtt.buffer`` the oldest is dropped."""
        data = payload.encode() if isinstance(payload, str) else payload
        if self.disk_error is not None and time.monotonic() >= self._disk_retry_at:
            self._retry_disk()
        message = Message(
            topic, data, self.config.qos if qos is None else qos, retain, source, captured, next(self._keys)
        )
        # Offline, or still flushing older stored messages: to disk, in order. Not while memory
        # holds messages that fell back there (the disk refused them): they are older.
        to_disk = self._disk is not None and (not self.connected.is_set() or self._disk.count) and not self._memory
        if to_disk and self._store(message):
            self._wake.set()
            return
        self._remember(message)
        self._wake.set()

    def _remember(self, message: Message, *, front: bool = False) -> None:
        if len(self._memory) >= self.config.buffer:
            self._memory.popleft()
            self._dropped("buffer_full")
        if front:
            self._memory.appendleft(message)
        else:
            self._memory.append(message)
        self._metrics.mqtt_buffered.set(self.buffered)

    def _dropped(self, reason: str, count: int = 1) -> None:
        self._metrics.mqtt_dropped.labels(reason).inc(count)
        self.counts[f"dropped_{reason}"] += count

    def _store(self, message: Message) -> bool:
        """To the disk buffer; False (and the message stays with the caller) if it refused."""
        assert self._disk is not None
        if self.disk_error is not None and time.monotonic() < self._disk_retry_at:
            return False
        try:
            dropped = self._disk.append(message.topic, message.payload, message.qos, message.retain)
        except (sqlite3.Error, OSError) as exc:
            self._disk_failed(exc)
            return False
        if self.disk_error is not None:
            self._disk_recovered()
        if dropped:
            self._dropped("buffer_full", dropped)
        self._metrics.mqtt_buffered.set(self.buffered)
        return True

    def _retry_disk(self) -> None:
        """While connected nothing may need the disk for a long time: probe it, so /readyz
        says it is healthy again as soon as it is."""
        assert self._disk is not None
        try:
            self._disk.check_writable()
        except (sqlite3.Error, OSError) as exc:
            self._disk_failed(exc)
            return
        self._disk_recovered()

    def _disk_recovered(self) -> None:
        assert self._disk is not None
        log.info("buffer_writable", path=str(self._disk.path), after=self.disk_error)
        self.disk_error = None
        self._metrics.mqtt_buffer_unwritable.set(0)

    def _disk_failed(self, exc: BaseException) -> None:
        """Once per episode: say so, with the path and errno; retry the disk every DISK_RETRY s."""
        self._disk_retry_at = time.monotonic() + DISK_RETRY
        if self.disk_error is not None:
            return
        errno = getattr(exc, "errno", None) or getattr(exc, "sqlite_errorname", None)
        self.disk_error = f"{exc}" + (f" ({errno})" if errno else "")
        self._metrics.mqtt_buffer_unwritable.set(1)
        log.error(
            "buffer_unwritable",
            path=str(self._disk.path) if self._disk else None,
            error=str(exc),
            errno=errno,
            fallback="memory",
            capacity=self.config.buffer,
        )

    def _spill(self) -> None:
        """Connection gone: unacknowledged and pending memory messages go to disk, in order
        (or stay in memory, in order, where the disk refuses them)."""
        pending = [m for m in self._unacked.values() if m.row == 0] + list(self._memory)
        self._memory.clear()
        self._unacked.clear()
        self._disk_batch.clear()
        self._disk_cursor = 0  # unacknowledged stored rows are still on disk: send them again
        for index, message in enumerate(pending):
            if self._disk is None or not self._store(message):
                for rest in pending[index:]:
                    self._remember(rest)
                break
        self._metrics.mqtt_buffered.set(self.buffered)

    def _next(self) -> Message | None:
        """Stored messages first (they are older), then memory."""
        if self._disk is not None and self._disk.count:
            if not self._disk_batch:
                try:
                    stored_batch = self._disk.after(self._disk_cursor, DISK_BATCH)
                except (sqlite3.Error, OSError) as exc:
                    self._disk_failed(exc)
                    return self._memory.popleft() if self._memory else None
                for stored in stored_batch:
                    self._disk_batch.append(
                        Message(
                            stored.topic, stored.payload, stored.qos, stored.retain, key=-stored.row, row=stored.row
                        )
                    )
                    self._disk_cursor = stored.row
            if self._disk_batch:
                return self._disk_batch.popleft()
            return None  # every stored row is in flight: newer messages wait for them
        return self._memory.popleft() if self._memory else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-sink")

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def close(self, timeout: float) -> None:
        """Flush (bounded by ``timeout``), publish ``offline``, disconnect; keep the rest on disk."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            self._disk_retry_at = 0.0  # one last try to keep them on disk
            self._spill()
        except Exception as exc:  # the pump cannot die (see _run), but a shutdown must not either
            log.error("mqtt_sink_failed", error=repr(exc))
            self._spill()
        reason = self.fatal or self.last_error or "timeout"
        if self._disk is not None:
            if self._disk.count:
                log.warning(
                    "mqtt_buffer_persisted", messages=self._disk.count, path=str(self._disk.path), reason=reason
                )
            self._disk.close()
        if self._memory:  # no disk buffer, or one that refused them
            self._dropped("shutdown", len(self._memory))
            log.warning("mqtt_unflushed", messages=len(self._memory), reason=reason)

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        password = Path(cfg.password_file).read_text().strip() if cfg.password_file else None
        tls_context = None
        if cfg.tls.ca or cfg.tls.cert:
            tls_context = ssl.create_default_context(cafile=cfg.tls.ca or None)
            if cfg.tls.cert:
                tls_context.load_cert_chain(cfg.tls.cert, cfg.tls.key or None)
        session: dict[str, Any]
        if self.protocol == aiomqtt.ProtocolVersion.V5:
            # MQTT 5: a persistent session needs clean_start off *and* an expiry interval.
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY if cfg.qos else 0
            session = {"clean_start": cfg.qos == 0, "properties": properties}
        else:
            session = {"clean_session": cfg.qos == 0}
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=f"streamd-{cfg.instance}",
            username=cfg.username or None,
            password=password,
            protocol=self.protocol,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            keepalive=cfg.keepalive,
            tls_context=tls_context,
            timeout=10.0,
            logger=_AIOMQTT_LOG,
            **session,
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
                    await client.publish(self.status_topic, b"online", qos=1, retain=True, timeout=ACK_TIMEOUT)
                    self._on_connected()
                    connected_at = time.monotonic()
                    await self._pump(client)
                    await client.publish(self.status_topic, b"offline", qos=1, retain=True, timeout=ACK_TIMEOUT)
                    log.info("mqtt_closed", host=self.config.host, port=self.config.port)
                    self._set_connected(False)
                    return
            except (aiomqtt.MqttError, OSError, ssl.SSLError, TimeoutError) as exc:
                if self.protocol == aiomqtt.ProtocolVersion.V5 and _refused_protocol(exc):
                    # An MQTT 3.1.1 broker refuses the 5 handshake: speak 3.1.1 from now on.
                    log.info("mqtt_protocol_fallback", host=self.config.host, error=str(exc), protocol="3.1.1")
                    self.protocol = aiomqtt.ProtocolVersion.V311
                    continue
                refusal = describe_refusal(exc)
                if refusal is not None and not self.ever_connected:
                    self.fatal = refusal
                    log.error("mqtt_refused", host=self.config.host, port=self.config.port, error=refusal)
                    self._spill()
                    return
                self._on_lost(exc)
            except Exception as exc:  # a bug or an unforeseen error: say so, keep the sink alive
                log.exception("mqtt_sink_error", error=repr(exc))
                self._on_lost(exc)
            finally:
                self.first_attempt_done.set()
            # Only a connection that stayed up a while proves the broker is back; one that is
            # accepted and dropped at once must not reset the backoff (it would hammer it).
            if connected_at is not None and time.monotonic() - connected_at >= HEALTHY_CONNECTION:
                backoff.reset()
            if self._closing and not self.buffered:
                return  # closing with nothing to flush; otherwise keep trying until close() times out
            await asyncio.sleep(backoff.next_delay())

    def _on_connected(self) -> None:
        self._conn_error = None
        self.connections += 1
        self.last_error = None
        self.ever_connected = True
        self._set_connected(True)
        self.first_attempt_done.set()
        log.info(
            "mqtt_connected",
            host=self.config.host,
            port=self.config.port,
            buffered=self.buffered,
            protocol="5" if self.protocol == aiomqtt.ProtocolVersion.V5 else "3.1.1",
        )

    def _on_lost(self, exc: Exception) -> None:
        self._spill()
        was_connected = self.connected.is_set()
        self._set_connected(False)
        self.last_error = describe_refusal(exc) or str(exc)
        if was_connected or not self.first_attempt_done.is_set():
            log.warning(
                "mqtt_disconnected",
                host=self.config.host,
                port=self.config.port,
                error=self.last_error,
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
        acks = asyncio.create_task(self._watch_acks())
        try:
            while True:
                if self._conn_error is not None:
                    raise aiomqtt.MqttError(str(self._conn_error))
                if len(self._unacked) < MAX_INFLIGHT:
                    message = self._next()
                    if message is not None:
                        self._unacked[message.key] = message
                        task = asyncio.create_task(self._send(client, message))
                        sends.add(task)
                        task.add_done_callback(sends.discard)
                        continue
                if self._closing and not self.buffered:
                    return
                self._wake.clear()
                await self._wake.wait()
        finally:
            watcher.cancel()
            acks.cancel()
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

    def _forget_row(self, message: Message) -> None:
        if message.row and self._disk is not None:
            try:
                self._disk.delete(message.row)
            except (sqlite3.Error, OSError) as exc:  # it stays and is sent again: a duplicate, not a loss
                self._disk_failed(exc)

    async def _watch_acks(self) -> None:
        """A broker that takes publishes and never acknowledges them is a broken connection."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if any(m.sent and now - m.sent > ACK_TIMEOUT for m in self._unacked.values()):
                self._conn_error = TimeoutError(f"no acknowledgement from the broker in {ACK_TIMEOUT:g} s")
                self._wake.set()
                return

    async def _send(self, client: aiomqtt.Client, message: Message) -> None:
        message.sent = time.monotonic()
        try:
            # No per-publish timeout: asyncio.wait_for costs a task and a timer per message;
            # _watch_acks checks the oldest unacknowledged message once a second instead.
            await client.publish(
                message.topic, message.payload, qos=message.qos, retain=message.retain, timeout=math.inf
            )
        except aiomqtt.MqttError as exc:
            self._metrics.mqtt_published.labels("error").inc()
            self._conn_error = exc
            self._wake.set()
            return
        except (ValueError, TypeError) as exc:
            # The client refuses this message itself (topic too long, payload too large): it
            # will refuse it every time, so it is dropped and counted, never retried.
            self._unacked.pop(message.key, None)
            self._forget_row(message)
            self._dropped("rejected")
            log.error("mqtt_rejected", topic=message.topic[:120], bytes=len(message.payload), error=str(exc))
            self._wake.set()
            return
        if self._unacked.pop(message.key, None) is None:
            return  # the connection was given up meanwhile; it will be sent again
        self._forget_row(message)
        self._metrics.published_ok.inc()
        self.counts["published"] += 1
        self._metrics.mqtt_buffered.set(self.buffered)
        if message.source is not None:
            seconds = time.monotonic() - message.captured
            self._metrics.end_to_end_for(message.source).observe(seconds)
            if self.on_acked is not None:
                self.on_acked(message, seconds)
        self._wake.set()
