"""Snapshots, object filters, stationary objects and the MQTT control plane, on real clips
through the real model and a real broker."""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import cv2
import jsonschema
import numpy as np
import openvino as ov

from streamd.demo.clip import make_scene_clip
from streamd.inference.model import prepare
from tests.conftest import Collected, Launch, Streamd, write_config
from tests.integration.test_inference import config as model_config
from tests.integration.test_inference import infer
from tests.integration.test_observability import http, samples

EVENTS_SCHEMA = json.loads(resources.files("streamd.schemas").joinpath("events.schema.json").read_text())
LEFT_HALF = [[0, 0], [0.45, 0], [0.45, 1], [0, 1]]
RIGHT_HALF = [[0.55, 0], [1, 0], [1, 1], [0.55, 1]]


def walk_clip(path: Path) -> Path:
    """Nobody; the astronaut walks left to right, fully inside the frame; nobody again."""
    walking = [[("astronaut", x, 100)] for x in range(20, 341, 16)]
    make_scene_clip(path, [[]] * 3 + walking + [[]] * 12)
    return path


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_snapshot_arrives_before_end_decodes_and_shows_the_person(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip = walk_clip(tmp_path / "walk.mp4")
    saved = tmp_path / "snapshots"
    source = {
        "name": "porch",
        "uri": clip,
        "realtime": False,
        "tracking": {"max_age": 5, "update_interval": 0},
        "snapshots": {"full_frame": True, "save_dir": saved, "margin": 0.1},
    }
    config = write_config(tmp_path / "streamd.toml", default_model, [source], broker.port)
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(120) == 0, daemon.stderr.decode()[-2000:]
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)

    topics = [t for t, _ in subscriber.messages]
    events = subscriber.json("/porch/events")
    assert kinds(events).count("new") == 1 and kinds(events).count("end") == 1, kinds(events)
    end = next(e for e in events if e["type"] == "end")
    jsonschema.validate(end, EVENTS_SCHEMA)
    snapshot_topic = "streamd/test/porch/snapshot/person"
    assert end["snapshot"]["topic"] == snapshot_topic
    end_index = max(i for i, (t, p) in enumerate(subscriber.messages) if t.endswith("/events") and b'"end"' in p)
    assert topics.index(snapshot_topic) < end_index, "the snapshot is published before the end that names it"

    jpeg = subscriber.on("/porch/snapshot/person")[-1]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and end["snapshot"]["bytes"] == len(jpeg)
    x1, y1, x2, y2 = end["snapshot"]["box"]
    assert x1 > 2 and x2 < 638, "the best frame is one whose box the edge does not cut"
    # The crop holds the box plus a 10 % margin (scaled to at most max_width).
    assert abs(image.shape[1] - (x2 - x1) * 1.1) < 4 and abs(image.shape[0] - (y2 - y1) * 1.1) < 4
    prepared = prepare(model_config(default_model), ov.Core())
    people = [d for d in infer(prepared, image) if d.label == "person"]
    assert people and max(d.score for d in people) > 0.5, "the model finds the person in the snapshot"
    full = cv2.imdecode(np.frombuffer(subscriber.on("/snapshot/person/full")[-1], np.uint8), cv2.IMREAD_COLOR)
    assert full.shape == (480, 640, 3)
    files = list((saved / "porch").glob("*.jpg"))
    assert len(files) == 1 and files[0].read_bytes() == jpeg and end["snapshot"]["file"] == str(files[0])
    stopped = next(e for e in daemon.events() if e["event"] == "stopped")
    print(f"snapshot: {len(jpeg)} bytes, {image.shape[1]}x{image.shape[0]}, stopped: {stopped['mqtt']}")


