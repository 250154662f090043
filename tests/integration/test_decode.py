"""Where video is decoded (#36): an H.265 camera over RTSP is read, detected and recorded (the
clip decodes); a hardware device that is not there falls back to the CPU with one line and the
metric saying so, and ``auto`` picks the CPU silently; the reader's pictures at the model's
size match a full-size conversion then resize; they are OpenCV's reader's bytes (limited and
full range), and a hardware decoder's NV12 gives the CPU's."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from streamd.demo.broker import free_port
from streamd.images import BgrImage
from streamd.sources.av_image import PlanarImage, av_picture
from streamd.sources.decoding import device_problem
from tests.conftest import Collected, Launch, Streamd
from tests.integration.test_observability import wait_ready
from tests.integration.test_recording import camera, config, get, probe


async def test_an_h265_camera_is_read_detected_and_recorded(
    tmp_path: Path, default_model: Path, broker: Any, subscriber: Collected
) -> None:
    rtsp = camera(tmp_path, codec="h265")
    settings = config(tmp_path, default_model, rtsp.url, broker.port, free_port())
    daemon = await Streamd("run", "-c", str(settings)).start()
    try:
        await subscriber.wait_for(lambda c: c.on("/porch/clip/person"), 120)
        people = [json.loads(p) for p in subscriber.on("/porch/detections")]
        assert any(d["label"] == "person" for m in people for d in m["detections"])
        clip = subscriber.json("/porch/clip/person")[0]
        path = tmp_path / "recordings" / "porch" / clip["file"]
        saved = await asyncio.to_thread(probe, path, "codec_name", "width", "height", "nb_frames", "nb_read_frames")
        assert (saved["codec_name"], saved["width"], saved["height"]) == ("hevc", "640", "480")
        assert saved["nb_read_frames"] == saved["nb_frames"] != "0"
        decode = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"]
        errors = await asyncio.to_thread(subprocess.run, decode, capture_output=True)
        assert errors.returncode == 0 and not errors.stderr, errors.stderr[-500:]
    finally:
        rtsp.kill()
        daemon.signal()
        assert await daemon.wait(30) == 0


@pytest.mark.skipif(device_problem("cuda") is None, reason="this machine decodes on cuda: nothing falls back")
async def test_an_absent_device_falls_back_to_the_cpu_once_and_auto_picks_the_cpu(launch: Launch) -> None:
    sources = [launch.source("wanted", decode="cuda"), launch.source("any", decode="auto")]
    daemon = await launch(sources, http=True)
    try:
        await wait_ready(launch.http_port, 200)
        await daemon.wait_for_event("source_streaming", 2)
        _, _, body = await asyncio.to_thread(get, f"{launch.http}/metrics")
        metrics = body.decode()
        assert 'streamd_source_decode_info{device="cpu",requested="cuda",source="wanted"} 1.0' in metrics
        assert 'streamd_source_decode_info{device="cpu",requested="auto",source="any"} 1.0' in metrics
    finally:
        daemon.signal()
        assert await daemon.wait(30) == 0
    lines = [json.loads(line) for line in daemon.stderr.decode().splitlines() if line.startswith("{")]
    fallbacks = [line for line in lines if line.get("event") == "decode_fallback"]
    assert len(fallbacks) == 1, fallbacks  # the looping file reopens: said once, not per loop
    assert fallbacks[0]["source"] == "wanted" and fallbacks[0]["requested"] == "cuda" and fallbacks[0]["reason"]
    streaming = {line["source"]: line["decode"] for line in lines if line.get("event") == "source_streaming"}
    assert streaming == {"wanted": "cpu", "any": "cpu"}


def test_pictures_at_the_models_size_match_a_full_conversion_then_resize(tmp_path: Path) -> None:
    """A 1080p H.264 frame scaled from its planes (4:2:0 and NV12, as NVDEC hands them over)
    is the full-size BGR frame resized, within rounding."""
    import cv2

    clip = tmp_path / "t1080.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-t", "0.5",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )  # fmt: skip
    with av.open(str(clip)) as container:
        frame = next(container.decode(video=0))
    full = frame.to_ndarray(format="bgr24")
    expected = cv2.cvtColor(cv2.resize(full, (300, 300), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    for planes in (frame, frame.reformat(format="nv12")):
        picture = av_picture(planes)
        assert np.abs(picture.bgr().astype(int) - full).mean() < 3
        scaled = av_picture(planes).scaled((300, 300), rgb=True)
        assert scaled.shape == (300, 300, 3) and np.abs(scaled.astype(int) - expected).mean() < 4
        assert scaled.flags.c_contiguous and picture.bgr().flags.c_contiguous  # an ov.Tensor shares it
        assert picture.grey((192, 108)).shape == (108, 192)


@pytest.mark.parametrize("layout", ["yuv420p", "nv12"])
def test_the_decoder_process_writes_the_same_model_input_bytes_as_the_reader_makes(tmp_path: Path, layout: str) -> None:
    """``scaled_into`` (the decoder process: straight into the slot, the colour order chosen at
    the conversion) against ``scaled`` (the reader thread), on the photos' 640x480 clip: smaller
    than twice the model's size (converted whole, then resized), at the model's size, and a
    1080p frame (scaled by planes)."""
    from tests.clips import mixed_clip

    clip, _ = mixed_clip(tmp_path)
    with av.open(str(clip)) as container:
        frames = [f.reformat(format=layout) for f in container.decode(video=0)][:12]
    frames.append(frames[0].reformat(width=1920, height=1080))
    compared = 0
    for frame in frames:
        for size in ((300, 300), (frame.width, frame.height), (320, 192)):
            for rgb in (True, False):
                out = np.zeros((size[1], size[0], 3), np.uint8)
                picture = av_picture(frame)
                assert isinstance(picture, PlanarImage)
                picture.scaled_into(size, rgb, out)
                assert np.array_equal(out, av_picture(frame).scaled(size, rgb)), (layout, frame.width, size, rgb)
                if frame.width < 2 * size[0] or frame.height < 2 * size[1]:  # as OpenCV's reader did
                    assert np.array_equal(out, BgrImage(picture.bgr()).scaled(size, rgb))
                compared += 1
    assert compared == 13 * 3 * 2


@pytest.mark.parametrize("pixel_format", ["yuv420p", "yuvj420p"])
def test_pictures_are_opencv_readers_bytes_in_limited_and_full_range(tmp_path: Path, pixel_format: str) -> None:
    """Frame for frame, the full-size BGR picture and the model's input (made by the reader
    thread's way and the decoder process's, from PyAV's frame and from stacked planes) are what
    OpenCV's ``VideoCapture`` then resize give, byte for byte: also for a full-range camera
    (``yuvj420p``), whose colours a limited-range conversion stretches."""
    import cv2

    from tests.clips import mixed_clip

    source, _ = mixed_clip(tmp_path)
    clip = tmp_path / f"{pixel_format}.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(source), "-c:v", "libx264", "-pix_fmt", pixel_format, str(clip)], check=True
    )
    opencv = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    compared = 0
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            ok, expected = opencv.read()
            assert ok
            expected_input = cv2.cvtColor(
                cv2.resize(expected, (300, 300), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB
            )
            picture = av_picture(frame)
            assert isinstance(picture, PlanarImage)
            stacked = np.empty((frame.height * 3 // 2, frame.width), np.uint8)
            picture.stack_into(stacked)
            from_slot = PlanarImage.from_stacked(pixel_format, stacked, frame.width, frame.height)
            model_input = np.zeros((300, 300, 3), np.uint8)
            av_picture(frame).scaled_into((300, 300), True, model_input)
            assert np.array_equal(picture.bgr(), expected), compared
            assert np.array_equal(from_slot.bgr(), expected), compared
            assert np.array_equal(model_input, expected_input), compared
            assert np.array_equal(av_picture(frame).scaled((300, 300), True), expected_input), compared
            if pixel_format == "yuvj420p":  # full range said by the frame, not the pixel format (HEVC, NVDEC)
                marked = av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")
                marked.color_range = 2  # AVCOL_RANGE_JPEG
                assert np.array_equal(av_picture(marked).bgr(), expected), compared
            compared += 1
    assert compared == 26


def test_a_hardware_decoders_nv12_gives_the_bytes_of_the_same_picture_decoded_on_the_cpu(tmp_path: Path) -> None:
    """NVDEC hands over NV12, the CPU decoder I420, of the same decoded picture: the model's input
    (1080p, scaled by planes; 640x480, converted whole then resized) and the full-size picture are
    the same bytes either way, so ``decode = "cuda"`` detects what CPU decoding does."""
    from tests.clips import mixed_clip

    clip, _ = mixed_clip(tmp_path)
    with av.open(str(clip)) as container:
        frames = [f for f in container.decode(video=0)][:6]
    frames += [frame.reformat(width=1920, height=1080) for frame in frames[:3]]
    for frame in frames:
        nv12 = frame.reformat(format="nv12")
        for size in ((300, 300), (320, 192)):
            expected = av_picture(frame).scaled(size, True)
            assert np.array_equal(av_picture(nv12).scaled(size, True), expected), (frame.width, size)
            out = np.zeros((size[1], size[0], 3), np.uint8)
            av_picture(nv12).scaled_into(size, True, out)
            assert np.array_equal(out, expected), (frame.width, size)
        assert np.array_equal(av_picture(nv12).bgr(), av_picture(frame).bgr()), frame.width
