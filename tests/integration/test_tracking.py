"""Tracks, zones and lines on real clips through the real model."""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from streamd.demo.clip import make_scene_clip
from tests.conftest import Collected, Streamd, write_config

Y = 100


def walk(name: str, start: int, stop: int, step: int) -> list[list[tuple[str, int, int]]]:
    return [[(name, x, Y)] for x in range(start, stop, step)]


def scenes() -> tuple[list[list[tuple[str, int, int]]], int, int]:
    """Nobody; the cameraman walks left to right (hidden for 4 frames midway) and leaves; nobody;
    the astronaut walks right to left and leaves."""
    first = walk("camera", 0, 361, 12)  # 31 frames
    hidden = list(range(5 + 10, 5 + 14))
    clip: list[list[tuple[str, int, int]]] = [[] for _ in range(5)] + first + [[] for _ in range(20)]
    for index in hidden:
        clip[index] = []
    second_start = len(clip)
    clip += walk("astronaut", 360, -1, -12) + [[] for _ in range(20)]
    return clip, hidden[0], second_start


def by_track(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    tracks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        tracks[event["id"]].append(event)
    return dict(tracks)


async def test_two_people_two_tracks_zone_and_line_events(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip_scenes, hidden_at, second_start = scenes()
    clip = tmp_path / "walk.mp4"
    make_scene_clip(clip, clip_scenes)
    source = {
        "name": "hall",
        "uri": clip,
        "realtime": False,
        "drop": "block",
        "tracking": {"max_age": 10, "min_hits": 3, "update_interval": 0},
        "zones": [
            {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "labels": ["person"], "min_frames": 3}
        ],
        "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}],
    }
    config = write_config(
        tmp_path / "streamd.toml", default_model, [source], broker.port, mqtt={"publish_detections": False}
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(120) == 0, daemon.stderr.decode()[-2000:]
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)

    assert subscriber.on("/hall/detections") == [], "per-frame messages switched off"
    tracks = by_track(subscriber.json("/hall/events"))
    assert len(tracks) == 2, {k: [e["type"] for e in v] for k, v in tracks.items()}
    first, second = (tracks[k] for k in sorted(tracks))
    for events in (first, second):
        kinds = [e["type"] for e in events]
        assert kinds.count("new") == 1 and kinds.count("end") == 1 and kinds[0] == "new" and kinds[-1] == "end"
        assert {e["label"] for e in events} == {"person"}
    # The cameraman: born in the left zone, crosses the middle line 'in', leaves the zone, ends.
    assert [e["type"] for e in first if e["type"] in ("enter", "exit", "cross")] == ["enter", "cross", "exit"]
    assert next(e for e in first if e["type"] == "cross")["direction"] == "in"
    updates = [e["frame"] for e in first if e["type"] == "update"]
    assert any(f > hidden_at + 4 for f in updates), "the same id after the occlusion"
    # The astronaut: from the right, crosses 'out', enters the zone, and the end closes the zone.
    assert [e["type"] for e in second if e["type"] in ("enter", "exit", "cross")] == ["cross", "enter", "exit"]
    assert next(e for e in second if e["type"] == "cross")["direction"] == "out"
    assert next(e for e in second if e["type"] == "new")["frame"] >= second_start
    enter = next(e for e in first if e["type"] == "enter")
    assert 5 <= enter["frame"] <= 5 + 3 + 3, "entered within the debounce of first being seen"
    assert subscriber.on("/hall/lines/middle")[-1] == b'{"in": 1, "out": 1}'
    assert subscriber.on("/hall/zones/left/person")[-1] == b"0" and b"1" in subscriber.on("/hall/zones/left/person")
    schemas = {
        name: json.loads(resources.files("streamd.schemas").joinpath(f"{name}.schema.json").read_text())
        for name in ("events", "line", "zone")
    }
    for event in subscriber.json("/hall/events"):
        jsonschema.validate(event, schemas["events"])
    for counter in subscriber.json("/hall/lines/middle"):
        jsonschema.validate(counter, schemas["line"])
    for occupancy in subscriber.json("/hall/zones/left/person"):
        jsonschema.validate(occupancy, schemas["zone"])
    stopped = next(e for e in daemon.events() if e["event"] == "stopped")
    print(
        f"tracking: ids {sorted(tracks)}, {sum(len(v) for v in tracks.values())} events, "
        f"{stopped['tracking_ms_per_frame']} ms per frame"
    )
