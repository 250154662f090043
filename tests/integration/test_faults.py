"""Faults a months-long service meets, each reproduced for real: a full disk (RLIMIT_FSIZE set on
the running daemon with prlimit), a damaged buffer file, an unusable buffer directory, model
swaps by SIGHUP, a server that accepts MQTT connections and drops them, a message the client
refuses, hostile HTTP requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamd.config import MqttConfig
from streamd.demo.broker import Mosquitto, free_port
from streamd.metrics import Metrics
from streamd.sinks.mqtt import MqttSink
from tests.clips import mixed_clip
from tests.conftest import Collected, DurableSubscriber, Launch, Streamd, write_config
from tests.integration.test_observability import http, samples, wait_ready


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


async def wait_until_healthy(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (await http(f"http://127.0.0.1:{port}/healthz"))[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz did not answer 200 within {timeout} s")
        await asyncio.sleep(0.1)


# -- 1. a full disk under the buffer --------------------------------------------------------------


async def test_full_disk_falls_back_to_memory_says_so_and_loses_nothing(tmp_path: Path, default_model: Path) -> None:
    with Mosquitto(persistent=True) as broker:
        launch = Launch(tmp_path, default_model, broker)
        config = launch.write(http=True, mqtt={"publish_empty": True}, daemon={"stats_interval": 1.0})
        http_port = launch.http_port
        async with DurableSubscriber(broker.port, "test-full-disk") as got:
            daemon = await Streamd("run", "-c", str(config)).start()
            assert daemon.process is not None
            pid = daemon.process.pid
            await got.wait_for(lambda c: len(c.on("/cam/detections")) >= 10, 60)
            # The disk is full from now on: no file of the daemon may grow (EFBIG; Python
            # ignores SIGXFSZ). Then the broker goes away, so everything must be buffered.
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))
            broker.stop()
            body = await wait_ready(http_port, 503, 30, saying="mqtt buffer unwritable")
            reasons = " ".join(map(str, body["reasons"]))  # type: ignore[arg-type]
            assert "mqtt buffer unwritable" in reasons and "mqtt disconnected" in reasons, body
            _, text = await http(f"http://127.0.0.1:{http_port}/metrics")
            assert samples(text)[("streamd_mqtt_buffer_unwritable", ())] == 1
            await asyncio.sleep(3)  # frames keep coming, into memory; the stats task keeps running
            # Room again, broker back: everything waiting is delivered, by itself.
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
            broker.start()
            await wait_ready(http_port, 200, 60)
            # The stats task lived through it: it still publishes (QoS 0, so what it sent while
            # the subscriber was reconnecting to the restarted broker may be gone; wait for new).
            stats_before = len(got.on("/stats"))
            await got.wait_for(lambda c: len(c.on("/stats")) >= stats_before + 2, 20)
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(30) == 0, daemon.stderr.decode()[-3000:]
            await got.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 20)
    events = daemon.events()
    names = [e["event"] for e in events]
    assert names.count("buffer_unwritable") == 1, "once per episode"
    failure = next(e for e in events if e["event"] == "buffer_unwritable")
    assert failure["path"].endswith("mqtt-test.sqlite3") and failure["errno"]
    assert "task_failed" not in names and "Traceback" not in daemon.stderr.decode()
    stopped = events[-1]
    assert stopped["event"] == "stopped"
    assert not any(k.startswith("dropped") for k in stopped["mqtt"]), stopped["mqtt"]
    frames = sorted({m["frame"] for m in got.json("/cam/detections")})
    assert frames == list(range(frames[-1] + 1)), "every frame arrived: none lost while the disk was full"
    assert frames[-1] + 1 == stopped["captured"]["cam"]


async def test_a_disk_that_fills_mid_outage_still_delivers_everything_in_order(
    tmp_path: Path, default_model: Path
) -> None:
    """Rows already on disk when it fills: once the broker is back they are sent, their deletes
    fail (the disk is still full), and what waits in memory must follow: publishing never stalls,
    and nothing is left behind at SIGTERM."""
    with Mosquitto(persistent=True) as broker:
        launch = Launch(tmp_path, default_model, broker)
        config = launch.write(http=True, mqtt={"publish_empty": True})
        metrics_url = f"http://127.0.0.1:{launch.http_port}/metrics"
        async with DurableSubscriber(broker.port, "test-fills-mid-outage") as got:
            daemon = await Streamd("run", "-c", str(config)).start()
            assert daemon.process is not None
            pid = daemon.process.pid
            await got.wait_for(lambda c: len(c.on("/cam/detections")) >= 10, 60)
            broker.stop()

            async def buffered() -> float:
                return samples((await http(metrics_url))[1])[("streamd_mqtt_buffered", ())]

            deadline = time.monotonic() + 60
            while await buffered() < 30:  # rows on disk
                assert time.monotonic() < deadline, "nothing buffered while the broker was away"
                await asyncio.sleep(0.2)
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))  # the disk is full from now on
            await wait_ready(launch.http_port, 503, 60, saying="mqtt buffer unwritable")
            waiting = await buffered()
            deadline = time.monotonic() + 30
            while await buffered() < waiting + 20:  # and more in memory
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            broker.start()  # the disk still full

            def caught_up(c: Collected) -> bool:
                frames = [m["frame"] for m in c.json("/cam/detections")]
                return bool(frames) and frames[-1] > waiting + 60

            await got.wait_for(caught_up, 60)  # past everything that waited: nothing stalled
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
            await wait_ready(launch.http_port, 200, 60)
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(30) == 0, daemon.stderr.decode()[-3000:]
            stopped = daemon.events()[-1]
            assert stopped["event"] == "stopped"
            assert not any(k.startswith("dropped") for k in stopped["mqtt"]), stopped["mqtt"]
            last = stopped["captured"]["cam"] - 1
            await got.wait_for(lambda c: last in {m["frame"] for m in c.json("/cam/detections")}, 20)
    frames = [m["frame"] for m in got.json("/cam/detections")]
    assert sorted(set(frames)) == list(range(last + 1)), "every frame arrived"
    first_seen = [f for i, f in enumerate(frames) if f not in frames[:i]]
    assert first_seen == sorted(first_seen), "in capture order"
    # At least once (QoS 1): only what was in flight when the broker went away may come twice.
    assert len(frames) - len(set(frames)) <= 256


# -- 2. a bad buffer at start ---------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamd", *args], capture_output=True, text=True, timeout=120)


def test_a_buffer_dir_that_cannot_be_one_is_a_config_error(tmp_path: Path, default_model: Path) -> None:
    clip, _ = mixed_clip(tmp_path)
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("x")
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "cam", "uri": clip, "realtime": False}],
        1,
        mqtt={"buffer_dir": not_a_dir / "sub"},
    )
    for command in ("run", "check"):
        result = _run(command, "-c", str(config))
        assert result.returncode == 78, (command, result.stderr)
        assert "streamd: config error: mqtt.buffer_dir: cannot create" in result.stderr
        assert "Traceback" not in result.stderr


READ_ONLY_MOUNT = ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"']


def _read_only_mounts_work() -> bool:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        probe = subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount --bind -o ro {directory} {directory} && touch {directory}/x"],
            capture_output=True,
            text=True,
        )
    return "Read-only file system" in probe.stderr


@pytest.mark.skipif(not _read_only_mounts_work(), reason="needs unshare -rm (user + mount namespaces)")
def test_a_read_only_buffer_dir_is_a_config_error(tmp_path: Path, default_model: Path) -> None:
    # Permission bits do not stop root, so the directory is made read-only the way a
    # ReadOnlyPaths= or a read-only volume does: a read-only bind mount, in a private namespace.
    clip, _ = mixed_clip(tmp_path)
    read_only = tmp_path / "state"
    read_only.mkdir()
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "cam", "uri": clip, "realtime": False}],
        1,
        mqtt={"buffer_dir": read_only},
    )
    for command in ("run", "check"):
        result = subprocess.run(
            [*READ_ONLY_MOUNT, str(read_only), sys.executable, "-m", "streamd", command, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 78, (command, result.stderr)
        assert f"streamd: config error: mqtt.buffer_dir: {read_only} is not writable" in result.stderr
        assert "Traceback" not in result.stderr


async def test_a_damaged_buffer_is_moved_aside_and_the_daemon_starts(
    tmp_path: Path, default_model: Path, broker: Mosquitto, subscriber: Collected
) -> None:
    clip, truth = mixed_clip(tmp_path)
    buffer_dir = tmp_path / "mqtt-buffer"
    buffer_dir.mkdir()
    (buffer_dir / "mqtt-test.sqlite3").write_bytes(os.urandom(64 * 1024))
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "cam", "uri": clip, "realtime": False}],
        broker.port,
        mqtt={"publish_empty": True},
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(60) == 0, daemon.stderr.decode()[-3000:]
    corrupt = next(e for e in daemon.events() if e["event"] == "mqtt_buffer_corrupt")
    assert corrupt["salvaged"] == 0 and ".corrupt-" in corrupt["moved_to"]
    kept = await asyncio.to_thread(lambda: Path(corrupt["moved_to"]).stat().st_size)
    assert kept == 64 * 1024, "kept for a post-mortem"
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)
    assert len(subscriber.on("/cam/detections")) == len(truth)


# -- 3. SIGHUP swapping the model ---------------------------------------------------------------


async def test_twenty_model_swaps_leave_rss_and_threads_flat(
    tmp_path: Path, default_model: Path, broker: Mosquitto, subscriber: Collected
) -> None:
    clip, _ = mixed_clip(tmp_path)
    path = tmp_path / "streamd.toml"

    def configure(confidence: float, extra_source: bool) -> None:
        sources = [{"name": "cam", "uri": clip, "realtime": True, "loop": True}]
        if extra_source:
            sources.append({"name": "extra", "uri": clip, "realtime": True, "loop": True})
        write_config(path, default_model, sources, broker.port, model={"confidence": confidence})

    configure(0.4, False)
    # A SIGHUP before the daemon is ready must not kill it (its default action would).
    daemon = await Streamd("run", "-c", str(path)).start()
    assert daemon.process is not None
    pid = daemon.process.pid
    await daemon.wait_for_event("mqtt_connected")  # started, the model still compiling (or just done)
    daemon.signal(signal.SIGHUP)
    await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= 3, 60)
    assert daemon.process.returncode is None

    async def swap(number: int) -> None:
        configure(0.41 if number % 2 else 0.4, extra_source=number == 1)
        daemon.signal(signal.SIGHUP)
        await daemon.wait_for_event("reload_done", number, 60)
        before = len(subscriber.on("/cam/detections"))
        await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= before + 3, 30)

    await swap(1)  # changes the model *and* adds a source
    await subscriber.wait_for(lambda c: c.on("/extra/state")[-1:] == [b"streaming"], 30)
    for number in range(2, 6):
        await swap(number)
    await asyncio.sleep(2)
    rss_5, threads_5 = proc_status(pid, "VmRSS"), proc_status(pid, "Threads")
    for number in range(6, 21):
        await swap(number)
    await asyncio.sleep(2)
    rss_20, threads_20 = proc_status(pid, "VmRSS"), proc_status(pid, "Threads")
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0, daemon.stderr.decode()[-3000:]
    events = daemon.events()
    done = [e for e in events if e["event"] == "reload_done"]
    assert len(done) == 20 and all(e["model_changed"] for e in done), [e["event"] for e in events][-40:]
    assert done[0]["added"] == ["extra"] and done[1]["removed"] == ["extra"]
    assert not [e for e in events if e["event"] in ("reload_rejected", "task_failed")]
    print(
        f"after 5 swaps: RSS {rss_5 / 1024:.0f} MB, {threads_5} threads; after 20: {rss_20 / 1024:.0f} MB, {threads_20}"
    )
    assert threads_20 <= threads_5, "no engine's threads left behind"
    # One compiled model is ~30 MB here; 15 leaked ones would be ~450 MB. Allocator noise stays under 40.
    assert rss_20 - rss_5 < 40 * 1024, f"RSS grew {(rss_20 - rss_5) / 1024:.0f} MB over 15 swaps"


async def test_a_reload_that_fails_to_compile_is_rejected_and_changes_nothing(
    tmp_path: Path, default_model: Path, broker: Mosquitto, subscriber: Collected
) -> None:
    clip, _ = mixed_clip(tmp_path)
    path = tmp_path / "streamd.toml"
    sources = [{"name": "cam", "uri": clip, "realtime": True, "loop": True}]
    write_config(path, default_model, sources, broker.port)
    daemon = await Streamd("run", "-c", str(path)).start()
    await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= 3, 60)
    # A model file that exists but is not a model, plus a new source: neither may take effect.
    broken = tmp_path / "broken.xml"
    broken.write_text("<net>")
    write_config(path, broken, [*sources, {"name": "new", "uri": clip}], broker.port)
    daemon.signal(signal.SIGHUP)
    await daemon.wait_for_event("reload_rejected", timeout=60)
    before = len(subscriber.on("/cam/detections"))
    await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= before + 3, 30)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    rejected = [e for e in daemon.events() if e["event"] == "reload_rejected"]
    assert len(rejected) == 1 and rejected[0]["key"] == "model"
    assert not subscriber.on("/new/state"), "all or nothing: the new source did not start"


async def test_a_reload_that_fails_half_way_leaves_the_running_service_as_it_was(
    tmp_path: Path, default_model: Path, broker: Mosquitto, subscriber: Collected, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new model compiles and the changed source stops, then the new source's reader thread
    cannot start (as under a thread limit): the old model, config and source settings run on."""
    from streamd.config_file import load_config
    from streamd.daemon import Daemon
    from streamd.sources.capture import CaptureSource

    clip, _ = mixed_clip(tmp_path)
    path = tmp_path / "streamd.toml"
    cam = {"name": "cam", "uri": clip, "realtime": True, "loop": True}
    write_config(path, default_model, [cam], broker.port, model={"device": "CPU"}, http={"listen": ""})
    daemon = Daemon(load_config(path), load=lambda: load_config(path))
    serving = asyncio.create_task(daemon.serve())
    await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= 3, 60)
    old_config, old_engine = daemon.config, daemon.engines.engine
    old_cam = daemon.sources.runtimes["cam"].config

    real_start = CaptureSource.start

    def start(self: CaptureSource) -> None:
        if self.name == "new":
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(CaptureSource, "start", start)
    write_config(
        path,
        default_model,
        [{**cam, "max_fps": 5}, {"name": "new", "uri": clip}],
        broker.port,
        model={"device": "CPU", "confidence": 0.6},
        http={"listen": ""},
    )
    events: list[dict[str, Any]] = []
    monkeypatch.setattr("streamd.reload.log.error", lambda event, **kw: events.append({"event": event, **kw}))
    await daemon.reload()
    assert [e["event"] for e in events] == ["reload_rejected"] and events[0]["restored"] == ["cam"], events
    assert daemon.engines.engine is old_engine, "the model compiled for the new config was never swapped in"
    assert daemon.config is old_config
    assert set(daemon.sources.runtimes) == {"cam"} and daemon.sources.runtimes["cam"].config == old_cam
    before = len(subscriber.on("/cam/detections"))
    await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= before + 3, 30)
    assert not [t for t, _ in subscriber.messages if "/new/" in t], "the new source never published"
    daemon.should_exit.set()
    await asyncio.wait_for(serving, 60)
    assert old_engine is not None and old_engine.base is None, "shut down: its compiled model released"


