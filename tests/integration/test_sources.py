"""Sources against real streams: RTSP (GStreamer), HTTP MJPEG, dead and stalling hosts, bad files."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamd.demo.broker import free_port
from tests.clips import MIXED, mixed_clip
from tests.conftest import Collected, Streamd, write_config
from tests.integration.test_observability import http, samples, wait_ready
from tests.servers.cameras import MjpegCamera, RtspCamera, StallingCamera, jpeg_frames, rtsp_available


def rtsp_camera(tmp_path: Path, credentials: str = "") -> RtspCamera:
    """GStreamer's RTSP server looping the mixed clip (the test is skipped where it cannot run)."""
    reason = rtsp_available()
    if reason is not None:
        pytest.skip(reason)
    jpeg_frames(tmp_path / "frames", MIXED)
    return RtspCamera(tmp_path / "frames", credentials=credentials).start()


async def test_rtsp_camera_restart_is_survived(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    camera = rtsp_camera(tmp_path)
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "gate", "uri": camera.url, "read_timeout": 3.0}],
        broker.port,
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    try:
        await subscriber.wait_for(lambda c: len(c.on("/gate/detections")) >= 10, 60)
        killed = time.monotonic()
        camera.kill()
        await subscriber.wait_for(lambda c: b"reconnecting" in c.on("/gate/state"), 30)
        noticed = time.monotonic()
        camera.start()
        restarted = time.monotonic()
        await subscriber.wait_for(lambda c: c.on("/gate/state").count(b"streaming") >= 2, 90)
        recovered = time.monotonic()
        before = len(subscriber.on("/gate/detections"))
        await subscriber.wait_for(lambda c: len(c.on("/gate/detections")) >= before + 5, 30)
    finally:
        camera.kill()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(30) == 0
    states = subscriber.on("/gate/state")
    assert states[:2] == [b"connecting", b"streaming"] and states[-1] in (b"streaming", b"ended")
    lost = [e for e in daemon.events() if e["event"] == "source_stream_lost"]  # #37: the log says why
    assert lost and lost[0]["source"] == "gate" and lost[0]["reason"], lost
    people = [d for m in subscriber.json("/gate/detections") for d in m["detections"] if d["label"] == "person"]
    assert people and all(d["score"] >= 0.4 for d in people)
    print(
        f"rtsp timeline: stall noticed {noticed - killed:.1f} s after the kill, "
        f"streaming again {recovered - restarted:.1f} s after the restart"
    )


