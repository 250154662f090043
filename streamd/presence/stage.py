"""Home Assistant MQTT discovery: a binary sensor per source and label, ON while it is seen;
with the control plane, a switch per source for detection and for snapshots, and a camera
entity showing the last snapshot of each label."""

from __future__ import annotations

import json
import time

from streamd import __version__
from streamd.config import Config, MqttConfig, SourceConfig
from streamd.publish import Publisher
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.types import Result


class PresenceStage(Stage):
    name = "presence"
    order = 800

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self._config = context.config.mqtt
        self._sink = context.publisher

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return config.mqtt.discovery

    def for_source(self, source: SourceConfig) -> SourcePresence:
        return SourcePresence(source, self._config, self._sink)


class SourcePresence(SourceHandler):
    """One source's Home Assistant entities, and which labels are seen there now."""

    wants_skipped = True  # a sensor turns OFF after a quiet time, counted in frames skipped or not

    def __init__(self, source: SourceConfig, config: MqttConfig, sink: Publisher) -> None:
        self._source = source
        self._config = config
        self._sink = sink
        self._present: set[str] = set()
        self._last_seen: dict[str, float] = {}

    def _topic(self, label: str) -> str:
        return self._sink.topic(self._source.name, f"presence/{label.replace(' ', '_')}")

    def _entity(self, component: str, slug: str, name: str, **fields: object) -> None:
        cfg = self._config
        config = {
            "name": name,
            "unique_id": slug,
            "object_id": slug,
            "availability_topic": self._sink.service_status_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [f"streamd_{cfg.instance}"],
                "name": f"streamd {cfg.instance}",
                "manufacturer": "streamd",
                "sw_version": __version__,
            },
            **fields,
        }
        topic = f"{cfg.discovery_prefix}/{component}/{slug}/config"
        self._sink.publish(topic, json.dumps(config), qos=1, retain=True)
        self._sink.owns(self._source.name, topic)

    def start(self) -> None:
        """Retained discovery configs, and every sensor OFF until something is seen."""
        source = self._source.name
        snapshots = self._source.takes_snapshots
        cfg = self._config
        base = f"streamd_{cfg.instance}_{source}"
        for label in cfg.discovery_labels:
            slug = f"{base}_{label.replace(' ', '_')}"
            state = self._topic(label)
            self._entity(
                "binary_sensor",
                slug,
                f"{source} {label}",
                state_topic=state,
                payload_on="ON",
                payload_off="OFF",
                device_class="occupancy",
            )
            self._sink.publish(state, "OFF", qos=1, retain=True)
            if snapshots:
                self._entity(
                    "camera",
                    f"{slug}_snapshot",
                    f"{source} {label} snapshot",
                    topic=self._sink.topic(source, f"snapshot/{label.replace(' ', '_')}"),
                )
        if cfg.control:
            switches = ["detect"] + (["snapshots"] if snapshots else [])
            for switch in switches:
                self._entity(
                    "switch",
                    f"{base}_{switch}",
                    f"{source} {switch}",
                    command_topic=self._sink.topic(source, f"{switch}/set"),
                    state_topic=self._sink.topic(source, f"{switch}/state"),
                    payload_on="ON",
                    payload_off="OFF",
                    state_on="ON",
                    state_off="OFF",
                )

    def on_result(self, result: Result) -> None:
        labels = {d.label for d in result.detections}
        now = time.monotonic()
        for label in self._config.discovery_labels:
            if label in labels:
                self._last_seen[label] = now
                if label not in self._present:
                    self._present.add(label)
                    self._sink.publish(self._topic(label), "ON", qos=1, retain=True)
            elif label in self._present and now - self._last_seen[label] > self._config.presence_off_delay:
                self._present.discard(label)
                self._sink.publish(self._topic(label), "OFF", qos=1, retain=True)
