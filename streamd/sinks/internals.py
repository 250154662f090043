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
