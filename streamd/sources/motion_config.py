"""``[sources.motion]``: the motion gate's settings (the reader applies them)."""

from __future__ import annotations

from pydantic import Field

from streamd.config_objects import Polygon, Strict


class MotionConfig(Strict):
    """Detection only where something moves: frame differencing on a small grey copy of each frame
    (in the reader thread, beside the decode), against a background that adapts."""

    threshold: int = Field(default=30, ge=1, le=255)  # grey-level change that counts as motion
    # The smallest moving blob: pixels of the small frame, or (at most 1) a fraction of it.
    contour_area: float = Field(default=10.0, gt=0.0)
    frame_height: int = Field(default=100, ge=16, le=1080)  # the small copy's height
    # How fast the background follows the scene: 0.2 absorbs an object that stopped in ~7 frames.
    alpha: float = Field(default=0.2, gt=0.0, le=1.0)
    masks: list[Polygon] = Field(default_factory=list)  # motion here is ignored (clocks, trees)
    # While objects are present, infer at least this often, so one that stands still is kept.
    min_interval: float = Field(default=1.0, gt=0.0, le=3600.0)
    detect_interval: int = Field(default=1, ge=1, le=1000)  # infer at most every Nth frame
    # Infer crops around what moved (at least the network's input size, overlapping ones merged)
    # instead of the whole frame: a small person far away is seen at full resolution.
    regions: bool = False
    max_regions: int = Field(default=4, ge=1, le=16)
