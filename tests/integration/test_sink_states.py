"""The MQTT sink's states without a broker (a closed port): buffering in memory or on disk,
bounded, counted, recovered after a restart, and falling back to memory when the disk fails;
with one, every form of acknowledgement it sends completes its message."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from structlog.testing import capture_logs

from streamd.config import MqttConfig
from streamd.demo.broker import Mosquitto, free_port
from streamd.metrics import Metrics
from streamd.sinks.connect import Connection
from streamd.sinks.mqtt import MqttSink
from tests.conftest import Collected


async def started(config: MqttConfig) -> MqttSink:
    sink = MqttSink(config, Metrics())
    sink.start()
    await sink.first_attempt(15)
    return sink


async def test_async_with_waits_for_the_first_attempt_and_flushes_or_keeps_at_exit(tmp_path: Path) -> None:
    """A broker that is down is no error at entry (messages wait); at exit they stay on disk."""
    config = MqttConfig(port=free_port(), instance="ctx", buffer=10, buffer_dir=str(tmp_path))
    async with MqttSink(config, Metrics()) as sink:
        assert sink.state is not Connection.STARTING and not sink.refused
        sink.close_timeout = 0.5
        sink.publish("t/1", b"x")
    assert sink.task is not None and sink.task.done()
    again = MqttSink(config, Metrics())
    assert again.status().buffered == 1, "kept on disk for the next start"


async def test_memory_buffer_is_bounded_and_counts_what_it_drops() -> None:
    sink = await started(MqttConfig(port=free_port(), instance="mem", buffer=3, buffer_dir=""))
    for i in range(5):
        sink.publish(f"t/{i}", b"x")
    status = sink.status()
    assert not status.connected and status.last_error and status.buffered == 3
    assert status.counts["dropped_buffer_full"] == 2
    await sink.close(0.5)
    assert sink.status().counts["dropped_shutdown"] == 3, "memory only: what is left at exit is lost, and counted"


async def test_disk_buffer_keeps_messages_across_a_restart(tmp_path: Path) -> None:
    config = MqttConfig(port=free_port(), instance="disk", buffer=100, buffer_dir=str(tmp_path))
    sink = await started(config)
    for i in range(5):
        sink.publish(f"t/{i}", b"x")
    assert sink.status().buffered == 5
    await sink.close(0.5)
    again = MqttSink(config, Metrics())
    assert again.status().buffered == 5, "recovered from the file"
    assert [m.topic for m in again.outbox.disk.after(0, 10)] == [f"t/{i}" for i in range(5)]  # type: ignore[union-attr]


async def test_a_failing_disk_falls_back_to_memory_and_says_so(tmp_path: Path) -> None:
    sink = await started(MqttConfig(port=free_port(), instance="fail", buffer=100, buffer_dir=str(tmp_path)))
    sink.publish("t/0", b"x")
    assert sink.outbox.disk is not None
    sink.outbox.disk._db.close()  # every further statement raises sqlite3.ProgrammingError, as a dead disk would
    sink.publish("t/1", b"x")
    sink.publish("t/2", b"x")
    status = sink.status()
    assert status.disk_error is not None and status.buffered == 3
    assert list(m.topic for m in sink.outbox.memory) == ["t/1", "t/2"], "in memory, in order"
    assert sink.outbox._metrics.mqtt_buffer_unwritable._value.get() == 1
    sink._task.cancel()  # type: ignore[union-attr]


def test_readiness_follows_progress_not_only_the_connection_flag() -> None:
    """Connected, messages waiting, none acknowledged for a while: not ready (a frozen outbox
    once looked healthy for 27 s while published_total stood still)."""
    from streamd.health import MQTT_STALLED_AFTER, readiness
    from streamd.publish import SinkStatus

    def status(waiting_for: float) -> SinkStatus:
        return SinkStatus(True, None, 120, 10000, None, {}, waiting_for=waiting_for)

    ready, _ = readiness(None, status(1.0), {"cam": "streaming"}, {})
    assert not ready  # no engine yet; what matters is the MQTT reason below
    _, moving = readiness(None, status(1.0), {"cam": "streaming"}, {})
    _, frozen = readiness(None, status(MQTT_STALLED_AFTER + 5), {"cam": "streaming"}, {})
    assert not any("no message acknowledged" in r for r in moving["reasons"])  # type: ignore[attr-defined]
    assert any("no message acknowledged for 15 s; 120 waiting" in r for r in frozen["reasons"])  # type: ignore[attr-defined]


async def test_a_sink_that_is_connected_but_gets_no_acks_reports_how_long(tmp_path: Path) -> None:
    """The sink's own figure: 0 while nothing waits, growing while messages wait unacknowledged."""
    sink = await started(MqttConfig(port=free_port(), instance="wait", buffer=10, buffer_dir=""))
    sink.publish("t/0", b"x")
    assert sink.status().waiting_for == 0.0  # not connected: that is a reason of its own
    await sink.close(0.5)


