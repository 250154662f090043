"""Clips around tracked objects, end to end: GStreamer's RTSP server (H.264), the real model, a
real broker. A person walks in and out; the clip is the camera's own stream (no re-encode) from
before they came to after they left, announced after the track's end, served over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streamd.demo.broker import Mosquitto, free_port
from tests.conftest import Collected, Streamd, write_config
from tests.servers.cameras import RtspCamera, jpeg_frames, rtsp_available

FPS = 15
KEYFRAME_EVERY = 1.0  # the camera's x264enc key-int-max = FPS
# 4 s of empty porch, a person for 3 s, 5 s empty again: a 12 s loop.
WALK_IN_AND_OUT = [None] * 60 + ["astronaut"] * 45 + [None] * 75
RECORDING = {"pre_capture": 2.0, "post_capture": 2.0, "labels": ["person"]}
CLIP_SCHEMA = json.loads(resources.files("streamd.schemas").joinpath("clip.schema.json").read_text())


def camera(tmp_path: Path, codec: str = "h264") -> RtspCamera:
    reason = rtsp_available()
    if reason is not None:
        pytest.skip(reason)
    jpeg_frames(tmp_path / "frames", WALK_IN_AND_OUT)
    return RtspCamera(tmp_path / "frames", fps=FPS, codec=codec).start()


def config(tmp_path: Path, model: Path, url: str, port: int, http: int, public_url: str = "", **recording: Any) -> Path:
    source = {
        "name": "porch",
        "uri": url,
        "read_timeout": 5.0,
        "tracking": {"max_age": 8},
        "recording": {"dir": tmp_path / "recordings", **RECORDING, **recording},
    }
    return write_config(
        tmp_path / "streamd.toml",
        model,
        [source],
        port,
        http={"listen": f"127.0.0.1:{http}", "public_url": public_url},
    )


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def probe(path: Path | str, *entries: str) -> dict[str, str]:
    count = ["-count_frames"] if "nb_read_frames" in entries else []  # a file: read every frame
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", *count, "-show_entries",
         "stream=" + ",".join(entries), "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return {k: str(v) for k, v in json.loads(out)["streams"][0].items()}


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@contextlib.asynccontextmanager
async def recording_porch(
    tmp_path: Path, model: Path, broker: Mosquitto, **recording: Any
) -> AsyncIterator[tuple[Streamd, int, RtspCamera]]:
    """The camera and the daemon recording it: (daemon, its HTTP port, the camera). Both
    are stopped on the way out (unless the test stopped the daemon); the daemon must exit 0."""
    rtsp = camera(tmp_path)
    http = free_port()
    daemon = await Streamd("run", "-c", str(config(tmp_path, model, rtsp.url, broker.port, http, **recording))).start()
    try:
        yield daemon, http, rtsp
    finally:
        rtsp.kill()
        assert daemon.process is not None
        if daemon.process.returncode is None:
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(30) == 0


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    status, _, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/readyz")
    return status, json.loads(body)


async def test_a_person_walks_in_and_out_and_the_clip_is_the_cameras_own_stream(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    async with recording_porch(tmp_path, default_model, broker) as (_, http, rtsp):
        await subscriber.wait_for(lambda c: c.on("/porch/clip/person"), 90)
        clip = subscriber.json("/porch/clip/person")[0]
        jsonschema.validate(clip, CLIP_SCHEMA)
        topics = [t for t, _ in subscriber.messages]
        events = subscriber.json("/porch/events")
        new = next(e for e in events if e["type"] == "new" and e["id"] == clip["id"])
        end = next(e for e in events if e["type"] == "end" and e["id"] == clip["id"])
        end_at = next(i for i, (t, p) in enumerate(subscriber.messages) if t.endswith("/events") and b'"end"' in p)
        assert end_at < topics.index(next(t for t in topics if t.endswith("/clip/person"))), "clip after its end"
        path = tmp_path / "recordings" / "porch" / clip["file"]
        assert path.stat().st_size == clip["bytes"] and not list(path.parent.glob(".*.part"))

        # No re-encode: the camera's codec and resolution; every frame decodes.
        stream = await asyncio.to_thread(probe, rtsp.url, "codec_name", "width", "height")
        saved = await asyncio.to_thread(probe, path, "codec_name", "width", "height", "nb_frames", "nb_read_frames")
        assert (saved["codec_name"], saved["width"], saved["height"]) == (
            stream["codec_name"], stream["width"], stream["height"]) == ("h264", "640", "480")  # fmt: skip
        assert saved["nb_read_frames"] == saved["nb_frames"]
        decode = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"]
        errors = await asyncio.to_thread(subprocess.run, decode, capture_output=True)
        assert errors.returncode == 0 and not errors.stderr, errors.stderr[-500:]

        # From a keyframe before pre_capture ahead of the person to post_capture after the track.
        first_seen, last_seen = seconds(new["first_seen"]), seconds(end["last_seen"])
        start, stop = seconds(clip["start"]), seconds(clip["end"])
        pre, post = RECORDING["pre_capture"], RECORDING["post_capture"]
        assert first_seen - pre - KEYFRAME_EVERY - 0.5 <= start <= first_seen - pre + 0.5, (start, first_seen)
        assert stop >= last_seen + post - 0.5, (stop, last_seen)
        media = float(saved["nb_frames"]) / FPS
        assert abs(media - clip["seconds"]) < 1.0, (media, clip)

        # Served over HTTP, the same bytes, seekable; nothing outside the folder.
        base = f"http://127.0.0.1:{http}/clips/porch"
        status, headers, body = await asyncio.to_thread(get, f"{base}/{clip['file']}")
        assert status == 200 and body == path.read_bytes() and headers["Content-Type"] == "video/mp4"
        status, headers, body = await asyncio.to_thread(get, f"{base}/{clip['file']}", {"Range": "bytes=100-1123"})
        assert status == 206 and body == path.read_bytes()[100:1124]
        assert headers["Content-Range"] == f"bytes 100-1123/{clip['bytes']}"
        status, _, body = await asyncio.to_thread(get, f"{base}/{clip['file']}", {"Range": "bytes=-50"})
        assert status == 206 and body == path.read_bytes()[-50:]
        status, headers, _ = await asyncio.to_thread(get, f"{base}/{clip['file']}", {"Range": "bytes=99999999-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{clip['bytes']}"
        (tmp_path / "recordings" / "porch" / "20260101-000000-1.mp4").symlink_to("/etc/passwd")
        (tmp_path / "secret.mp4").write_bytes(b"not a clip")
        for attempt in [
            "../secret.mp4",
            "..%2fsecret.mp4",
            "%2e%2e/secret.mp4",
            "20260101-000000-1.mp4",  # a symlink with a clip's name
            f"..%2F..%2Fporch%2F{clip['file']}",
            "streamd.toml",
        ]:
            status, _, body = await asyncio.to_thread(get, f"{base}/{attempt}")
            assert status == 404 and b"root:" not in body and b"not a clip" not in body, attempt
        status, _, _ = await asyncio.to_thread(get, f"http://127.0.0.1:{http}/clips/other/{clip['file']}")
        assert status == 404
        metrics = (await asyncio.to_thread(get, f"http://127.0.0.1:{http}/metrics"))[2].decode()
        assert 'streamd_clips_total{label="person",source="porch"}' in metrics
        assert 'streamd_recording_bytes{source="porch"}' in metrics


async def test_a_full_disk_stops_recording_while_detection_goes_on_and_recording_resumes(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """RLIMIT_FSIZE (as ``prlimit --fsize``) makes every clip write fail as on a full disk."""
    async with recording_porch(tmp_path, default_model, broker) as (daemon, http, _):
        assert daemon.process is not None
        pid = daemon.process.pid
        await daemon.wait_for_event("source_streaming", timeout=60)  # started: its files are open
        # The soft limit, as ``prlimit --fsize=20000:`` (the hard one stays, so it can be lifted).
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        stopped = await daemon.wait_for_event("recording_stopped", timeout=90)
        assert stopped["reason"] == "no_space" and stopped["source"] == "porch"
        status, body = await readyz(http)
        assert status == 503 and any("recording porch stopped (no_space" in r for r in body["reasons"]), body
        metrics = (await asyncio.to_thread(get, f"http://127.0.0.1:{http}/metrics"))[2].decode()
        assert 'streamd_recording_errors_total{reason="no_space",source="porch"}' in metrics
        assert 'streamd_recording_errors_total{reason="no_space",source="porch"} 0.0' not in metrics
        before = len(subscriber.on("/porch/detections"))
        await subscriber.wait_for(lambda c: len(c.on("/porch/detections")) >= before + 10, 30)
        assert not list((tmp_path / "recordings" / "porch").glob("*.mp4")), "no clip under a clip's name"
        assert not list((tmp_path / "recordings" / "porch").glob(".*.part")), "the refused clip is removed"

        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        await subscriber.wait_for(lambda c: c.on("/porch/clip/person"), 90)
        assert [e["event"] for e in daemon.events()].count("recording_stopped") == 1, "said once"
        await daemon.wait_for_event("recording_resumed", timeout=10)
        status, body = await readyz(http)
        assert not any("recording" in r for r in body["reasons"]), body


async def test_a_clip_open_at_shutdown_is_finished_and_announced_before_offline(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    async with recording_porch(tmp_path, default_model, broker) as (daemon, _, _):
        await subscriber.wait_for(lambda c: any(e["type"] == "new" for e in c.json("/porch/events")), 90)
        daemon.signal(signal.SIGTERM)  # the person is still there: their clip is open
        assert await daemon.wait(30) == 0
    await subscriber.wait_for(lambda c: b"offline" in c.on("/status"), 10)
    topics = [t for t, _ in subscriber.messages]
    clip_at = next(i for i, t in enumerate(topics) if t.endswith("/porch/clip/person"))
    offline_at = max(i for i, (t, p) in enumerate(subscriber.messages) if t.endswith("/status") and p == b"offline")
    assert clip_at < offline_at, "announced before the daemon said offline"
    clip = subscriber.json("/porch/clip/person")[0]
    path = tmp_path / "recordings" / "porch" / clip["file"]
    assert path.stat().st_size == clip["bytes"]
    saved = await asyncio.to_thread(probe, path, "codec_name", "nb_frames", "nb_read_frames")
    assert saved["codec_name"] == "h264" and saved["nb_read_frames"] == saved["nb_frames"]


async def test_recording_goes_on_after_the_camera_restarts(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """The packets come from the detector's own connection: when the camera goes away, the reader
    reconnects with backoff and the recorder starts over on the new stream's first keyframe."""
    async with recording_porch(tmp_path, default_model, broker) as (_, _, rtsp):
        await subscriber.wait_for(lambda c: c.on("/porch/clip/person"), 90)
        rtsp.kill()
        await subscriber.wait_for(lambda c: b"reconnecting" in c.on("/porch/state"), 30)
        rtsp.start()
        await subscriber.wait_for(lambda c: c.on("/porch/state").count(b"streaming") >= 2, 90)
        back = len(subscriber.messages)
        await subscriber.wait_for(lambda c: any(t.endswith("/porch/clip/person") for t, _ in c.messages[back:]), 90)
    clips = subscriber.json("/porch/clip/person")
    last = tmp_path / "recordings" / "porch" / clips[-1]["file"]
    saved = await asyncio.to_thread(probe, last, "codec_name", "nb_frames", "nb_read_frames")
    assert saved["codec_name"] == "h264" and saved["nb_read_frames"] == saved["nb_frames"] != "0"