# -- 5. a broker that lies, a message the client refuses ------------------------------------------


class ConnackAndClose:
    """Speaks just enough MQTT: reads CONNECT, answers CONNACK 'accepted', then closes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnackAndClose:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(Exception):
            await reader.readexactly(1)  # CONNECT's fixed header
            length, shift = 0, 0
            while True:  # remaining length: a variable byte integer
                byte = (await reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            body = await reader.readexactly(length)
            version = body[6]  # after the protocol name "MQTT" and its 2-byte length
            writer.write(b"\x20\x03\x00\x00\x00" if version == 5 else b"\x20\x02\x00\x00")
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()


async def test_a_server_that_accepts_and_drops_is_not_a_connection(tmp_path: Path, default_model: Path) -> None:
    clip, _ = mixed_clip(tmp_path)
    http_port = free_port()
    async with ConnackAndClose() as server:
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [{"name": "cam", "uri": clip, "realtime": True, "loop": True}],
            server.port,
            http={"listen": f"127.0.0.1:{http_port}"},
        )
        daemon = await Streamd("run", "-c", str(config)).start()
        await wait_ready(http_port, 503, 60)
        statuses = []
        started = time.monotonic()
        while time.monotonic() - started < 8:
            with contextlib.suppress(OSError):
                _, text = await http(f"http://127.0.0.1:{http_port}/metrics")
                statuses.append((await http(f"http://127.0.0.1:{http_port}/readyz"))[0])
                assert samples(text)[("streamd_mqtt_connected", ())] == 0
            await asyncio.sleep(0.1)
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(30) == 0, daemon.stderr.decode()[-3000:]
    assert statuses and set(statuses) == {503}, "never ready: nothing was ever acknowledged"
    # Backoff grows (0.5, 1, 2, 4 s with jitter) instead of resetting on every accepted connect.
    assert 2 <= server.connections <= 7, server.connections
    assert "mqtt_connected" not in [e["event"] for e in daemon.events()]


async def test_a_message_the_client_refuses_is_dropped_and_counted_not_retried(broker: Mosquitto) -> None:
    metrics = Metrics()
    sink = MqttSink(MqttConfig(port=broker.port, instance="refuse", buffer_dir=""), metrics)
    sink.start()
    await asyncio.wait_for(sink.until_connected(), 10)
    sink.publish("streamd/refuse/" + "x" * 70_000, b"never")  # over MQTT's 65,535-byte topic limit
    sink.publish("streamd/refuse/ok", b"fine")
    started = time.monotonic()
    while sink.counts["published"] < 1 and time.monotonic() - started < 10:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    close_started = time.monotonic()
    await sink.close(10)
    assert time.monotonic() - close_started < 2, "nothing stuck in flight: close does not wait the timeout"
    assert sink.counts["dropped_rejected"] == 1 and sink.counts["published"] == 1
    assert metrics.mqtt_dropped.labels("rejected")._value.get() == 1
    assert sink.buffered == 0


# -- 7. hostile HTTP --------------------------------------------------------------------------------


async def test_oversized_requests_are_refused_and_probes_keep_answering(launch: Launch) -> None:
    daemon = await launch(http=True)
    http_port = launch.http_port
    await wait_ready(http_port, 200, 60)

    def raw(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", http_port), timeout=5) as conn:
            conn.sendall(request)
            return conn.recv(200)

    long_line = b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n"
    many_headers = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10_000)) + b"\r\n"
    # Refused before a handler runs: 400 from aiohttp's parser (#34; 414 and 431 from the
    # hand-written server before it), never a traceback.
    for request in (long_line, many_headers):
        status = (await asyncio.to_thread(raw, request)).split(b" ", 2)[1]
        assert status in (b"400", b"414", b"431"), status
    # Hold many idle connections open: the cap closes the extra ones; probes still answer after.
    idle = [socket.create_connection(("127.0.0.1", http_port)) for _ in range(200)]
    for conn in idle:
        conn.close()
    # Connections past the cap are closed at once; once the flood is gone the probes answer again
    # (the server's count drops as it notices each closed socket).
    await wait_until_healthy(http_port, 10)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    assert "Traceback" not in daemon.stderr.decode()
    assert "LimitOverrunError" not in daemon.stderr.decode()


async def test_every_file_source_unreadable_exits_non_zero(
    tmp_path: Path, default_model: Path, broker: Mosquitto
) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(10_000))
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "junk", "uri": junk}, {"name": "gone", "uri": tmp_path / "missing.mp4"}],
        broker.port,
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(60) == 66, daemon.stderr.decode()[-2000:]
    assert "no_source_readable" in [e["event"] for e in daemon.events()]


# -- 6. more sources than the machine can serve ---------------------------------------------------


async def test_a_hundred_sources_keep_memory_bounded_and_probes_quick(launch: Launch) -> None:
    """100 files at 15 fps each (1,500 fps offered; the model does ~150 here): frames are dropped
    and counted, memory stays within the queue's bound, the probes answer, shutdown is prompt."""
    sources = [{"name": f"cam{i:03d}", "uri": launch.clip, "realtime": True, "loop": True} for i in range(100)]
    daemon = await launch(sources, http=True, queue={"max_bytes": 16 << 20}, daemon={"shutdown_timeout": 10})
    http_port = launch.http_port
    assert daemon.process is not None
    await wait_ready(http_port, 200, 60)
    await asyncio.sleep(10)
    latencies: dict[str, list[float]] = {"/healthz": [], "/readyz": [], "/metrics": []}
    for _ in range(5):
        for path, seen in latencies.items():
            started = time.perf_counter()
            status, text = await http(f"http://127.0.0.1:{http_port}{path}")
            seen.append(time.perf_counter() - started)
            assert status == 200, (path, text[:500])
        await asyncio.sleep(0.2)
    rss_mb = proc_status(daemon.process.pid, "VmRSS") / 1024
    threads = proc_status(daemon.process.pid, "Threads")
    metrics = samples(text)
    dropped = sum(v for (name, labels), v in metrics.items() if name == "streamd_frames_dropped_total")
    inferred = sum(v for (name, _), v in metrics.items() if name == "streamd_frames_inferred_total")
    stopping = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0, daemon.stderr.decode()[-3000:]
    shutdown = time.monotonic() - stopping
    worst = {path: round(1000 * max(seen), 1) for path, seen in latencies.items()}
    print(
        f"100 sources: RSS {rss_mb:.0f} MB, {threads} threads, inferred {inferred:.0f}, dropped {dropped:.0f}, "
        f"worst probe ms {worst}, shutdown {shutdown:.1f} s"
    )
    assert dropped > 0 and inferred > 0
    assert rss_mb < 1500, "bounded by queue.max_bytes (16 MiB of frames) plus the model, not by 100 x 64 frames"
    # Measured well under 100 ms here; the bound leaves room for a loaded CI machine.
    assert max(worst.values()) < 1000, worst
    assert shutdown < 10 + 5


