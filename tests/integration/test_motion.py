"""Motion gating on real clips through the real model: frames where nothing moves are skipped
and counted, objects standing still are kept, masks are honoured."""

from __future__ import annotations

import itertools
import json
from importlib import resources
from pathlib import Path

import jsonschema

from streamd.demo.clip import make_scene_clip
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
        tmp_path / "streamd.toml", default_model, [gated, masked], broker.port, mqtt={"publish_empty": True}
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
    assert all(m.get("skipped") == "no_motion" and not m["detections"] for m in masked_messages), "all masked"
    print(f"motion: {len(skipped)}/{total} frames skipped on 'gated', keep-alive frames while still: {in_still}")