async def test_a_long_stay_makes_consecutive_clips_that_each_decode(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    async with recording_porch(tmp_path, default_model, broker, max_seconds=2.0):
        await subscriber.wait_for(lambda c: len(c.on("/porch/clip/person")) >= 3, 90)
    clips = subscriber.json("/porch/clip/person")
    first = [c for c in clips if c["id"] == clips[0]["id"]]
    assert len(first) >= 2, "one track (3 s + pre and post capture) in clips of at most ~2 s"
    for clip in first:
        assert clip["seconds"] <= 2.0 + 2 * KEYFRAME_EVERY, clip  # split on the first keyframe past 2 s
        path = tmp_path / "recordings" / "porch" / clip["file"]
        saved = await asyncio.to_thread(probe, path, "nb_frames", "nb_read_frames")
        assert saved["nb_read_frames"] == saved["nb_frames"] != "0"


async def test_a_clip_larger_than_a_chunk_is_streamed_whole_and_in_ranges(tmp_path: Path) -> None:
    """The server sends clips in 1 MiB chunks after the headers (no clip is held in memory)."""
    from streamd.recording.serve import clips_route
    from streamd.web.server import WebServer

    folder = tmp_path / "porch"
    folder.mkdir()
    data = os.urandom(3 * (1 << 20) + 12345)
    (folder / "20261130-120000-7.mp4").write_bytes(data)
    server = WebServer("127.0.0.1:0", [clips_route(lambda: {"porch": folder})], None)
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/clips/porch/20261130-120000-7.mp4"
        status, headers, body = await asyncio.to_thread(get, url)
        assert status == 200 and body == data and headers["Content-Length"] == str(len(data))
        status, headers, body = await asyncio.to_thread(get, url, {"Range": f"bytes={(1 << 20) - 10}-"})
        assert status == 206 and body == data[(1 << 20) - 10 :]
        assert headers["Content-Range"] == f"bytes {(1 << 20) - 10}-{len(data) - 1}/{len(data)}"
    finally:
        await server.stop()


async def test_a_linked_source_folder_is_written_and_pruned_privately_and_the_announced_clip_stays(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """#32: a source folder that is a link got clips retention never pruned; clips were 0644
    under umask 0022; with max_bytes below one clip, the clip just announced was deleted in the
    same millisecond; a crash's temporary file stayed forever."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "porch").symlink_to(elsewhere)
    stale_clip = elsewhere / "20200101-000000-1.mp4"
    stale_clip.write_bytes(b"old" * 1000)
    os.utime(stale_clip, (1_600_000_000, 1_600_000_000))
    leftover = elsewhere / ".20200101-000000-2.mp4.part"
    leftover.write_bytes(b"a crash's half clip")
    before = os.umask(0o022)  # what a container or a shell gives the daemon
    try:
        async with recording_porch(
            tmp_path, default_model, broker, public_url="https://nvr.example.org/streamd/", max_bytes=1 << 20
        ):
            await subscriber.wait_for(lambda c: len(c.on("/porch/clip/person")) >= 2, 120)
    finally:
        os.umask(before)
    clips = subscriber.json("/porch/clip/person")
    latest = elsewhere / clips[-1]["file"]
    assert latest.is_file(), "the clip just announced is kept whatever max_bytes says"
    assert not stale_clip.exists() and not leftover.exists(), "the linked folder is pruned"
    assert os.stat(latest).st_mode & 0o777 == 0o600
    # #37: a notification can open it: [http] public_url before the path.
    assert clips[-1]["url"] == f"https://nvr.example.org/streamd/clips/porch/{latest.name}"
    for path in (tmp_path / "mqtt-buffer").iterdir():
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    assert os.stat(tmp_path / "mqtt-buffer").st_mode & 0o777 == 0o700


async def test_a_killed_parent_is_one_drain_and_the_open_clip_is_finished_and_announced(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """#32: ``kill -9`` of the worker service's parent sent the workers SIGTERM twice; the second
    cut the drain short and the open clip stayed a ``.part`` with no message."""
    from tests.clips import mixed_clip

    rtsp = camera(tmp_path)
    clip, _ = mixed_clip(tmp_path)
    porch = {
        "name": "porch",
        "uri": rtsp.url,
        "read_timeout": 5.0,
        "tracking": {"max_age": 8},
        "recording": {"dir": tmp_path / "recordings", **RECORDING},
    }
    other = {"name": "yard", "uri": clip, "loop": True}
    config = write_config(tmp_path / "streamd.toml", default_model, [porch, other], broker.port, daemon={"workers": 2})
    daemon = await Streamd("run", "-c", str(config)).start()
    try:
        await subscriber.wait_for(lambda c: any(e["type"] == "new" for e in c.json("/porch/events")), 90)
        daemon.signal(signal.SIGKILL)  # the person is still there: their clip is open
        await daemon.wait(60)
    finally:
        rtsp.kill()
    await subscriber.wait_for(lambda c: c.on("/porch/clip/person"), 30)
    message = subscriber.json("/porch/clip/person")[0]
    folder = tmp_path / "recordings" / "porch"
    assert (folder / message["file"]).is_file() and not list(folder.glob(".*.part"))
    drained = [e for e in daemon.events() if e.get("event") == "stopped" and "worker" in e]
    assert len(drained) == 2 and not [e for e in daemon.events() if e.get("event") == "forced_exit"]
