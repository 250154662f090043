"""The MQTT sink alone: memory buffer, disk buffer, an outage and its flush."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from typing import Any

from streamd.config import Config
from streamd.demo.broker import Mosquitto
from streamd.metrics import Metrics
from streamd.sinks.mqtt import MqttSink


async def _sink_run(config: Config, messages: int, buffer_dir: str, outage: Mosquitto | None) -> dict[str, float]:
    """Publish ``messages`` detection-sized payloads; with ``outage``, all while the broker is down."""
    mqtt = config.mqtt.model_copy(update={"buffer_dir": buffer_dir, "buffer": messages + 10})
    sink = MqttSink(mqtt, Metrics())
    sink.start()
    await sink.until_connected()
    payload = json.dumps(
        {
            "schema": "streamd/detections/1",
            "source": "bench",
            "frame": 1,
            "ts": "2026-11-25T15:55:30.338Z",
            "latency_ms": 31.2,
            "width": 640,
            "height": 480,
            "model": "ssdlite_mobilenet_v2_person",
            "device": "CPU",
            "detections": [{"label": "person", "class_id": 1, "score": 0.94, "box": [6.0, 114.0, 162.0, 346.0]}],
        }
    )
    result: dict[str, float] = {}
    if outage is not None:
        outage.stop()
        while sink.connected:  # noqa: ASYNC110 - a bench loop, polled on purpose
            await asyncio.sleep(0.01)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(messages):
        sink.publish(f"streamd/{mqtt.instance}/bench/detections", payload)
        if i % 200 == 0:
            await asyncio.sleep(0)
    if outage is not None:
        result["store_per_s"] = messages / (time.perf_counter() - started)
        result["store_cpu_us"] = 1e6 * (time.process_time() - cpu) / messages
        outage.start()
        started, cpu = time.perf_counter(), time.process_time()
    while sink.counts["published"] < messages:  # noqa: ASYNC110 - a bench loop, polled on purpose
        await asyncio.sleep(0.01)
    result["delivered_per_s"] = messages / (time.perf_counter() - started)
    result["cpu_us_per_message"] = 1e6 * (time.process_time() - cpu) / messages
    await sink.close(30)
    return {k: round(v, 1) for k, v in result.items()}


def measure_sink(config: Config, messages: int) -> dict[str, Any]:
    """The MQTT sink alone: QoS as configured, memory buffer vs the SQLite buffer across an outage."""
    with Mosquitto() as broker, tempfile.TemporaryDirectory() as tmp:
        local = config.model_copy(
            update={"mqtt": config.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port})}
        )
        return {
            "messages": messages,
            "qos": config.mqtt.qos,
            "connected_memory_buffer": asyncio.run(_sink_run(local, messages, "", None)),
            "connected_disk_buffer": asyncio.run(_sink_run(local, messages, tmp, None)),
            "outage_then_flush_disk_buffer": asyncio.run(_sink_run(local, messages, tmp, broker)),
        }
