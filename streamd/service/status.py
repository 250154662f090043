"""The parent's own MQTT connection: ``{prefix}/{instance}/status`` for the service as a whole
(retained ``online`` while it runs; ``offline`` when it stops, or from the broker as the last
will when the parent dies) and the stats message merged from every worker.

Workers publish everything else themselves, each with its own client id and buffer file."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import aiomqtt

from streamd.config import MqttConfig
from streamd.logging import get_logger
from streamd.runtime.backoff import Backoff
from streamd.runtime.supervisor import end_within
from streamd.sinks.connect import make_client
from streamd.sinks.refusal import describe_refusal, refused_protocol

log = get_logger(__name__)

ACK_TIMEOUT = 10.0


class ServiceStatus:
    def __init__(self, config: MqttConfig) -> None:
        self._config = config
        self.prefix = f"{config.topic_prefix}/{config.instance}"
        self.topic = f"{self.prefix}/status"
        self._stats: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.last_error: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="service-status")

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def publish_stats(self, payload: bytes) -> None:
        """Latest wins: a broker that is away gets the newest few, not a backlog (QoS 0, as before)."""
        if self._stats.full():
            self._stats.get_nowait()
        self._stats.put_nowait(payload)

    async def close(self, timeout: float) -> None:
        """``offline`` (retained), then disconnect; bounded by ``timeout``."""
        self._closing.set()
        if self._task is not None:
            await end_within(self._task, timeout)

    async def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        protocol = aiomqtt.ProtocolVersion.V5
        while not self._closing.is_set():
            try:
                client = make_client(self._config.model_copy(update={"qos": 0}), protocol, self.topic)
                async with client:
                    await client.publish(self.topic, b"online", qos=1, retain=True, timeout=ACK_TIMEOUT)
                    self.connected, self.last_error = True, None
                    backoff.reset()
                    log.info("service_status_online", topic=self.topic)
                    await self._pump(client)
                    await client.publish(self.topic, b"offline", qos=1, retain=True, timeout=ACK_TIMEOUT)
                    self.connected = False
                    return
            except (aiomqtt.MqttError, OSError, ssl.SSLError, TimeoutError) as exc:
                if protocol == aiomqtt.ProtocolVersion.V5 and refused_protocol(exc):
                    protocol = aiomqtt.ProtocolVersion.V311
                    continue
                if self.connected or self.last_error is None:
                    log.warning("service_status_disconnected", error=describe_refusal(exc) or str(exc))
                self.connected, self.last_error = False, describe_refusal(exc) or str(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), backoff.next_delay())

    async def _pump(self, client: aiomqtt.Client) -> None:
        closing = asyncio.create_task(self._closing.wait())
        try:
            while not self._closing.is_set():
                getter = asyncio.create_task(self._stats.get())
                done, _ = await asyncio.wait({getter, closing}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                await client.publish(f"{self.prefix}/stats", getter.result(), qos=0, timeout=ACK_TIMEOUT)
        finally:
            closing.cancel()