async def test_mjpeg_camera_with_credentials_never_leaks_them(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    frames = jpeg_frames(tmp_path / "frames", MIXED)
    with MjpegCamera(frames) as camera:
        uri = f"http://viewer:hunter2@127.0.0.1:{camera.port}/video.mjpg"
        metrics_port = free_port()
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [{"name": "yard", "uri": uri}],
            broker.port,
            http={"listen": f"127.0.0.1:{metrics_port}"},
        )
        check = await Streamd("check", "-c", str(config)).start()
        assert await check.wait(60) == 0
        assert b"hunter2" not in check.stdout + check.stderr and b"***@127.0.0.1" in check.stdout
        daemon = await Streamd("run", "-c", str(config)).start()
        await subscriber.wait_for(lambda c: len(c.on("/yard/detections")) >= 10, 60)
        metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(30) == 0
    for message in subscriber.json("/yard/detections"):
        for detection in message["detections"]:
            assert detection["label"] == "person" and detection["score"] > 0.4
    everything = daemon.stderr + daemon.stdout + metrics.encode() + b"".join(p for _, p in subscriber.messages)
    assert b"hunter2" not in everything and b"viewer" not in everything


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_a_wrong_password_is_told_apart_from_a_dead_camera(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """check and run say why a camera does not open: a 401 is not a closed port, nor a 404."""
    camera = rtsp_camera(tmp_path, credentials="admin:secret")
    try:
        base = f"127.0.0.1:{camera.port}"
        sources = [
            {"name": "good", "uri": camera.url},
            {"name": "porch", "uri": f"rtsp://admin:wrong@{base}/stream", "read_timeout": 2.0},
            {"name": "gone", "uri": f"rtsp://admin:secret@{base}/nothing-here", "read_timeout": 2.0},
            {"name": "dead", "uri": f"rtsp://admin:secret@127.0.0.1:{free_port()}/stream", "read_timeout": 2.0},
        ]
        config = write_config(tmp_path / "streamd.toml", default_model, sources, broker.port)
        check = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "streamd", "check", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = check.stdout
        assert check.returncode == 69, check.stderr  # three cameras cannot be opened now
        assert "  good             ok " in out, out
        assert "  porch            AUTH FAILED (401)" in out, out
        assert "  gone             NOT FOUND (404)" in out, out
        assert "  dead             REFUSED" in out, out
        assert "WARN" not in check.stderr and "secret" not in out + check.stderr  # OpenCV's own noise too

        port = free_port()
        write_config(
            tmp_path / "streamd.toml", default_model, sources, broker.port, http={"listen": f"127.0.0.1:{port}"}
        )
        daemon = await Streamd("run", "-c", str(config)).start()
        await subscriber.wait_for(lambda c: len(c.on("/good/detections")) >= 1, 60)
        deadline = time.monotonic() + 30
        while True:
            retries = {e["source"]: e["reason"] for e in daemon.events() if e["event"] == "source_reconnecting"}
            if len(retries) == 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert retries == {"porch": "auth", "gone": "not_found", "dead": "refused"}
        body = await wait_ready(port, 200, 30)
        assert body["source_errors"] == {
            "porch": "AUTH FAILED (401)",
            "gone": "NOT FOUND (404)",
            "dead": "REFUSED",
        }
        _, text = await http(f"http://127.0.0.1:{port}/metrics")
        assert samples(text)[("streamd_source_errors_total", (("kind", "auth"), ("source", "porch")))] >= 1
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(30) == 0
        assert b"secret" not in daemon.stderr and b"wrong" not in daemon.stderr
    finally:
        camera.kill()


async def test_dead_and_stalling_cameras_do_not_hold_up_the_others(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip, truth = mixed_clip(tmp_path)
    closed = free_port()
    with StallingCamera() as stalling:
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [
                {"name": "file", "uri": clip, "realtime": False, "drop": "block"},
                {"name": "dead", "uri": f"rtsp://admin:pw@127.0.0.1:{closed}/stream", "read_timeout": 2.0},
                {"name": "stalls", "uri": f"http://127.0.0.1:{stalling.port}/video.mjpg", "read_timeout": 2.0},
            ],
            broker.port,
            mqtt={"publish_empty": True},
        )
        daemon = await Streamd("run", "-c", str(config)).start()
        await subscriber.wait_for(lambda c: c.on("/file/state")[-1:] == [b"ended"], 60)
        await subscriber.wait_for(
            lambda c: b"reconnecting" in c.on("/dead/state") and b"reconnecting" in c.on("/stalls/state"), 30
        )
        deadline = time.monotonic() + 30  # two retries of the dead camera: its backoff can be seen
        while len([e for e in daemon.events() if e["event"] == "source_reconnecting" and e["source"] == "dead"]) < 2:
            assert time.monotonic() < deadline, "the dead camera was not retried twice in 30 s"
            await asyncio.sleep(0.1)
        stopping = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(20) == 0
        stop_seconds = time.monotonic() - stopping
    assert sorted(m["frame"] for m in subscriber.json("/file/detections")) == list(range(len(truth)))
    retries = [e for e in daemon.events() if e["event"] == "source_reconnecting"]
    assert {e["source"] for e in retries} == {"dead", "stalls"}
    dead = [e["retry_in"] for e in retries if e["source"] == "dead"]
    assert len(dead) >= 2 and dead[1] >= dead[0] * 0.9 / 2, "backoff grows (with jitter)"
    assert stop_seconds < 5, "a stuck open does not hold up the stop"
    assert b"pw@" not in daemon.stderr


def _faststart(source: Path, target: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(source), "-c", "copy", "-movflags", "+faststart", str(target)],
        check=True,
    )


