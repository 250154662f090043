"""End to end: a real clip -> real OpenVINO model -> real Mosquitto -> a real subscriber."""

from __future__ import annotations

import asyncio
import json
import signal
from importlib import resources
from pathlib import Path

import jsonschema

from streamd.demo.broker import Mosquitto
from tests.clips import box_inside, mixed_clip
from tests.conftest import Collected, DurableSubscriber, Launch, Streamd, write_config

SCHEMA = json.loads(resources.files("streamd.schemas").joinpath("detections.schema.json").read_text())


async def test_every_person_frame_detected_on_the_photo_and_none_elsewhere(
    launch: Launch, subscriber: Collected
) -> None:
    truth = launch.truth
    daemon = await launch([{"name": "door", "uri": launch.clip, "realtime": False}], mqtt={"publish_empty": True})
    assert await daemon.wait(120) == 0, daemon.stderr.decode()[-3000:]
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)

    arrival = [m["frame"] for m in subscriber.json("/door/detections")]
    assert arrival == sorted(arrival), "messages of a source arrive in capture order"
    messages = {m["frame"]: m for m in subscriber.json("/door/detections")}
    assert sorted(messages) == list(range(len(truth))), "one message per frame, no gaps (block drops nothing)"
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    for frame in truth:
        message = messages[frame.index]
        validator.validate(message)
        assert (message["width"], message["height"]) == (640, 480)
        people = [d for d in message["detections"] if d["label"] == "person"]
        if frame.has_person:
            assert people, f"frame {frame.index} ({frame.photo}) has a person, none detected"
            assert frame.box is not None
            assert all(box_inside(d["box"], frame.box) for d in people), (frame, people)
            assert max(d["score"] for d in people) >= 0.5
        else:
            assert message["detections"] == [], f"frame {frame.index} ({frame.photo}): {message['detections']}"
    assert subscriber.on("/status") == [b"online", b"offline"]
    assert subscriber.on("/door/state") == [b"connecting", b"streaming", b"ended"]
    assert {m["device"] for m in messages.values()} == {"CPU"}
    stopped = next(e for e in daemon.events() if e["event"] == "stopped")
    # Every frame's message, the three state changes and the detect switch's state were
    # acknowledged; nothing dropped.
    assert stopped["mqtt"] == {"published": len(truth) + 4}
    assert subscriber.on("/door/detect/state") == [b"ON"]


async def test_sigterm_finishes_in_flight_frames_and_goes_offline(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    clip, _ = mixed_clip(tmp_path)
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        # Twice real time with a slow-to-drain queue: at SIGTERM there are frames in the queue and
        # on the device; all of them must come out, published (every frame is, publish_empty).
        [{"name": "loop", "uri": clip, "realtime": True, "speed": 2.0, "loop": True, "drop": "block"}],
        broker.port,
        mqtt={"publish_empty": True},
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    await subscriber.wait_for(lambda c: len(c.on("/loop/detections")) >= 5, 60)
    assert subscriber.on("/status") == [b"online"]
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait(15) == 0, daemon.stderr.decode()[-3000:]
    await subscriber.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)
    assert subscriber.on("/status") == [b"online", b"offline"]
    events = [e["event"] for e in daemon.events()]
    assert "shutdown_requested" in events and events[-1] == "stopped"
    stopped = daemon.events()[-1]
    frames = [m["frame"] for m in subscriber.json("/loop/detections")]
    assert len(frames) == len(set(frames)), "no frame published twice"
    # Every frame the reader captured before the stop was inferred and published: none was left
    # in the queue or on the device, and none was dropped.
    assert stopped["captured"] == {"loop": len(frames)}
    assert sorted(frames) == list(range(len(frames)))
    assert stopped["dropped"] == {}


async def test_broker_down_at_start_buffers_then_flushes(tmp_path: Path, default_model: Path) -> None:
    """Start with the broker stopped: detections wait in the bounded buffer, then all arrive."""
    with Mosquitto(persistent=True) as broker:
        launch = Launch(tmp_path, default_model, broker)
        truth = launch.truth
        config = launch.write([launch.source("late")], daemon={"shutdown_timeout": 20})
        # A consumer with a persistent session, as in production: the broker queues for it.
        async with DurableSubscriber(broker.port, "test-late") as got:
            broker.stop()
            daemon = await Streamd("run", "-c", str(config)).start()
            await asyncio.sleep(4)
            broker.start()
            await got.wait_for(lambda c: len(c.on("/late/detections")) >= 2 * sum(f.has_person for f in truth), 60)
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait(30) == 0
            await got.wait_for(lambda c: c.on("/status")[-1:] == [b"offline"], 10)
    frames = sorted({m["frame"] for m in got.json("/late/detections")})
    person_frames = [f.index for f in truth if f.has_person]
    # Frames captured while the broker was away (about 4 s of a 15 fps clip) arrive after it returns.
    assert frames[: len(person_frames)] == person_frames, "the first frames, captured while it was down, kept"