# -- no task dies silently ------------------------------------------------------------------------


async def test_a_background_task_that_dies_is_logged_counted_unready_and_stops_the_watchdog(
    tmp_path: Path, default_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamd.config_file import parse_config
    from streamd.daemon import Daemon
    from tests.integration.test_systemd import NotifySocket

    notify = NotifySocket(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", notify.address)
    config = parse_config(
        {
            "model": {"path": str(default_model), "device": "CPU"},
            "sources": [{"name": "cam", "uri": "/nonexistent.mp4"}],
            "mqtt": {"buffer_dir": ""},
        }
    )
    daemon = Daemon(config)
    watchdog = daemon.supervisor.spawn(daemon.watchdog(0.05), "watchdog")
    await notify.watch(0.3)
    assert "WATCHDOG=1" in [m for _, m in notify.messages], "pings while all is well"

    async def stats_that_breaks() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("disk I/O error")

    daemon.supervisor.spawn(stats_that_breaks(), "stats")
    await asyncio.sleep(0.2)
    said = notify.drain()
    assert any("task stats failed" in m for m in said), "STATUS says why"
    notify.messages.clear()
    await notify.watch(0.5)
    assert "WATCHDOG=1" not in [m for _, m in notify.messages], "no ping once a task died"
    ready, body = daemon.readiness()
    assert not ready and "task stats failed: RuntimeError('disk I/O error')" in body["reasons"]  # type: ignore[operator]
    assert daemon.metrics.tasks_failed.labels("stats")._value.get() == 1
    watchdog.cancel()
    notify.close()


async def test_running_out_of_file_descriptors_is_logged_once_not_as_tracebacks(launch: Launch) -> None:
    daemon = await launch(http=True)
    http_port = launch.http_port
    assert daemon.process is not None
    pid = daemon.process.pid
    await wait_ready(http_port, 200, 60)
    open_fds = len(os.listdir(f"/proc/{pid}/fd"))
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds + 4, hard))
    held = []
    for _ in range(40):  # the first few take the last fds, then accept() fails with EMFILE
        with contextlib.suppress(OSError):
            held.append(socket.create_connection(("127.0.0.1", http_port), timeout=1))
    await asyncio.sleep(4)  # asyncio retries accept() every second
    for conn in held:
        conn.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    await wait_ready(http_port, 200, 30)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    errors = [e for e in daemon.events() if e["event"] == "loop_error"]
    assert len(errors) == 1 and "out of system resource" in errors[0]["message"], errors
    assert "Traceback" not in daemon.stderr.decode()


