"""The aiomqtt client streamd connects with (identity, credentials, TLS, last will, session), and
the two watchers that tell the sink its connection is gone."""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streamd.config import MqttConfig
from streamd.logging import add_secrets

SESSION_EXPIRY = 24 * 3600  # seconds the broker keeps our session (MQTT 5) after a disconnect
# aiomqtt warns on every publish past 10 in flight; we run many on purpose, and report
# connection problems ourselves through structlog.
_AIOMQTT_LOG = logging.getLogger("streamd.aiomqtt")
# What the broker may send us (MQTT 5 Maximum Packet Size): streamd subscribes only to the control
# topics (ON / OFF), so a larger message is junk; the broker drops it instead of sending it, and a
# 200 MB payload never reaches this process's memory. (MQTT 3.1.1 has no such limit.)
MAX_INCOMING_PACKET = 4096
_AIOMQTT_LOG.setLevel(logging.ERROR)


MAX_TOPIC = 65535  # bytes of UTF-8
MAX_PAYLOAD = 268_435_455  # bytes: MQTT's largest packet


def too_long(topic: str) -> bool:
    return len(topic.encode()) > MAX_TOPIC


class Connection(enum.Enum):
    """The sink's one connection state."""

    STARTING = "starting"  # the first attempt has not ended
    UNREACHABLE = "unreachable"  # never connected yet; retrying with backoff
    UP = "up"  # the broker acknowledged 'online' on this connection
    DOWN = "down"  # was up, lost; retrying with backoff
    REFUSED = "refused"  # credentials or TLS refused before any success: it will not fix itself
    CLOSED = "closed"  # close(): flushed, 'offline' published, disconnected


def make_client(
    cfg: MqttConfig,
    protocol: aiomqtt.ProtocolVersion,
    status_topic: str,
    *,
    retain_status: bool = True,
    inflight: int | None = None,
) -> aiomqtt.Client:
    """A client whose will marks us ``offline``; at QoS >= 1 a persistent session (MQTT 5: clean
    start off *and* an expiry interval; 3.1.1: clean session off)."""
    password = Path(cfg.password_file).read_text().strip() if cfg.password_file else None
    add_secrets([password] if password else [])  # the file may have changed since the config was read
    tls_context = None
    if cfg.tls.ca or cfg.tls.cert:
        tls_context = ssl.create_default_context(cafile=cfg.tls.ca or None)
        if cfg.tls.cert:
            tls_context.load_cert_chain(cfg.tls.cert, cfg.tls.key or None)
    session: dict[str, Any]
    if protocol == aiomqtt.ProtocolVersion.V5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY if cfg.qos else 0
        properties.MaximumPacketSize = MAX_INCOMING_PACKET
        session = {"clean_start": cfg.qos == 0, "properties": properties}
    else:
        session = {"clean_session": cfg.qos == 0}
    if inflight is not None:  # PUBLISH packets paho lets out before their PUBACK (its default: 20)
        session["max_inflight_messages"] = inflight
    return aiomqtt.Client(
        cfg.host,
        cfg.port,
        identifier=cfg.identity,
        username=cfg.username or None,
        password=password,
        protocol=protocol,
        will=aiomqtt.Will(status_topic, b"offline", qos=1, retain=retain_status),
        keepalive=cfg.keepalive,
        tls_context=tls_context,
        timeout=10.0,
        logger=_AIOMQTT_LOG,
        **session,
    )


async def watch_messages(
    client: aiomqtt.Client, on_message: Callable[[str, bytes], None] | None, lost: Callable[[Exception], None]
) -> None:
    """Messages on the subscribed topics go to ``on_message``; aiomqtt also reports a dropped
    connection through this iterator."""
    try:
        async for message in client.messages:
            if on_message is not None:
                payload = message.payload
                data = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
                on_message(str(message.topic), data)
    except aiomqtt.MqttError as exc:
        lost(exc)


async def watch_acks(
    overdue: Callable[[float, float], bool], timeout: float, lost: Callable[[Exception], None]
) -> None:
    """A broker that takes publishes and never acknowledges them is a broken connection
    (``overdue(now, timeout)``: a message in flight has waited longer)."""
    while True:
        await asyncio.sleep(1.0)
        if overdue(time.monotonic(), timeout):
            lost(TimeoutError(f"no acknowledgement from the broker in {timeout:g} s"))
            return
