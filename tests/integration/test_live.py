"""The live view with the real server, the real model and a real clip (#34): latest.jpg at the
camera's size or ``h`` rows, boxes and zones drawn where they are, live.mjpeg's parts, the
viewer cap, auth, and the worker service's parent routing to the worker that runs a source."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.conftest import Collected, Launch
from tests.integration.test_observability import wait_ready

STILL = [[("astronaut", 180, 100)]] * 45  # a person standing still: every frame alike, one box
ZONE = {"name": "left", "polygon": [[0.02, 0.05], [0.45, 0.05], [0.45, 0.6], [0.02, 0.6]]}


def fetch(url: str, auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(fetch, url, auth)


def picture(body: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


def outline_difference(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    """Mean absolute difference of the two pictures along a closed outline (3 px wide)."""
    mask = np.zeros(a.shape[:2], np.uint8)
    cv2.polylines(mask, [points.astype(np.int32)], True, 255, 3)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16))[mask > 0].mean())


async def boxes_from_mqtt(subscriber: Collected) -> list[float]:
    await subscriber.wait_for(lambda c: any(json.loads(p).get("detections") for p in c.on("/cam/detections")), 60)
    found = [json.loads(p) for p in subscriber.on("/cam/detections")]
    return next(d["detections"][0]["box"] for d in reversed(found) if d.get("detections"))


async def test_latest_jpg_draws_boxes_and_zones_where_they_are(
    tmp_path: Path, default_model: Path, broker: Any, subscriber: Collected
) -> None:
    from streamd.demo.clip import make_scene_clip

    launch = Launch(tmp_path, default_model, broker)
    still = tmp_path / "still.mp4"
    make_scene_clip(still, STILL)
    daemon = await launch([launch.source(uri=still, tracking={}, zones=[ZONE])], http=True)
    try:
        await wait_ready(launch.http_port, 200)
        base = f"{launch.http}/api/sources"
        status, headers, body = await get(f"{base}/cam/latest.jpg")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        plain = picture(body)
        assert plain.shape == (480, 640, 3), "the camera's size"
        box = await boxes_from_mqtt(subscriber)
        outline = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
        _, _, with_boxes = await get(f"{base}/cam/latest.jpg?bbox=1")
        _, _, without = await get(f"{base}/cam/latest.jpg?bbox=0")
        drawn = outline_difference(picture(with_boxes), picture(without), outline)
        assert drawn > 40, f"the box's outline is drawn (mean difference {drawn:.1f})"
        zone = np.array(ZONE["polygon"]) * [640, 480]
        _, _, with_zones = await get(f"{base}/cam/latest.jpg?zones=1")
        _, _, bare = await get(f"{base}/cam/latest.jpg")
        assert outline_difference(picture(with_zones), picture(bare), zone) > 40, "the zone's polygon is drawn"
        elsewhere = zone + np.array([330, 170])  # the same shape where no zone is: frames differ only by noise
        assert outline_difference(picture(with_zones), picture(bare), elsewhere) < 15
        _, _, small = await get(f"{base}/cam/latest.jpg?h=240&bbox=1&zones=1&masks=1&motion=1&timestamp=1")
        assert picture(small).shape == (240, 320, 3)
        assert (await get(f"{base}/nosuch/latest.jpg"))[0] == 404
        assert (await get(f"{base}/cam/latest.jpg?bbox=yes"))[0] == 400
        deadline = time.monotonic() + 10
        while True:  # the rates need a second of frames
            status, _, listed = await get(base)
            (cam,) = json.loads(listed)
            if cam["fps"] > 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert status == 200 and cam["name"] == "cam" and cam["state"] == "streaming"
        assert (cam["width"], cam["height"]) == (640, 480) and set(cam["features"]) == {"tracking", "zones"}
        assert 5 < cam["fps"] <= 16 and 5 < cam["captured_fps"] <= 16, cam  # a 15 FPS clip, in real time
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0


async def read_stream(url: str, seconds: float) -> list[bytes]:
    """The JPEG parts of a multipart/x-mixed-replace stream read for ``seconds``."""
    import aiohttp

    parts: list[bytes] = []
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        boundary = response.headers["Content-Type"].split("boundary=")[1].encode()
        data = b""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                data += await asyncio.wait_for(response.content.readany(), until - time.monotonic())
            except TimeoutError:
                break
        for chunk in data.split(b"--" + boundary)[1:]:
            head, _, rest = chunk.partition(b"\r\n\r\n")
            sizes = [line.split(b":")[1] for line in head.split(b"\r\n") if line.startswith(b"Content-Length")]
            length = int(sizes[0])
            if len(rest) >= length:
                parts.append(rest[:length])
    return parts


async def test_live_mjpeg_streams_decodable_parts_and_caps_viewers(launch: Launch) -> None:
    daemon = await launch(http=True, web={"max_viewers": 2})
    try:
        await wait_ready(launch.http_port, 200)
        url = f"{launch.http}/api/sources/cam/live.mjpeg?fps=5&bbox=1"
        parts = await read_stream(url, 5.0)
        assert len(parts) >= 15, f"{len(parts)} parts in 5 s at fps=5"
        for part in parts:
            assert picture(part).shape == (480, 640, 3)
        # Two viewers hold the cap; a third is refused; once one leaves, a new one is let in.
        holders = [asyncio.create_task(read_stream(url, 4.0)) for _ in range(2)]
        await asyncio.sleep(1.0)
        assert (await get(url))[0] == 503
        await asyncio.gather(*holders)
        assert len(await read_stream(url, 1.5)) >= 3
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
async def test_a_viewer_that_reads_nothing_costs_no_memory_growth(launch: Launch) -> None:
    daemon = await launch(http=True)
    try:
        await wait_ready(launch.http_port, 200)
        _, writer = await asyncio.open_connection("127.0.0.1", launch.http_port)
        writer.write(b"GET /api/sources/cam/live.mjpeg?fps=30 HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5.0)  # the socket buffers fill; from here on nothing more may be held
        before = rss_kib(daemon.process.pid)
        await asyncio.sleep(25.0)
        after = rss_kib(daemon.process.pid)
        writer.close()
        assert after - before < 20_000, f"RSS grew {after - before} KiB while a viewer read nothing"
        status, _, _ = await get(f"{launch.http}/healthz")
        assert status == 200
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0


async def test_with_a_user_every_path_but_the_probes_and_metrics_needs_the_password(launch: Launch) -> None:
    secret = launch.tmp_path / "http-password"
    secret.write_text("Op3n-S3same\n")
    daemon = await launch(http=True, web={"username": "viewer", "password_file": secret})
    try:
        await wait_ready(launch.http_port, 200)
        for path in ("/", "/api/sources", "/api/sources/cam/latest.jpg", "/clips/cam/20261130-120000-7.mp4"):
            status, headers, _ = await get(launch.http + path)
            assert status == 401 and headers["WWW-Authenticate"].startswith('Basic realm="streamd"'), path
            assert (await get(launch.http + path, ("viewer", "wrong")))[0] == 401, path
        for path in ("/metrics", "/healthz", "/readyz"):
            assert (await get(launch.http + path))[0] == 200, path
        assert (await get(f"{launch.http}/api/sources", ("viewer", "Op3n-S3same")))[0] == 200
        status, _, body = await get(f"{launch.http}/", ("viewer", "Op3n-S3same"))
        assert status == 200 and b"<html" in body
        status, _, body = await get(f"{launch.http}/api/sources/cam/latest.jpg", ("viewer", "Op3n-S3same"))
        assert status == 200 and picture(body).shape == (480, 640, 3)
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0
    assert b"Op3n-S3same" not in daemon.stderr


async def test_the_worker_service_routes_each_source_to_its_worker(launch: Launch) -> None:
    sources = [launch.source("one"), launch.source("two")]
    daemon = await launch(sources, http=True, daemon={"workers": 2})
    try:
        await wait_ready(launch.http_port, 200, 120)
        status, _, listed = await get(f"{launch.http}/api/sources")
        assert status == 200 and [s["name"] for s in json.loads(listed)] == ["one", "two"]
        for name in ("one", "two"):
            status, _, body = await get(f"{launch.http}/api/sources/{name}/latest.jpg?h=120")
            assert status == 200 and picture(body).shape[0] == 120, name
        assert (await get(f"{launch.http}/api/sources/three/latest.jpg"))[0] == 404
        parts = await read_stream(f"{launch.http}/api/sources/two/live.mjpeg?fps=5", 2.0)
        assert len(parts) >= 5
    finally:
        daemon.signal()
        assert await daemon.wait(60) == 0