# -- a model that fails on every frame ------------------------------------------------------------


def _strict(payload: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(payload, parse_constant=refuse)


async def test_a_decoder_that_fails_on_every_frame_is_counted_and_unready(
    tmp_path: Path, default_model: Path, broker: Mosquitto
) -> None:
    from tests.models import tf_od_ir

    # Right names, wrong shapes: boxes [1, 100, 3] cannot be read as (ymin, xmin, ymax, xmax).
    model = tf_od_ir(
        tmp_path / "wrong-shape.xml",
        np.zeros((1, 33, 3)),  # 99 numbers: not boxes of 4
        np.full((1, 100), 0.9),
        np.ones((1, 100)),
        count=5,
    )
    launch = Launch(tmp_path, default_model, broker)
    launch.write(http=True, model={"path": model, "decoder": "tf-od"})
    daemon = await Streamd("run", "-c", str(launch.config)).start()
    body = await wait_ready(launch.http_port, 503, 60, saying="decode failed")
    assert any("source cam: decode failed" in str(r) for r in body["reasons"]), body  # type: ignore[attr-defined]
    _, text = await http(f"{launch.http}/metrics")
    assert samples(text)[("streamd_processing_errors_total", (("source", "cam"), ("stage", "decode")))] >= 20
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    logged = [e for e in daemon.events() if e.get("event") == "decode_failed"]
    assert len(logged) == 1 and "Traceback" in daemon.stderr.decode(), "the traceback once, then counted"


async def test_a_model_that_returns_nan_never_puts_nan_on_mqtt(
    tmp_path: Path, default_model: Path, broker: Mosquitto, subscriber: Collected
) -> None:
    from tests.models import tf_od_ir

    boxes = np.zeros((1, 100, 4))
    boxes[0, 0] = [0.2, 0.2, 0.8, 0.6]  # one good box, one NaN box, one NaN score
    boxes[0, 1] = [np.nan, 0.1, 0.5, np.nan]
    boxes[0, 2] = [0.1, 0.1, 0.3, 0.3]
    scores = np.zeros((1, 100))
    scores[0, :3] = [0.9, 0.9, np.nan]
    model = tf_od_ir(tmp_path / "nan.xml", boxes, scores, np.ones((1, 100)), count=3)
    launch = Launch(tmp_path, default_model, broker)
    source = launch.source(tracking={}, snapshots={})
    launch.write([source], http=True, model={"path": model, "decoder": "tf-od"}, mqtt={"publish_empty": True})
    daemon = await Streamd("run", "-c", str(launch.config)).start()
    await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= 20 and c.on("/cam/events"), 60)
    await wait_ready(launch.http_port, 200, 30)  # nothing fails: the NaN never gets that far
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    for topic, payload in subscriber.messages:
        if topic.endswith(("/detections", "/events", "/stats")):
            _strict(payload)  # raises on NaN or Infinity
    counts = [len(m["detections"]) for m in subscriber.json("/cam/detections")]
    assert set(counts) == {1}, counts
    names = {e.get("event") for e in daemon.events()}
    assert "stage_failed" not in names and "decode_failed" not in names


def test_a_metrics_port_in_use_exits_78_with_one_line(tmp_path: Path, default_model: Path) -> None:
    clip, _ = mixed_clip(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [{"name": "cam", "uri": clip, "realtime": False}],
            free_port(),
            http={"listen": f"127.0.0.1:{port}"},
        )
        result = _run("run", "-c", str(config))
    assert result.returncode == 78, result.stderr[-2000:]
    assert f"streamd: config error: http.listen: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
