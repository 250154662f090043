"""MQTT that loses nothing: outages, kill -9, overflow accounting, TLS, authentication, discovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import ssl
import subprocess
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema

from streamd.demo.broker import Mosquitto
from tests.clips import MIXED, mixed_clip
from tests.conftest import Collected, DurableSubscriber, Launch, Streamd, write_config

SCHEMA = json.loads(resources.files("streamd.schemas").joinpath("detections.schema.json").read_text())
LONG = MIXED * 4  # 104 frames: about 7 s at the clip's 15 fps


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
    with Mosquitto(persistent=True) as broker:
        launch = Launch(tmp_path, default_model, broker, script=LONG)
        truth = launch.truth
        config = launch.write(
            [launch.source(loop=False, drop="block")],
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
    with Mosquitto(persistent=True) as broker:
        launch = Launch(tmp_path, default_model, broker, script=LONG)
        config = launch.write([launch.source(drop="block")], mqtt={"publish_empty": True})
        async with DurableSubscriber(broker.port, "test-kill") as got:
            broker.stop()
            first = await Streamd("run", "-c", str(config)).start()
            buffer = tmp_path / "mqtt-buffer" / "mqtt-test.sqlite3"
            await wait_for_rows(buffer, 20)
            first.signal(signal.SIGKILL)
            await first.wait(10)
            restarted_at = datetime.now(UTC)
            db = sqlite3.connect(str(buffer))
            stored = [
                json.loads(p) for (p,) in db.execute("SELECT payload FROM messages WHERE topic LIKE '%/detections'")
            ]
            db.close()
            assert len(stored) >= 20, "the killed run's messages were on disk"
            broker.start()
            second = await Streamd("run", "-c", str(config)).start()
            await got.wait_for(lambda c: len(before(c, restarted_at)) >= len(stored), 60)
            second.signal(signal.SIGTERM)
            assert await second.wait(20) == 0
    delivered = before(got, restarted_at)
    order, duplicates = first_arrivals([m["frame"] for m in delivered])
    assert order == [m["frame"] for m in stored], "the killed run's messages, all, in order"
    print(f"kill -9: {len(stored)} buffered on disk, {len(order)} delivered after restart, {duplicates} duplicates")


async def wait_for_rows(path: Path, rows: int, where: str = "topic LIKE '%/detections'", timeout: float = 60) -> None:
    """Until the daemon's SQLite buffer holds ``rows`` messages matching ``where``."""

    def count() -> int:
        if not path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(str(path))) as db:
            try:
                return int(db.execute(f"SELECT COUNT(*) FROM messages WHERE {where}").fetchone()[0])
            except sqlite3.OperationalError:  # the file exists, its table not yet
                return 0

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(count) >= rows:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the buffer at {path} never held {rows} messages")


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
            daemon={"shutdown_timeout": 60, "stats_interval": 3600},
        )
        async with DurableSubscriber(broker.port, "test-overflow") as got:
            broker.stop()
            daemon = await Streamd("run", "-c", str(config)).start()
            # The whole clip is produced into the full buffer before the broker returns. Rows are
            # numbered in order of arrival (AUTOINCREMENT), so "the newest row is the last one
            # produced" is a condition eviction cannot undo (waiting for the 'ended' row raced:
            # frames still queued after the reader ends push it out again).
            # One message per frame, plus the states connecting, streaming, ended and the detect switch's.
            produced = len(truth) + 4
            buffer = tmp_path / "mqtt-buffer" / "mqtt-test.sqlite3"
            await wait_for_rows(buffer, 1, f"id = {produced}")
            broker.start()
            assert await daemon.wait(60) == 0
            await got.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 20)
    stopped = next(e for e in daemon.events() if e["event"] == "stopped")
    published, dropped = stopped["mqtt"]["published"], stopped["mqtt"]["dropped_buffer_full"]
    assert published == capacity and published + dropped == produced
    received = got.on("/cam/detections") + got.on("/cam/state") + got.on("/cam/detect/state")
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
    clip, truth = mixed_clip(tmp_path)
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
        # A subscriber over the same verified TLS: what streamd published really crossed it.
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        context.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
        got = Collected()
        subscribed = asyncio.Event()

        async def listen() -> None:
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="tls-sub", tls_context=context) as client:
                await client.subscribe("streamd/#", qos=1)
                subscribed.set()
                async for message in client.messages:
                    got.messages.append((str(message.topic), bytes(message.payload)))  # type: ignore[arg-type]
                    got.arrived.set()

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(subscribed.wait(), 10)
        daemon = await Streamd("run", "-c", str(good)).start()
        assert await daemon.wait(60) == 0, daemon.stderr.decode()[-2000:]
        await got.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)
        listener.cancel()
        frames = sorted(m["frame"] for m in got.json("/cam/detections"))
        assert frames == [f.index for f in truth if f.has_person]
        # + connecting, streaming, ended, and where the detect switch stands
        assert daemon.events()[-1]["mqtt"]["published"] == len(frames) + 4

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


async def test_full_payload_and_home_assistant_discovery(launch: Launch, subscriber: Collected) -> None:
    mqtt = {"payload": "full", "discovery": True, "discovery_prefix": "streamd/ha", "presence_off_delay": 0.1}
    daemon = await launch([{"name": "porch", "uri": launch.clip, "realtime": True}], mqtt=mqtt)
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


class Mqtt311Only:
    """A broker front that speaks only MQTT 3.1.1: a CONNECT for protocol level 5 gets the 3.1.1
    refusal 'unacceptable protocol version'; anything else is piped to the real broker."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.refused = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Mqtt311Only:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readexactly(2)  # CONNECT, first byte of the remaining length
        length_bytes = bytearray(head[1:])
        while length_bytes[-1] & 0x80:
            length_bytes += await reader.readexactly(1)
        variable = await reader.readexactly(7)  # protocol name (2 + 4 bytes) and level
        if variable[6] == 5:
            self.refused += 1
            writer.write(b"\x20\x02\x00\x01")
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        up_writer.write(head[:1] + bytes(length_bytes) + variable)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_mqtt5_first_and_311_when_the_broker_refuses_5(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip, truth = mixed_clip(tmp_path)
    direct = write_config(
        tmp_path / "direct.toml", default_model, [{"name": "cam", "uri": clip, "realtime": False}], broker.port
    )
    daemon = await Streamd("run", "-c", str(direct)).start()
    assert await daemon.wait(60) == 0
    assert next(e for e in daemon.events() if e["event"] == "mqtt_connected")["protocol"] == "5"

    async with Mqtt311Only(broker.port) as old_broker:
        gated = write_config(
            tmp_path / "gated.toml", default_model, [{"name": "old", "uri": clip, "realtime": False}], old_broker.port
        )
        daemon = await Streamd("run", "-c", str(gated)).start()
        assert await daemon.wait(60) == 0, daemon.stderr.decode()[-2000:]
        assert old_broker.refused == 1
    events = daemon.events()
    assert any(e["event"] == "mqtt_protocol_fallback" for e in events)
    assert next(e for e in events if e["event"] == "mqtt_connected")["protocol"] == "3.1.1"
    people = sum(f.has_person for f in truth)
    await subscriber.wait_for(lambda c: len(c.on("/old/detections")) == people, 10)