async def test_filters_remove_what_they_should_keep_the_rest_and_count_it(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """Two people in every frame: the astronaut on the left, the cameraman on the right."""
    clip = tmp_path / "two.mp4"
    make_scene_clip(clip, [[("astronaut", 0, 100), ("camera", 360, 100)]] * 10)
    launch = Launch(tmp_path, default_model, broker)
    launch.clip = clip

    def source(name: str, **settings: Any) -> dict[str, Any]:
        return launch.source(name, **settings)

    tracked = {"tracking": {"min_hits": 1}}
    sources = [
        source("plain"),
        source("masked", object_masks=[LEFT_HALF]),
        source("scored", filters={"person": {"min_score": 0.9999}}),
        # Too big everywhere (5 % of the frame at most) except in the right zone, which allows half.
        source(
            "sized",
            filters={"person": {"max_area": 0.05}},
            zones=[{"name": "right", "polygon": RIGHT_HALF, "filters": {"person": {"max_area": 0.5}}}],
            **tracked,
        ),
        source("shaped", filters={"person": {"min_ratio": 2.0}}),
        # Announced only inside the left zone: the cameraman on the right never gets a 'new'.
        source(
            "zoned",
            filters={"person": {"required_zones": ["left"]}},
            zones=[{"name": "left", "polygon": LEFT_HALF}],
            **tracked,
        ),
    ]
    daemon = await launch(sources, http=True, mqtt={"publish_empty": True})
    try:
        await subscriber.wait_for(lambda c: all(len(c.on(f"/{s['name']}/detections")) >= 8 for s in sources), 90)
        _, text = await http(launch.http + "/metrics")
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0

    def xs(name: str) -> set[int]:
        """Which people each frame kept: 0 for the left one, 1 for the right one."""
        found = set()
        for message in subscriber.json(f"/{name}/detections")[2:]:
            found.add(tuple(sorted(int(d["box"][0] > 320) for d in message["detections"])))
        return found

    assert xs("plain") == {(0, 1)}
    assert xs("masked") == {(1,)}, "the left person stands in the mask"
    assert xs("scored") == {()}
    assert xs("sized") == {(1,)}, "too big, except where the zone allows it"
    assert xs("shaped") == {()}, "nobody is twice as wide as tall"
    assert xs("zoned") == {(0, 1)}, "required_zones holds back events, not detections"
    zoned = subscriber.json("/zoned/events")
    assert zoned and all(e["box"][0] < 320 for e in zoned), "only the person in the required zone is announced"

    scrape = samples(text)

    def filtered(source: str, reason: str) -> float:
        labels = (("label", "person"), ("reason", reason), ("source", source))
        return scrape.get(("streamd_detections_filtered_total", labels), 0)

    assert filtered("masked", "mask") >= 8
    assert filtered("scored", "min_score") >= 16
    assert filtered("sized", "max_area") >= 8
    assert filtered("shaped", "min_ratio") >= 16
    assert filtered("plain", "mask") == 0


async def test_a_person_standing_still_gives_new_stationary_end_not_a_stream(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """20 s of the same person at 5 fps, with a 2 s gap in detections (blank frames) midway:
    longer than max_age, shorter than stationary_max_age."""
    clip = tmp_path / "still.mp4"
    standing = [[("camera", 180, 100)]]
    make_scene_clip(clip, standing * 45 + [[]] * 10 + standing * 45, fps=5.0)
    source = {
        "name": "drive",
        "uri": clip,
        "realtime": True,
        "tracking": {"max_age": 4, "update_interval": 1.0, "stationary_after": 3.0, "stationary_max_age": 20},
        "zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "min_frames": 1}],
    }
    config = write_config(tmp_path / "streamd.toml", default_model, [source], broker.port)
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(60) == 0, daemon.stderr.decode()[-2000:]
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)
    events = [e for e in subscriber.json("/drive/events") if e["type"] not in ("enter", "exit")]
    types = kinds(events)
    assert types.count("new") == 1 and types.count("stationary") == 1 and types.count("end") == 1, types
    assert len({e["id"] for e in events}) == 1, "one object, one id, through the gap"
    after = types[types.index("stationary") + 1 :]
    assert after == ["end"], f"no update while stationary: {types}"
    assert types.count("update") <= 4, "updates only until it is found to stand still (3 s)"
    assert events[-1]["stationary"] is True
    for event in events:
        jsonschema.validate(event, EVENTS_SCHEMA)
    assert b"1" in subscriber.on("/drive/zones/all/person/stationary"), "occupancy says how many stand still"
    assert subscriber.on("/drive/zones/all/person/stationary")[-1] == b"0"


async def test_detect_off_stops_inference_on_resumes_and_garbage_is_rejected(
    launch: Launch, subscriber: Collected
) -> None:
    ha = {"discovery": True, "discovery_prefix": "streamd/ha"}  # under what the subscriber sees
    daemon = await launch([launch.source(tracking={})], http=True, mqtt={"publish_empty": True, **ha})
    base = "streamd/test/cam"

    def new_ids(c: Collected) -> list[int]:
        return [e["id"] for e in c.json("/cam/events") if e["type"] == "new"]

    try:
        await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= 5 and new_ids(c), 60)
        assert subscriber.on("/cam/detect/state")[-1] == b"ON"
        config = json.loads(next(p for t, p in subscriber.messages if t.endswith("streamd_test_cam_detect/config")))
        assert config["command_topic"] == f"{base}/detect/set", "Home Assistant gets a switch"
        async with aiomqtt.Client("127.0.0.1", launch.broker.port) as client:
            await client.publish(f"{base}/detect/set", b"OFF", qos=1)
            await subscriber.wait_for(lambda c: c.on("/cam/detect/state")[-1] == b"OFF", 10)
            at_off = len(subscriber.on("/cam/detections"))
            skipped_key = ("streamd_frames_skipped_total", (("reason", "detect_off"), ("source", "cam")))

            async def skipped() -> float:
                return samples((await http(launch.http + "/metrics"))[1])[skipped_key]

            deadline = time.monotonic() + 60
            while await skipped() < 20:  # capture goes on; the frames are counted as skipped
                assert time.monotonic() < deadline, "no frame counted as skipped while detect is OFF"
                await asyncio.sleep(0.2)
            after_off = len(subscriber.on("/cam/detections")) - at_off
            assert after_off <= 4, f"inference stops within the frames already on the device, got {after_off}"
            assert subscriber.on("/cam/state")[-1] == b"streaming"

            for topic, payload in [
                (f"{base}/detect/set", b"MAYBE"),
                (f"{base}/detect/set", b"\xff\xfe\x00"),
                (f"{base}/detect/set", b"O" * 100_000),
                ("streamd/test/nosuch/detect/set", b"ON"),
                (f"{base}/snapshots/set", b""),
            ]:
                await client.publish(topic, payload, qos=1)
            rejected_key = ("streamd_control_messages_total", (("outcome", "rejected"),))
            # The 100 kB one never reaches streamd: over the maximum packet size it told the broker.
            deadline = time.monotonic() + 10
            while samples((await http(launch.http + "/metrics"))[1])[rejected_key] < 4:
                assert time.monotonic() < deadline, "the garbage was not counted"
                await asyncio.sleep(0.1)
            assert len(subscriber.on("/cam/detections")) - at_off <= 4, "garbage changed nothing"

            tracks_before = len(new_ids(subscriber))
            await client.publish(f"{base}/detect/set", b"on", qos=1)
            await subscriber.wait_for(lambda c: c.on("/cam/detect/state")[-1] == b"ON", 10)
            await subscriber.wait_for(lambda c: len(c.on("/cam/detections")) >= at_off + 10, 20)
            await subscriber.wait_for(lambda c: len(new_ids(c)) > tracks_before, 30)
        ids = new_ids(subscriber)
        assert len(ids) == len(set(ids)), f"a track id given twice in one run: {ids}"
        _, text = await http(launch.http + "/metrics")
        scrape = samples(text)
        assert scrape[("streamd_control_messages_total", (("outcome", "rejected"),))] == 4
        assert scrape[("streamd_control_messages_total", (("outcome", "accepted"),))] == 2
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0
    rejected = [e for e in daemon.events() if e["event"] == "control_rejected"]
    assert [e["reason"] for e in rejected] == ["payload must be ON or OFF"], "logged once a minute, all counted"


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


