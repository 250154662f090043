"""What a stage may do with the broker: a small protocol, so no stage knows the MQTT sink
(``sinks/mqtt.py``, which the composition root builds and hands over as a :class:`Publisher`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Publisher(Protocol):
    """Publishing under ``{prefix}`` = ``{topic_prefix}/{instance}``. Never blocks, never raises:
    messages wait in the sink's buffer while the broker is away."""

    prefix: str
    service_status_topic: str  # retained online/offline of the whole service

    def topic(self, source: str, kind: str) -> str:
        """``{prefix}/{source}/{kind}``."""
        ...

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
        """Queue a message; False when no broker would take it (dropped and counted now)."""
        ...

    def owns(self, source: str, topic: str) -> None:
        """A retained topic outside ``{prefix}/{source}/`` that belongs to the source: cleared
        with the source's own when it is removed for good."""
        ...

    def forget(self, source: str) -> int:
        """The source is gone for good: its retained messages are cleared."""
        ...


@dataclass(frozen=True)
class SinkStatus:
    """The broker connection as ``/readyz`` and the stats see it."""

    connected: bool  # the broker acknowledged 'online' on the current connection
    last_error: str | None
    buffered: int
    capacity: int
    disk_error: str | None  # the disk buffer refuses writes (messages wait in memory)
    counts: dict[str, int]  # published / dropped_<reason>
    # Connected with messages waiting, seconds since the broker last acknowledged one (else 0):
    # readiness from progress, not only from flags.
    waiting_for: float = 0.0
