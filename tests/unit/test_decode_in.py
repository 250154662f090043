"""Which sources read through a decoder process (``decode_in``): "auto" when decoding on the CPU
only; never a V4L2 camera or a source that records; "process" and "thread" as asked. How many
FFmpeg threads decode a source; how the daemon reads its decoder's messages."""

from __future__ import annotations

import os
import pickle
from multiprocessing.connection import Connection
from typing import Any

import pytest

from streamd.config import SourceConfig
from streamd.recording.config import RecordingConfig
from streamd.sources.decoder_pipe import Messages
from streamd.sources.opening import in_decoder_process
from streamd.sources.packets import decoder_threads
from streamd.tracking.config import TrackingConfig


def source(**values: Any) -> SourceConfig:
    return SourceConfig(name="porch", uri=values.pop("uri", "rtsp://cam/stream"), **values)


@pytest.mark.parametrize(
    ("settings", "device", "expected"),
    [
        ({}, "cpu", True),
        ({}, None, True),
        ({}, "cuda", False),
        ({"decode_in": "process"}, "cuda", True),
        ({"decode_in": "thread"}, "cpu", False),
        ({"uri": "/dev/video0", "decode_in": "process"}, "cpu", False),
        ({"recording": RecordingConfig(), "tracking": TrackingConfig(), "decode_in": "process"}, "cpu", False),
    ],
)
def test_where_a_source_decodes(settings: dict[str, Any], device: str | None, expected: bool) -> None:
    assert in_decoder_process(source(**settings), device) is expected


@pytest.mark.parametrize(
    ("requested", "size", "expected"),
    [(0, (640, 480), 1), (0, (1280, 720), 1), (0, (1920, 1080), 2), (3, (640, 480), 3), (1, (3840, 2160), 1)],
)
def test_decoder_threads_by_the_pictures_size_unless_asked(
    requested: int, size: tuple[int, int], expected: int
) -> None:
    assert decoder_threads(requested, *size) == expected


def test_decoder_messages_are_read_whole_however_the_pipe_splits_them() -> None:
    """Several messages in one read, one message over several reads, and silence."""
    read_end, write_end = os.pipe()
    sender = Connection(write_end, readable=False)
    inbox = Messages(read_end)
    try:
        assert inbox.next(0.01) is None and not inbox.waiting()
        for n in range(3):
            sender.send(("frame", n, "yuv420p", 640, 480, True, False))
        assert inbox.waiting()
        assert [inbox.next(1.0) for _ in range(3)] == [("frame", n, "yuv420p", 640, 480, True, False) for n in range(3)]
        whole = len(pickle.dumps(("layout", 1, 2))).to_bytes(4, "big") + pickle.dumps(("layout", 1, 2))
        os.write(write_end, whole[:3])
        assert inbox.next(0.01) is None  # a part of the length only
        os.write(write_end, whole[3:7])
        assert inbox.next(0.01) is None  # a part of the message only
        os.write(write_end, whole[7:])
        assert inbox.next(1.0) == ("layout", 1, 2)
        sender.close()
        with pytest.raises(EOFError):
            inbox.next(1.0)
    finally:
        inbox.close()
