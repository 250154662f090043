"""Motion gating on real clips through the real model: frames where nothing moves are skipped
and counted, objects standing still are kept, masks are honoured."""

from __future__ import annotations

import itertools
import json
from importlib import resources
from pathlib import Path

import jsonschema

from streamd.demo.clip import make_scene_clip
from tests.clips import box_inside
from tests.conftest import Collected, Streamd, write_config

SCHEMA = json.loads(resources.files("streamd.schemas").joinpath("detections.schema.json").read_text())
EMPTY, WALK_IN, STILL, WALK_OUT = 15, 8, 45, 8


def arrive_stand_leave(path: Path) -> Path:
    """Nobody; the cameraman walks in, stands still 3 s, walks out; nobody (15 fps)."""
    walk_in = [[("camera", x, 100)] for x in range(0, 8 * 20, 20)]
    still = [[("camera", 160, 100)]] * STILL
    walk_out = [[("camera", x, 100)] for x in range(180, 180 + 8 * 20, 20)]
    make_scene_clip(path, [[]] * EMPTY + walk_in + still + walk_out + [[]] * 20)
    return path


async def test_gating_skips_still_frames_keeps_the_still_person_and_honours_masks(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip = arrive_stand_leave(tmp_path / "stand.mp4")
    gated = {
        "name": "gated",
        "uri": clip,
        "realtime": True,
        "tracking": {"max_age": 10, "update_interval": 0},
        "motion": {"min_interval": 0.5},
    }
    masked = {"name": "masked", "uri": clip, "realtime": True, "motion": {"masks": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [gated, masked],
        broker.port,
        mqtt={"publish_empty": True},
        daemon={"stats_interval": 1.0},
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(60) == 0, daemon.stderr.decode()[-2000:]
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)

    messages = {m["frame"]: m for m in subscriber.json("/gated/detections")}
    total = EMPTY + WALK_IN + STILL + WALK_OUT + 20
    assert sorted(messages) == list(range(total)), "every frame has its message, skipped or not, in order"
    for message in messages.values():
        jsonschema.validate(message, SCHEMA)
    skipped = [f for f, m in messages.items() if m.get("skipped") == "no_motion"]
    still = range(EMPTY + WALK_IN + 2, EMPTY + WALK_IN + STILL)
    assert all(f in skipped for f in range(1, EMPTY)), "an empty, static scene is not inferred"
    in_still = [f for f in still if f not in skipped]
    assert len([f for f in still if f in skipped]) >= 30, "standing still: mostly skipped"
    # ... but seen again at least every min_interval (0.5 s = 7.5 frames), so the track lives on.
    seen = [still.start, *in_still, still.stop]
    assert in_still and max(b - a for a, b in itertools.pairwise(seen)) <= 10
    assert all(messages[f]["detections"] for f in in_still), "the keep-alive frames see the person"
    events = subscriber.json("/gated/events")
    kinds = [e["type"] for e in events]
    assert kinds.count("new") == 1 and kinds.count("end") == 1 and len({e["id"] for e in events}) == 1, kinds

    masked_messages = subscriber.json("/masked/detections")
    assert len(masked_messages) == total
    assert "skipped" not in masked_messages[0], "the first frame is looked at: what is already there"
    rest = masked_messages[1:]
    assert all(m.get("skipped") == "no_motion" and not m["detections"] for m in rest), "all motion masked"
    stopped = next(e for e in daemon.events() if e["event"] == "stopped")
    assert stopped["skipped"] == {"gated": len(skipped), "masked": total - 1}, "counted where they are skipped"
    # The stats message tells a quiet gated camera from a stalled one: captured, not inferred, skipped.
    stats = subscriber.json("/stats")
    quiet = [s for s in stats if s["captured_fps"].get("masked", 0) > 5 and s["fps"].get("masked", 0) == 0]
    assert quiet, stats
    assert quiet[-1]["skipped"]["masked"]["no_motion"] > 0
    print(f"motion: {len(skipped)}/{total} frames skipped on 'gated', keep-alive frames while still: {in_still}")


async def test_regions_find_a_small_person_the_whole_frame_misses_at_the_right_pixels(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    """1080p, a person 120 px tall (under 1/8 of the frame's height) walking across."""
    clip = tmp_path / "far.mp4"
    side, y = 120, 600
    xs = list(range(200, 1640, 48))
    make_scene_clip(clip, [[]] * 5 + [[("astronaut", x, y)] for x in xs] + [[]] * 5, size=(1920, 1080), photo_size=side)
    motion = {"min_interval": 0.5}
    sources = [
        {"name": "whole", "uri": clip, "realtime": False, "motion": motion},
        {"name": "regions", "uri": clip, "realtime": False, "motion": {**motion, "regions": True}},
    ]
    config = write_config(tmp_path / "streamd.toml", default_model, sources, broker.port, mqtt={"publish_empty": True})
    daemon = await Streamd("run", "-c", str(config)).start()
    assert await daemon.wait(120) == 0, daemon.stderr.decode()[-2000:]
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)

    def recall(name: str) -> float:
        messages = {m["frame"]: m for m in subscriber.json(f"/{name}/detections")}
        hits = 0
        for i, x in enumerate(xs):
            people = [d for d in messages[5 + i]["detections"] if d["label"] == "person"]
            assert all(box_inside(d["box"], (x, y, x + side, y + side), 16) for d in people), (name, x, people)
            hits += bool(people)
        return hits / len(xs)

    whole, cropped = recall("whole"), recall("regions")
    print(f"regions: person-frame recall {cropped:.2f} with regions, {whole:.2f} on the whole frame")
    assert cropped >= whole + 0.3, "the goal of issue 17"