async def test_truncated_and_corrupt_files_are_counted_and_skipped(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (.ci/run installs it)")
    clip, truth = mixed_clip(tmp_path, script=MIXED * 2)
    faststart = tmp_path / "faststart.mp4"
    await asyncio.to_thread(_faststart, clip, faststart)
    half = tmp_path / "half.mp4"
    half.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    no_index = tmp_path / "no-index.mp4"  # cut before the index OpenCV's writer puts at the end
    no_index.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [
            {"name": "half", "uri": half, "realtime": False, "drop": "block"},
            {"name": "noindex", "uri": no_index, "realtime": False},
            {"name": "noise", "uri": noise, "realtime": False},
            {"name": "good", "uri": clip, "realtime": False, "drop": "block"},
        ],
        broker.port,
        mqtt={"publish_empty": True},
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(60) == 0
    frames = sorted(m["frame"] for m in subscriber.json("/half/detections"))
    assert 0 < len(frames) < len(truth) and frames == list(range(len(frames))), "the readable half was processed"
    assert sorted(m["frame"] for m in subscriber.json("/good/detections")) == list(range(len(truth)))
    events = daemon.events()
    assert [e["source"] for e in events if e["event"] == "source_truncated"] == ["half"]
    assert {e["source"] for e in events if e["event"] in ("source_corrupt", "source_unreadable")} == {
        "noindex",
        "noise",
    }
    assert subscriber.on("/half/state")[-1] == b"ended"
    assert subscriber.on("/noise/state")[-1] == b"failed" and subscriber.on("/noindex/state")[-1] == b"failed"


async def test_drop_oldest_keeps_latency_bounded_under_a_slow_model(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """Decoding runs at ~2,000 FPS, the model at ~80: with drop = oldest the queue stays short."""
    clip, _ = mixed_clip(tmp_path, script=MIXED * 8)
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "fast", "uri": clip, "realtime": False, "drop": "oldest", "loop": True}],
        broker.port,
        mqtt={"publish_empty": True},
        queue={"size": 4},
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    await subscriber.wait_for(lambda c: len(c.on("/fast/detections")) >= 300, 90)
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(30) == 0
    messages = subscriber.json("/fast/detections")[50:]  # after warm-up
    latencies = np.array([m["latency_ms"] for m in messages])
    frames = [m["frame"] for m in messages]
    assert frames == sorted(frames) and frames[-1] - frames[0] > 3 * len(frames), "most frames were dropped"
    p50, p99 = np.percentile(latencies, [50, 99])
    assert p99 < 1000, f"p99 {p99:.0f} ms"
    print(f"drop=oldest under load: p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(messages)} frames")


async def test_max_fps_samples_a_live_camera_down(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    frames = jpeg_frames(tmp_path / "frames", MIXED)
    with MjpegCamera(frames, fps=15) as camera:
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [{"name": "cam", "uri": f"http://127.0.0.1:{camera.port}/v.mjpg", "max_fps": 5}],
            broker.port,
            mqtt={"publish_empty": True},
        )
        daemon = await Streamd("run", "-c", str(config)).start()
        await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= 5, 60)
        first = time.monotonic()
        count = len(subscriber.on("/cam/detections"))
        await asyncio.sleep(4)
        rate = (len(subscriber.on("/cam/detections")) - count) / (time.monotonic() - first)
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(30) == 0
    assert 3.5 < rate < 6.5, f"{rate:.1f} frames/s from a 15 fps camera with max_fps = 5"


async def test_check_takes_the_cameras_env_file_the_unit_reads(tmp_path: Path, default_model: Path, broker) -> None:
    """#37: the camera's password lives in cameras.env, which only the unit loaded: `check` said
    AUTH FAILED (401) and exited 0. Now it exits 69 for that, and --env-file reads the file."""
    camera = rtsp_camera(tmp_path, credentials="admin:Env-Pw-93")
    try:
        config = write_config(
            tmp_path / "streamd.toml",
            default_model,
            [{"name": "front-door", "uri": f"rtsp://127.0.0.1:{camera.port}/stream"}],
            broker.port,
        )
        env = tmp_path / "cameras.env"
        env.write_text(
            "# the unit's EnvironmentFile=\n"
            f"STREAMD_SOURCES__FRONT_DOOR__URI=rtsp://admin:Env-Pw-93@127.0.0.1:{camera.port}/stream\n"
        )

        def check(*extra: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "streamd", "check", "-c", str(config), *extra]
            return subprocess.run(command, capture_output=True, text=True, timeout=120)

        without = await asyncio.to_thread(check)
        assert without.returncode == 69 and "front-door       AUTH FAILED (401)" in without.stdout, without.stdout
        with_env = await asyncio.to_thread(check, "--env-file", str(env))
        assert with_env.returncode == 0, with_env.stdout + with_env.stderr
        assert "front-door       ok" in with_env.stdout and "***@127.0.0.1" in with_env.stdout
        assert "Env-Pw-93" not in with_env.stdout + with_env.stderr
    finally:
        camera.kill()
