"""Where messages wait for the broker: bounded memory while connected, a SQLite file (disk.py's
DiskBuffer) while it is away, in order, and memory again when the disk refuses writes.

The sink speaks to it in verbs: ``add`` a message, ``take`` the next one to send (it is then in
flight), and for each taken one ``acked``, ``refused`` (by the broker) or ``rejected`` (by the
client); ``requeue`` when the connection is lost (what was in flight is sent again, first),
``close`` at exit. Its state is its own."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from streamd.config import ConfigError, MqttConfig
from streamd.config_objects import state_directory
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.sinks.buffer import BufferUnavailable, DiskBuffer

log = get_logger(__name__)

DISK_BATCH = 128
DISK_RETRY = 5.0  # seconds between attempts to write to a buffer that refused a write
MAX_REFUSALS_LOGGED = 1000  # distinct (topic, reason) refusals logged; the counter counts them all


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
    return state_directory()


def buffer_path(config: MqttConfig) -> Path:
    directory = Path(config.buffer_dir).expanduser() if config.buffer_dir else default_buffer_dir()
    return directory / f"mqtt-{config.identity.removeprefix('streamd-')}.sqlite3"


class Outbox:
    def __init__(self, config: MqttConfig, metrics: Metrics) -> None:
        self.config = config
        self._metrics = metrics
        self.counts: Counter[str] = Counter()  # published / dropped_<reason>: the shutdown log reports them
        self.memory: deque[Message] = deque()
        self._unacked: dict[int, Message] = {}  # in flight, by key
        self.disk: DiskBuffer | None = None
        if config.buffer_dir != "":
            try:
                self.disk = DiskBuffer(buffer_path(config), config.buffer)
            except BufferUnavailable as exc:
                raise ConfigError("mqtt.buffer_dir", str(exc)) from None
            if self.disk.count:
                log.info("mqtt_buffer_recovered", messages=self.disk.count, path=str(self.disk.path))
        # Set while the disk buffer refuses writes (full disk, I/O error): messages wait in memory.
        self.disk_error: str | None = None
        self._retry_at = 0.0
        self._cursor = 0
        self._batch: deque[Message] = deque()
        # Rows the broker acknowledged that the disk would not let us delete (full disk): they
        # are never sent again, and deleted once the disk takes writes again.
        self._acked_rows: set[int] = set()
        self._refusals: set[tuple[str, str]] = set()  # (topic, reason) already logged
        # Read when scraped, not set at every change (several times a frame).
        metrics.mqtt_buffered.set_function(lambda: self.buffered)

    def add(self, message: Message, connected: bool) -> None:
        """Never blocks, never raises. Over ``mqtt.buffer`` the oldest is dropped (counted)."""
        if self.disk_error is not None and time.monotonic() >= self._retry_at:
            self._retry_disk()
        # Offline, or still flushing older stored messages: to disk, in order. Not while memory
        # holds messages that fell back there (the disk refused them): they are older.
        to_disk = self.disk is not None and (not connected or self.stored) and not self.memory
        if not (to_disk and self._store(message)):
            self._remember(message)

    @property
    def stored(self) -> int:
        """Messages waiting on disk (not counting acknowledged rows left there by a failed delete)."""
        return self.disk.count - len(self._acked_rows) if self.disk is not None else 0

    @property
    def buffered(self) -> int:
        return len(self.memory) + len(self._unacked) + self.stored

    def _remember(self, message: Message) -> None:
        if len(self.memory) >= self.config.buffer:
            self.memory.popleft()
            self.dropped("buffer_full")
        self.memory.append(message)

    def dropped(self, reason: str, count: int = 1) -> None:
        self._metrics.mqtt_dropped.labels(reason).inc(count)
        self.counts[f"dropped_{reason}"] += count

    def _store(self, message: Message) -> bool:
        """To the disk buffer; False (and the message stays with the caller) if it refused."""
        assert self.disk is not None
        if self.disk_error is not None and time.monotonic() < self._retry_at:
            return False
        try:
            dropped = self.disk.append(message.topic, message.payload, message.qos, message.retain)
        except (sqlite3.Error, OSError) as exc:
            self._disk_failed(exc)
            return False
        if self.disk_error is not None:
            self._disk_recovered()
        if dropped:
            self.dropped("buffer_full", dropped)
        return True

    def _retry_disk(self) -> None:
        """While connected nothing may need the disk for a long time: probe it, so /readyz
        says it is healthy again as soon as it is."""
        assert self.disk is not None
        try:
            self.disk.check_writable()
        except (sqlite3.Error, OSError) as exc:
            self._disk_failed(exc)
            return
        self._disk_recovered()

    def _disk_recovered(self) -> None:
        assert self.disk is not None
        log.info("buffer_writable", path=str(self.disk.path), after=self.disk_error, acked_rows=len(self._acked_rows))
        self.disk_error = None
        self._metrics.mqtt_buffer_unwritable.set(0)
        for row in sorted(self._acked_rows):
            try:
                self.disk.delete(row)
            except (sqlite3.Error, OSError) as exc:
                self._disk_failed(exc)
                return
            self._acked_rows.discard(row)

    def _disk_failed(self, exc: BaseException) -> None:
        """Once per episode: say so, with the path and errno; retry the disk every DISK_RETRY s."""
        self._retry_at = time.monotonic() + DISK_RETRY
        if self.disk_error is not None:
            return
        errno = getattr(exc, "errno", None) or getattr(exc, "sqlite_errorname", None)
        self.disk_error = f"{exc}" + (f" ({errno})" if errno else "")
        self._metrics.mqtt_buffer_unwritable.set(1)
        log.error(
            "buffer_unwritable",
            path=str(self.disk.path) if self.disk else None,
            error=str(exc),
            errno=errno,
            fallback="memory",
            capacity=self.config.buffer,
        )

    @property
    def inflight(self) -> int:
        return len(self._unacked)

    def take(self, now: float) -> Message | None:
        """The next message to send (stored ones first: they are older); it is in flight until
        :meth:`acked`, :meth:`rejected` or :meth:`requeue`."""
        message = self._next()
        if message is not None:
            message.sent = now
            self._unacked[message.key] = message
        return message

    def acked(self, message: Message) -> bool:
        """The broker has it: off the disk, counted. False if it was no longer in flight (the
        connection was given up meanwhile: it is queued again and will be sent again)."""
        if self._unacked.pop(message.key, None) is None:
            return False
        self._forget_row(message)
        self.counts["published"] += 1
        return True

    def refused(self, message: Message, reason: str) -> bool:
        """The broker answered with a failure (MQTT 5; 3.1.1 brokers drop such a message without
        a word): not authorised by its ACL, say. It would answer so again: dropped and counted,
        never retried; the first refusal of each topic and reason is logged. False if it was no
        longer in flight (as ``acked``)."""
        if self._unacked.pop(message.key, None) is None:
            return False
        self._forget_row(message)
        self.dropped("refused")
        if (message.topic, reason) not in self._refusals and len(self._refusals) < MAX_REFUSALS_LOGGED:
            self._refusals.add((message.topic, reason))
            log.error("mqtt_publish_refused", topic=message.topic[:120], reason=reason, hint="check the broker's ACL")
        return True

    def rejected(self, message: Message) -> None:
        """No broker would take it (the client refused it): dropped and counted, never retried."""
        self._unacked.pop(message.key, None)
        self._forget_row(message)
        self.dropped("rejected")

    def overdue(self, now: float, timeout: float) -> bool:
        """A message in flight has waited longer than ``timeout`` for its acknowledgement."""
        return any(m.sent and now - m.sent > timeout for m in self._unacked.values())

    def requeue(self) -> None:
        """Connection gone: unacknowledged and pending memory messages go to disk, in order
        (or stay in memory, in order, where the disk refuses them)."""
        pending = [m for m in self._unacked.values() if m.row == 0] + list(self.memory)
        self.memory.clear()
        self._unacked.clear()
        self._batch.clear()
        self._cursor = 0  # unacknowledged stored rows are still on disk: send them again
        for index, message in enumerate(pending):
            if self.disk is None or not self._store(message):
                for rest in pending[index:]:
                    self._remember(rest)
                break

    def _next(self) -> Message | None:
        """Stored messages first (they are older), then memory."""
        if self.stored > 0:
            if not self._batch:
                try:
                    stored_batch = self.disk.after(self._cursor, DISK_BATCH) if self.disk is not None else []
                except (sqlite3.Error, OSError) as exc:
                    self._disk_failed(exc)
                    return self.memory.popleft() if self.memory else None
                for stored in stored_batch:
                    self._cursor = stored.row
                    if stored.row in self._acked_rows:
                        continue
                    self._batch.append(
                        Message(
                            stored.topic, stored.payload, stored.qos, stored.retain, key=-stored.row, row=stored.row
                        )
                    )
                if not self._batch and len(stored_batch) == DISK_BATCH:
                    return self._next()  # a whole batch of rows already acknowledged: the next one
            if self._batch:
                return self._batch.popleft()
            if any(m.row for m in self._unacked.values()):
                return None  # every stored row is in flight: newer messages wait for them
        return self.memory.popleft() if self.memory else None

    def _forget_row(self, message: Message) -> None:
        """The broker has it: off the disk, or (the disk refuses the delete) remembered as sent."""
        if message.row and self.disk is not None:
            try:
                self.disk.delete(message.row)
            except (sqlite3.Error, OSError) as exc:
                self._acked_rows.add(message.row)
                self._disk_failed(exc)

    def _last_delete_attempt(self) -> None:
        """At close: one last try to delete acknowledged rows, so the next start does not resend them."""
        with contextlib.suppress(sqlite3.Error, OSError):
            self._retry_disk()

    def close(self, reason: str, *, requeue: bool = False) -> None:
        """At shutdown: what the broker did not take stays on disk for the next start; what
        only memory held (no disk buffer, or one that refused writes) is lost, and counted.
        ``requeue``: the last flush did not finish: what is in flight and in memory first goes
        to disk (one more try, even if the disk refused writes a moment ago)."""
        if requeue:
            self._retry_at = 0.0
            self.requeue()
        if self.disk is not None:
            if self._acked_rows:
                self._last_delete_attempt()
            if self.stored:
                log.warning("mqtt_buffer_persisted", messages=self.stored, path=str(self.disk.path), reason=reason)
            self.disk.close()
        if self.memory:
            self.dropped("shutdown", len(self.memory))
            log.warning("mqtt_unflushed", messages=len(self.memory), reason=reason)
