"""Which sources read through a decoder process (``decode_in``): "auto" when decoding on the CPU
only; never a V4L2 camera or a source that records; "process" and "thread" as asked."""

from __future__ import annotations

from typing import Any

import pytest

from streamd.config import SourceConfig
from streamd.recording.config import RecordingConfig
from streamd.sources.opening import in_decoder_process
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
