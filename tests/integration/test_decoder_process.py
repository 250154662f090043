"""Sources decoded in a process of their own (``decoder = "process"``, the default, #36): the
reader gets the same pictures and model inputs as decoding in its thread; a decoder killed with
SIGKILL is logged, counted and replaced while the camera keeps streaming; the camera's password
never reaches the decoder's command line; the decoder dies with the daemon."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from streamd.demo.broker import free_port
from streamd.images import PictureMissing
from streamd.sources.decoder_process import SLOTS, DecoderProcess, ProcessCapture
from streamd.sources.packets import PacketCapture
from tests.clips import mixed_clip
from tests.conftest import Collected, Streamd, write_config
from tests.integration.test_observability import http, samples, value, wait_ready
from tests.integration.test_sources import rtsp_camera
from tests.waits import until

SECRET = "s3cret-Pa55"


def decoders_of(pid: int) -> list[int]:
    """The ``streamd-decode`` processes among ``pid``'s children."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "streamd-decode":
                    found.append(int(child))
            except OSError:
                continue
    return found


def test_the_decoder_process_gives_what_the_reader_thread_gives(tmp_path: Path) -> None:
    """Frame for frame: the model's input (made in the decoder), the full-size BGR frame and the
    motion gate's grey picture are the thread's, bit for bit; the next pass of a looping file
    goes through the same process."""
    clip, truth = mixed_clip(tmp_path)
    target = ((300, 300), True)
    decoder = DecoderProcess("door")
    try:
        pids = []
        for _ in range(2):  # two passes, as a looping file reopens
            thread = PacketCapture(str(clip), None, 10.0, "tcp", 2)
            process = ProcessCapture(decoder, str(clip), 10.0, "tcp", 2, None, lambda reason: None, target)
            assert process.isOpened() and process.get(0) == 0.0
            count = 0
            while True:
                ok, mine = process.read()
                expected_ok, theirs = thread.read()
                assert ok == expected_ok
                if not ok:
                    break
                assert mine is not None and theirs is not None
                assert (mine.scaled(*target) == theirs.scaled(*target)).all(), count
                assert (mine.bgr() == theirs.bgr()).all(), count
                assert (mine.grey((160, 120)) == theirs.grey((160, 120))).all(), count
                count += 1
            assert count == len(truth)
            pids.append(decoder.pid)
            process.release()
            thread.release()
        assert pids[0] is not None and pids[0] == pids[1]
    finally:
        decoder.close()
    assert decoder.pid is None


def test_pictures_come_only_while_wanted_the_model_input_always(tmp_path: Path) -> None:
    """Nobody wants the pictures (no snapshots, no viewer): the decoder hands over the model's
    input alone; once wanted, the pictures come again within the frames already decoded."""
    clip, truth = mixed_clip(tmp_path)
    wanted = [False]
    decoder = DecoderProcess("door")
    process = ProcessCapture(
        decoder, str(clip), 10.0, "tcp", 2, None, lambda reason: None, ((300, 300), True), lambda: wanted[0]
    )
    try:
        missing = 0
        for index in range(len(truth)):
            if index == 10:
                wanted[0] = True
            ok, picture = process.read()
            assert ok and picture is not None
            assert picture.scaled((300, 300), True).shape == (300, 300, 3)
            try:
                picture.bgr()
            except PictureMissing:
                missing += 1
                with pytest.raises(PictureMissing):  # another model's input needs the picture
                    picture.scaled((320, 320), True)
                assert index < 10 + SLOTS, index  # at most the frames decoded before it was asked
        assert missing >= 10
        assert not process.grab()
    finally:
        process.release()
        decoder.close()


def test_a_file_that_is_not_video_opens_nothing_and_the_decoder_waits_for_the_next(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(50_000))
    clip, truth = mixed_clip(tmp_path)
    decoder = DecoderProcess("door")
    try:
        bad = ProcessCapture(decoder, str(junk), 5.0, "tcp", 2, None, lambda reason: None, None)
        assert not bad.isOpened() and not bad.grab()
        bad.release()
        good = ProcessCapture(decoder, str(clip), 5.0, "tcp", 2, None, lambda reason: None, None)
        frames = 0
        while good.grab():
            frames += 1
        good.release()
        assert frames == len(truth)
    finally:
        decoder.close()


async def test_a_killed_decoder_is_logged_counted_and_replaced(
    tmp_path: Path, default_model: Path, broker, subscriber: Collected
) -> None:
    camera = rtsp_camera(tmp_path, credentials=f"viewer:{SECRET}")
    port = free_port()
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "gate", "uri": camera.url, "read_timeout": 3.0}],
        broker.port,
        http={"listen": f"127.0.0.1:{port}"},
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    try:
        await subscriber.wait_for(lambda c: len(c.on("/gate/detections")) >= 10, 90)
        assert daemon.process is not None
        daemon_pid = daemon.process.pid
        (first,) = await until(lambda: decoders_of(daemon_pid), 10, "a decoder process")
        command = await asyncio.to_thread(Path(f"/proc/{first}/cmdline").read_bytes)
        assert SECRET.encode() not in command and b"rtsp" not in command
        os.kill(first, signal.SIGKILL)
        exited = await daemon.wait_for_event("decoder_exited", 1, 30)
        assert exited["source"] == "gate" and exited["returncode"] == -signal.SIGKILL
        assert SECRET not in exited["uri"]
        await subscriber.wait_for(lambda c: c.on("/gate/state").count(b"streaming") >= 2, 60)
        before = len(subscriber.on("/gate/detections"))
        await subscriber.wait_for(lambda c: len(c.on("/gate/detections")) >= before + 5, 60)
        (second,) = await until(lambda: decoders_of(daemon_pid), 10, "a new decoder process")
        assert second != first
        await wait_ready(port, 200)
        _, text = await http(f"http://127.0.0.1:{port}/metrics")
        assert value(samples(text), "streamd_source_reconnects_total", source="gate") >= 1
    finally:
        camera.kill()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(30) == 0
    assert SECRET.encode() not in daemon.stderr


async def test_the_decoder_dies_with_the_daemon(tmp_path: Path, default_model: Path, broker) -> None:
    clip, _ = mixed_clip(tmp_path)
    config = write_config(
        tmp_path / "streamd.toml",
        default_model,
        [{"name": "door", "uri": str(clip), "loop": True, "realtime": True}],
        broker.port,
    )
    daemon = await Streamd("run", "-c", str(config)).start()
    await daemon.wait_for_event("source_streaming", 1, 60)
    assert daemon.process is not None
    (decoder,) = await until(lambda: decoders_of(daemon.process.pid), 10, "a decoder process")  # type: ignore[union-attr]
    daemon.process.kill()
    await daemon.wait(30)
    await until(lambda: not Path(f"/proc/{decoder}").exists() or _zombie(decoder), 10, "the decoder gone")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
