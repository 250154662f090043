"""The MQTT control plane: ``{prefix}/{instance}/{source}/detect/set`` and ``.../snapshots/set``
with ``ON`` or ``OFF``. The new state is applied, then confirmed on ``.../{switch}/state``
(retained). Anything else that arrives is logged (``control_rejected``), counted and ignored:
nothing a client sends can do more than flip these switches. With ``mqtt.remember_switches``
the switches survive a restart (a JSON file beside the MQTT buffer)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from streamd.config import MqttConfig
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.publish import Publisher
from streamd.sinks.outbox import buffer_path

log = get_logger(__name__)

SWITCHES = ("detect", "snapshots")
MAX_PAYLOAD = 16  # bytes: ON / OFF, with room for spaces
# Larger messages never reach us: the broker is told our maximum packet size (sinks/connect.py).
REJECTED_LOG_EVERY = 60.0  # seconds: junk on the control topics is counted always, logged once a minute

Apply = Callable[[str, bool], None]  # (source, on)


def switches_path(config: MqttConfig) -> Path:
    """Beside the MQTT buffer, in the state directory."""
    return buffer_path(config).with_name(f"switches-{config.instance}.json")


class Switches:
    def __init__(
        self,
        sink: Publisher,
        metrics: Metrics,
        known_sources: Callable[[], set[str]],
        appliers: dict[str, Apply],
        state_file: Path | None = None,
        has_snapshots: Callable[[str], bool] = lambda source: True,
        elsewhere: Callable[[str], bool] = lambda source: False,
    ) -> None:
        """``elsewhere(source)``: another worker process runs it and answers its messages."""
        self._sink = sink
        self._metrics = metrics
        self._known = known_sources
        self._apply = appliers
        self._file = state_file
        self._has_snapshots = has_snapshots
        self._elsewhere = elsewhere
        self.state: dict[str, dict[str, bool]] = self._load()
        self.topics = [f"{sink.prefix}/+/{name}/set" for name in SWITCHES]
        self._rejected_logged_at = float("-inf")
        self._rejected_unlogged = 0

    def is_on(self, source: str, switch: str) -> bool:
        return self.state.get(source, {}).get(switch, True)

    def _switches(self, source: str) -> list[str]:
        return [s for s in SWITCHES if s != "snapshots" or self._has_snapshots(source)]

    def source_started(self, source: str) -> None:
        """Apply what was remembered and say where every switch stands."""
        for switch in self._switches(source):
            on = self.is_on(source, switch)
            if not on:
                self._apply[switch](source, False)
            self._publish_state(source, switch, on)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Called by the sink for every message on the subscribed topics; never raises."""
        try:
            self._handle(topic, payload)
        except Exception as exc:  # a bug here must not take the connection down
            log.exception("control_failed", topic=topic[:200], error=repr(exc))
            self._metrics.control_messages.labels("rejected").inc()

    def _handle(self, topic: str, payload: bytes) -> None:
        prefix = self._sink.prefix + "/"
        parts = topic[len(prefix) :].split("/") if topic.startswith(prefix) else []
        if len(parts) != 3 or parts[1] not in SWITCHES or parts[2] != "set":
            return self._reject(topic, "unknown topic")
        source, switch = parts[0], parts[1]
        if source not in self._known() and self._elsewhere(source):
            return None
        if source not in self._known():
            return self._reject(topic, f"no source {source[:64]!r}")
        if switch not in self._switches(source):
            return self._reject(topic, f"source {source!r} takes no {switch}")
        word = (
            payload[: MAX_PAYLOAD + 1].decode("utf-8", "replace").strip().upper() if len(payload) <= MAX_PAYLOAD else ""
        )
        if word not in ("ON", "OFF"):
            return self._reject(topic, "payload must be ON or OFF", payload=payload[:32])
        on = word == "ON"
        self._metrics.control_messages.labels("accepted").inc()
        if self.is_on(source, switch) != on:
            self.state.setdefault(source, {})[switch] = on
            self._apply[switch](source, on)
            self._save()
            log.info("control_switched", source=source, switch=switch, state=word)
        self._publish_state(source, switch, on)

    def _reject(self, topic: str, reason: str, payload: bytes | None = None) -> None:
        """Counted every time; logged at most once a minute (with how many were not): a client
        flooding the control topics must not flood the journal."""
        self._metrics.control_messages.labels("rejected").inc()
        now = time.monotonic()
        if now - self._rejected_logged_at < REJECTED_LOG_EVERY:
            self._rejected_unlogged += 1
            return
        log.warning(
            "control_rejected",
            topic=topic[:200],
            reason=reason,
            payload=repr(payload) if payload else None,
            not_logged_since_last=self._rejected_unlogged,
        )
        self._rejected_logged_at, self._rejected_unlogged = now, 0

    def _publish_state(self, source: str, switch: str, on: bool) -> None:
        self._sink.publish(self._sink.topic(source, f"{switch}/state"), "ON" if on else "OFF", qos=1, retain=True)

    def _load(self) -> dict[str, dict[str, bool]]:
        if self._file is None or not self._file.exists():
            return {}
        try:
            data = json.loads(self._file.read_text())
            return {
                str(source): {k: bool(v) for k, v in switches.items() if k in SWITCHES}
                for source, switches in data.items()
                if isinstance(switches, dict)
            }
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("control_state_unreadable", path=str(self._file), error=str(exc))
            return {}

    def _save(self) -> None:
        if self._file is None:
            return
        # Worker processes share the file: each writes back only its own sources' switches.
        known = self._known()
        merged = {**self._load(), **{s: v for s, v in self.state.items() if s in known}}
        partial = self._file.with_suffix(f".part{os.getpid()}")
        try:
            partial.write_text(json.dumps(merged, sort_keys=True))
            os.replace(partial, self._file)
        except OSError as exc:
            log.error("control_state_unwritable", path=str(self._file), error=str(exc))
