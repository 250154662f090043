"""MQTT that loses nothing: outages, kill -9, overflow accounting, TLS, authentication, discovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema

from streamd.demo.broker import Mosquitto
from tests.clips import MIXED, mixed_clip
from tests.conftest import Collected, Streamd, write_config

SCHEMA = json.loads(resources.files("streamd.schemas").joinpath("detections.schema.json").read_text())
LONG = MIXED * 4  # 104 frames: about 7 s at the clip's 15 fps


class DurableSubscriber:
    """A real client with a persistent session (clean_session off, QoS 1) that reconnects by
    itself: what a production consumer of streamd looks like, and what survives a broker restart."""

    def __init__(self, port: int, name: str) -> None:
        self.port, self.name = port, name
        self.collected = Collected()
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.name, clean_session=False) as c:
                    await c.subscribe("streamd/#", qos=1)
                    self.subscribed.set()
                    async for message in c.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        self.collected.messages.append((str(message.topic), payload))
                        self.collected.arrived.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    async def __aenter__(self) -> Collected:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self.collected

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def first_arrivals(frames: list[int]) -> tuple[list[int], int]:
    """Frames in order of first arrival, and how many were duplicates (QoS 1 redelivery)."""
    seen: set[int] = set()
    order = []
    for frame in frames:
        if frame not in seen:
            seen.add(frame)
            order.append(frame)
    return order, len(frames) - len(order)


async def test_broker_outage_mid_clip_delivers_every_frame_once_in_order(tmp_path: Path, default_model: Path) -> None:
    clip, truth = mixed_clip(tmp_path, script=LONG)
    with Mosquitto(persistent=True) as broker:
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [{"name": "cam", "uri": clip, "realtime": True, "drop": "block"}],
            broker.port,
            mqtt={"publish_empty": True, "qos": 1},
            daemon={"shutdown_timeout": 30},
        )
        async with DurableSubscriber(broker.port, "test-outage") as got:
            daemon = await Streamd("run", "-c", str(config)).start()
            await got.wait_for(lambda c: len(c.on("/cam/detections")) >= 15, 60)
            broker.stop()
            await asyncio.sleep(3)
            broker.start()
            assert await daemon.wait(60) == 0, daemon.stderr.decode()[-2000:]
            await got.wait_for(lambda c: len({m["frame"] for m in c.json("/cam/detections")}) >= len(truth), 30)
    frames = [m["frame"] for m in got.json("/cam/detections")]
    order, duplicates = first_arrivals(frames)
    assert order == list(range(len(truth))), "every frame, in capture order"
    print(f"outage: {len(truth)} frames delivered, 0 lost, {duplicates} duplicates (QoS 1 redelivery)")
    events = [e["event"] for e in daemon.events()]
    assert "mqtt_disconnected" in events and events.count("mqtt_connected") >= 2


async def test_kill_9_while_the_broker_is_down_keeps_the_buffer(tmp_path: Path, default_model: Path) -> None:
    clip, _ = mixed_clip(tmp_path, script=LONG)
    with Mosquitto(persistent=True) as broker:
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [{"name": "cam", "uri": clip, "realtime": True, "loop": True, "drop": "block"}],
            broker.port,
            mqtt={"publish_empty": True},
        )
        async with DurableSubscriber(broker.port, "test-kill") as got:
            broker.stop()
            first = await Streamd("run", "-c", str(config)).start()
            await asyncio.sleep(4)
            first.signal(signal.SIGKILL)
            await first.wait(10)
            restarted_at = datetime.now(UTC)
            db = sqlite3.connect(str(tmp_path / "mqtt-buffer" / "mqtt-test.sqlite3"))
            stored = [
                json.loads(p) for (p,) in db.execute("SELECT payload FROM messages WHERE topic LIKE '%/detections'")
            ]
            db.close()
            assert len(stored) >= 20, "about 4 s of a 15 fps clip waited on disk"
            broker.start()
            second = await Streamd("run", "-c", str(config)).start()
            await got.wait_for(lambda c: len(before(c, restarted_at)) >= len(stored), 60)
            second.signal(signal.SIGTERM)
            assert await second.wait(20) == 0
    delivered = before(got, restarted_at)
    order, duplicates = first_arrivals([m["frame"] for m in delivered])
    assert order == [m["frame"] for m in stored], "the killed run's messages, all, in order"
    print(f"kill -9: {len(stored)} buffered on disk, {len(order)} delivered after restart, {duplicates} duplicates")


def before(collected: Collected, moment: datetime) -> list[dict[str, Any]]:
    return [
        m for m in collected.json("/cam/detections") if datetime.fromisoformat(m["ts"].replace("Z", "+00:00")) < moment
    ]


async def test_overflow_counts_add_up(tmp_path: Path, default_model: Path) -> None:
    clip, truth = mixed_clip(tmp_path, script=LONG)
    capacity = 20
    with Mosquitto(persistent=True) as broker:
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [{"name": "cam", "uri": clip, "realtime": False, "drop": "block"}],
            broker.port,
            mqtt={"publish_empty": True, "buffer": capacity},
            daemon={"shutdown_timeout": 60},
        )
        async with DurableSubscriber(broker.port, "test-overflow") as got:
            broker.stop()
            daemon = await Streamd("run", "-c", str(config)).start()
            await asyncio.sleep(6)  # the clip is done long before; streamd waits to flush
            broker.start()
            assert await daemon.wait(60) == 0
            await got.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 20)
    stopped = next(e for e in daemon.events() if e["event"] == "stopped")
    produced = len(truth) + 3  # one message per frame, plus the states connecting, streaming, ended
    published, dropped = stopped["mqtt"]["published"], stopped["mqtt"]["dropped_buffer_full"]
    assert published == capacity and published + dropped == produced
    received = got.on("/cam/detections") + got.on("/cam/state")
    assert len(received) == published
    frames = [m["frame"] for m in got.json("/cam/detections")]
    assert frames == list(range(len(truth) - len(frames), len(truth))), "the newest were kept"
    print(f"overflow: produced {produced}, published {published}, dropped {dropped}")


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with the openssl CLI."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        run(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=streamd test {ca}",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
        )
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            *(["-extfile", "san.cnf"] if name == "server" else []),
        )
    return {p.stem if p.suffix == ".crt" else p.name: p for p in directory.iterdir()}


async def test_tls_with_client_certificates_and_a_wrong_ca(tmp_path: Path, default_model: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    await asyncio.to_thread(make_certificates, certs)
    clip, _ = mixed_clip(tmp_path)
    settings = (
        f"allow_anonymous true\ncafile {certs / 'ca.crt'}\ncertfile {certs / 'server.crt'}\n"
        f"keyfile {certs / 'server.key'}\nrequire_certificate true\n"
    )
    with Mosquitto(settings=settings) as broker:
        good = write_config(
            tmp_path / "good.toml",
            default_model,
            [{"name": "cam", "uri": clip, "realtime": False}],
            broker.port,
            mqtt={"tls": {"ca": certs / "ca.crt", "cert": certs / "client.crt", "key": certs / "client.key"}},
        )
        daemon = await Streamd("run", "-c", str(good)).start()
        assert await daemon.wait(60) == 0, daemon.stderr.decode()[-2000:]
        assert daemon.events()[-1]["mqtt"]["published"] > 0

        wrong = write_config(
            tmp_path / "wrong.toml",
            default_model,
            [{"name": "cam", "uri": clip}],
            broker.port,
            mqtt={"tls": {"ca": certs / "other-ca.crt", "cert": certs / "client.crt", "key": certs / "client.key"}},
        )
        refused = await Streamd("run", "-c", str(wrong)).start()
        assert await refused.wait(60) == 69
        assert "TLS certificate check failed" in refused.stderr.decode()
        assert "certificate verify failed" in refused.stderr.decode()


async def test_wrong_password_exits_69_and_a_password_file_works(tmp_path: Path, default_model: Path) -> None:
    passwords = tmp_path / "passwd"
    await asyncio.to_thread(
        subprocess.run, ["mosquitto_passwd", "-c", "-b", str(passwords), "streamd", "s3cret"], check=True
    )
    clip, _ = mixed_clip(tmp_path)
    with Mosquitto(settings=f"allow_anonymous false\npassword_file {passwords}\n") as broker:
        secret = tmp_path / "mqtt-password"
        for password, expected in (("wrong", 69), ("s3cret", 0)):
            secret.write_text(password + "\n")
            config = write_config(
                tmp_path / "streamd.toml",
                default_model,
                [{"name": "cam", "uri": clip, "realtime": False}],
                broker.port,
                mqtt={"username": "streamd", "password_file": secret},
            )
            daemon = await Streamd("run", "-c", str(config)).start()
            assert await daemon.wait(60) == expected, daemon.stderr.decode()[-2000:]
            if expected == 69:
                assert "the broker refused the connection: Not authorized" in daemon.stderr.decode()
                assert password not in daemon.stderr.decode()


async def test_full_payload_and_home_assistant_discovery(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip, _ = mixed_clip(tmp_path)
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "porch", "uri": clip, "realtime": True}],
        broker.port,
        mqtt={"payload": "full", "discovery": True, "discovery_prefix": "streamd/ha", "presence_off_delay": 0.1},
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(60) == 0
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for message in subscriber.json("/porch/detections"):
        validator.validate(message)
        timings = message["timings"]
        assert timings["inference_ms"] > 0 and message["latency_ms"] >= timings["queue_ms"]
    discovery = json.loads(subscriber.on("streamd/ha/binary_sensor/streamd_test_porch_person/config")[0])
    assert discovery["state_topic"] == "streamd/test/porch/presence/person"
    assert discovery["availability_topic"] == "streamd/test/status" and discovery["device_class"] == "occupancy"
    presence = subscriber.on("/porch/presence/person")
    # The clip: people, then nobody (blank and cat frames), then a person again, then coffee.
    assert presence[:4] == [b"OFF", b"ON", b"OFF", b"ON"]
