"""Home Assistant MQTT discovery: a binary sensor per source and label, ON while it is seen."""

from __future__ import annotations

import json
import time

from streamd import __version__
from streamd.config import MqttConfig
from streamd.sinks.mqtt import MqttSink
from streamd.types import Result


class PresenceStage:
    def __init__(self, config: MqttConfig, sink: MqttSink) -> None:
        self._config = config
        self._sink = sink
        self._present: set[tuple[str, str]] = set()
        self._last_seen: dict[tuple[str, str], float] = {}

    def _topic(self, source: str, label: str) -> str:
        return self._sink.topic(source, f"presence/{label.replace(' ', '_')}")

    def source_started(self, source: str) -> None:
        """Retained discovery configs, and every sensor OFF until something is seen."""
        cfg = self._config
        for label in cfg.discovery_labels:
            slug = f"streamd_{cfg.instance}_{source}_{label.replace(' ', '_')}"
            config = {
                "name": f"{source} {label}",
                "unique_id": slug,
                "object_id": slug,
                "state_topic": self._topic(source, label),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "occupancy",
                "availability_topic": self._sink.status_topic,
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": {
                    "identifiers": [f"streamd_{cfg.instance}"],
                    "name": f"streamd {cfg.instance}",
                    "manufacturer": "streamd",
                    "sw_version": __version__,
                },
            }
            topic = f"{cfg.discovery_prefix}/binary_sensor/{slug}/config"
            self._sink.publish(topic, json.dumps(config), qos=1, retain=True)
            self._sink.publish(self._topic(source, label), "OFF", qos=1, retain=True)

    def source_finished(self, source: str) -> None:
        pass  # the sensor keeps its last state; availability follows the daemon's status

    def on_result(self, result: Result) -> None:
        source = result.frame.source
        labels = {d.label for d in result.detections}
        now = time.monotonic()
        for label in self._config.discovery_labels:
            key = (source, label)
            if label in labels:
                self._last_seen[key] = now
                if key not in self._present:
                    self._present.add(key)
                    self._sink.publish(self._topic(source, label), "ON", qos=1, retain=True)
            elif key in self._present and now - self._last_seen[key] > self._config.presence_off_delay:
                self._present.discard(key)
                self._sink.publish(self._topic(source, label), "OFF", qos=1, retain=True)