async def test_a_flood_of_control_junk_is_counted_not_logged_and_a_huge_payload_never_arrives(
    launch: Launch, subscriber: Collected
) -> None:
    """#32: 5,007 junk messages gave 5,007 warnings; a 200 MB payload raised RSS by 200 MB."""
    daemon = await launch(http=True)
    base = "streamd/test/cam"
    try:
        await subscriber.wait_for(lambda c: c.on("/cam/detect/state")[-1:] == [b"ON"], 60)
        assert daemon.process is not None
        before = rss_kib(daemon.process.pid)
        async with aiomqtt.Client("127.0.0.1", launch.broker.port, max_queued_outgoing_messages=0) as client:
            for n in range(5007):
                await client.publish(f"{base}/detect/set", f"junk {n}".encode(), qos=0)
            await client.publish(f"{base}/detect/set", b"O" * (64 << 20), qos=1)  # 64 MiB
            await client.publish(f"{base}/detect/set", b"OFF", qos=1)
        await subscriber.wait_for(lambda c: c.on("/cam/detect/state")[-1:] == [b"OFF"], 60)
        rejected_key = ("streamd_control_messages_total", (("outcome", "rejected"),))
        deadline = time.monotonic() + 30
        while samples((await http(launch.http + "/metrics"))[1])[rejected_key] < 5007:
            assert time.monotonic() < deadline, "the junk was not all counted"
            await asyncio.sleep(0.2)
        # Published before OFF on one connection, so it would have come before it: it never came
        # (it would have been a 5,008th rejection), nor did its 64 MiB stay in streamd's memory.
        scrape = samples((await http(launch.http + "/metrics"))[1])
        assert scrape[rejected_key] == 5007
        assert scrape[("streamd_control_messages_total", (("outcome", "accepted"),))] == 1
        grown = rss_kib(daemon.process.pid) - before
        assert grown < 64 << 10, f"RSS grew by {grown} KiB"
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0
    logged = [e for e in daemon.events() if e["event"] == "control_rejected"]
    assert len(logged) == 1 and logged[0]["not_logged_since_last"] == 0, len(logged)