async def test_a_message_no_broker_would_take_is_refused_at_publish() -> None:
    sink = MqttSink(MqttConfig(port=free_port(), instance="bad", buffer=10, buffer_dir=""), Metrics())
    assert not sink.publish("streamd/bad/cam/snapshot/p+#", b"jpeg")
    assert sink.publish("streamd/bad/cam/snapshot/person", b"jpeg")
    assert sink.status().counts == {"dropped_rejected": 1} and sink.buffered == 1


async def test_every_acknowledgement_form_the_broker_sends_completes_its_message(
    broker: Mosquitto, subscriber: Collected
) -> None:
    """Mosquitto acknowledges under MQTT 5 with the packet id alone where someone subscribes and
    with "no matching subscribers" where no one does: both take the wire's short way past paho's
    decoding (``internals.fast_pubacks``), and every message is published once, none left in flight."""
    sink = await started(MqttConfig(port=broker.port, instance="acks", buffer_dir=""))
    await asyncio.wait_for(sink.until_connected(), 10)
    for n in range(40):
        sink.publish(f"streamd/acks/{n}" if n % 2 else f"elsewhere/acks/{n}", b"%d" % n)
    started_at = time.monotonic()
    while sink.counts["published"] < 40 and time.monotonic() - started_at < 20:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert sink.counts["published"] == 40, sink.counts

    def numbered(c: Collected) -> list[int]:
        return sorted(int(p) for t, p in c.messages if t.startswith("streamd/acks/") and t[13:].isdigit())

    await subscriber.wait_for(lambda c: len(numbered(c)) >= 20, 10)
    await sink.close(5)
    assert sink.buffered == 0
    assert numbered(subscriber) == list(range(1, 40, 2))


async def test_a_burst_past_the_in_flight_cap_is_all_published(broker: Mosquitto, tmp_path: Path) -> None:
    """The pump stops at MAX_INFLIGHT messages awaiting their ack and is woken only by the acks
    that let it move (not by every ack): three caps' worth, first stored on disk while the broker
    is unknown, then more in memory, all arrive."""
    from streamd.sinks.mqtt import MAX_INFLIGHT

    burst = 3 * MAX_INFLIGHT
    config = MqttConfig(port=broker.port, instance="burst", buffer=4 * burst, buffer_dir=str(tmp_path))
    sink = MqttSink(config, Metrics())
    for n in range(burst):  # not started yet: to disk, in order
        sink.publish(f"streamd/burst/{n}", b"x")
    sink.start()
    await asyncio.wait_for(sink.until_connected(), 10)
    for n in range(burst, 2 * burst):
        sink.publish(f"streamd/burst/{n}", b"x")
    started_at = time.monotonic()
    while sink.counts["published"] < 2 * burst and time.monotonic() - started_at < 60:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert sink.counts["published"] == 2 * burst, sink.counts
    assert sink.buffered == 0
    await sink.close(5)


def allowing(directory: Path, pattern: str) -> Mosquitto:
    """A broker whose ACL lets anonymous clients publish to ``pattern`` only."""
    acl = directory / "acl"
    acl.write_text(f"topic readwrite {pattern}\n")
    directory.chmod(0o755)  # mosquitto drops to its own user where it can
    acl.chmod(0o644)
    return Mosquitto(settings=f"allow_anonymous true\nacl_file {acl}\n")


async def test_a_message_the_broker_refuses_is_dropped_counted_and_logged_once(tmp_path: Path) -> None:
    """Mosquitto answers an MQTT 5 publish its ACL denies with a PUBACK "Not authorized" (3.1.1
    brokers drop it without a word): not published, never sent again, counted as refused, and
    logged once per topic however many follow; what the ACL allows still arrives."""
    with allowing(tmp_path, "streamd/acl/#") as broker, capture_logs() as logs:
        metrics = Metrics()
        sink = MqttSink(MqttConfig(port=broker.port, instance="acl", buffer_dir=str(tmp_path)), metrics)
        sink.start()
        await asyncio.wait_for(sink.until_connected(), 10)
        for n in range(10):
            sink.publish(f"streamd/acl/{n}", b"%d" % n)
            sink.publish("elsewhere/denied", b"%d" % n)
        started_at = time.monotonic()
        while sink.buffered and time.monotonic() - started_at < 20:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await sink.close(5)
    assert sink.counts == {"published": 10, "dropped_refused": 10}, sink.counts
    assert metrics.mqtt_dropped.labels("refused")._value.get() == 10
    assert metrics.published_ok._value.get() == 10
    refused = [entry for entry in logs if entry["event"] == "mqtt_publish_refused"]
    assert [(e["topic"], e["reason"]) for e in refused] == [("elsewhere/denied", "Not authorized")]
