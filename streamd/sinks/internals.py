"""Every use streamd makes of aiomqtt's and paho's private attributes, in one place, checked
against the versions it was written for when it is imported: a newer major release fails here,
with a message that says what to install, instead of somewhere in the middle of a publish.

Why there are any: aiomqtt offers no accessor for its paho client, and paho no socket factory;
``wire.py`` publishes through paho directly and batches the socket's writes (see its docstring).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

# The distributions and the major versions whose private attributes this module reads.
WRITTEN_FOR = {"aiomqtt": 2, "paho-mqtt": 2}


def check_versions(installed: Mapping[str, str]) -> None:
    """Raise ImportError naming what differs from ``WRITTEN_FOR``."""
    wrong = [
        f"{name} {installed.get(name, 'missing')}"
        for name, major in WRITTEN_FOR.items()
        if not installed.get(name, "").split(".")[0].isdigit() or int(installed[name].split(".")[0]) != major
    ]
    if wrong:
        wanted = ", ".join(f"{name} {major}.x" for name, major in WRITTEN_FOR.items())
        raise ImportError(
            f"streamd's MQTT sink reads private attributes of {wanted}, but found {', '.join(wrong)}: "
            "install the versions pyproject.toml names (pip install -e .)"
        )


def _installed() -> dict[str, str]:
    found = {}
    for name in WRITTEN_FOR:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


check_versions(_installed())


def paho_client(client: aiomqtt.Client) -> paho.Client:
    """aiomqtt 2.x's paho client."""
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho.Client):
        raise RuntimeError("aiomqtt.Client has no paho client at _client: not the aiomqtt 2.x streamd was written for")
    return inner


def paho_socket(client: paho.Client) -> Any:
    """The socket paho 2.x reads and writes (an ``ssl.SSLSocket`` with TLS)."""
    return client._sock


def replace_paho_socket(client: paho.Client, sock: Any) -> None:
    """paho 2.x reads and writes through this attribute only."""
    client._sock = sock


# What paho hands ``on_publish`` for a PUBACK that says success, or that no one subscribes (as
# Mosquitto answers under MQTT 5 then), and nothing more: one object each, read and never
# written by the callbacks (aiomqtt's and the wire's).
_ACCEPTED = {code: ReasonCode(PacketTypes.PUBACK, identifier=code) for code in (0x00, 0x10)}
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


def fast_pubacks(client: paho.Client) -> None:
    """PUBACKs that accept the message and carry nothing else (the packet id, and under MQTT 5
    maybe "success" or "no matching subscribers") go straight to paho's ``_do_on_publish``, as
    paho's own handler does after decoding each into a new ``ReasonCode`` and ``Properties``
    (10 % of the event loop's time per frame with a detector that costs nothing). Any other
    PUBACK (a refusal, properties) or PUBCOMP goes to paho's handler."""
    needed = ("_handle_pubackcomp", "_in_packet", "_out_message_mutex", "_out_messages", "_do_on_publish")
    if not all(hasattr(client, name) for name in needed):
        return  # another paho 2.x inside: its own handler
    handle = client._handle_pubackcomp
    if getattr(handle, "accepted_fast", False):
        return  # already this client's (a connection's wire before this one)

    def handle_pubackcomp(cmd: str) -> MQTTErrorCode:
        packet = client._in_packet["packet"]
        reason = _ACCEPTED[0] if len(packet) == 2 else _ACCEPTED.get(packet[2]) if len(packet) == 3 else None
        if cmd != "PUBACK" or reason is None:
            return handle(cmd)  # type: ignore[arg-type]
        mid = (packet[0] << 8) | packet[1]
        with client._out_message_mutex:
            if mid in client._out_messages:
                return client._do_on_publish(mid, reason, _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    handle_pubackcomp.accepted_fast = True  # type: ignore[attr-defined]
    client._handle_pubackcomp = handle_pubackcomp  # type: ignore[method-assign]
