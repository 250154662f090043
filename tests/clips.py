"""Test clips with known ground truth, made with the demo's clip maker from scikit-image photos."""

from __future__ import annotations

from pathlib import Path

from streamd.demo.clip import ClipFrame, make_clip

MIXED = ["astronaut"] * 6 + [None] * 4 + ["chelsea"] * 4 + ["camera"] * 6 + ["coffee"] * 4 + [None] * 2


def mixed_clip(
    directory: Path, name: str = "mixed.mp4", script: list[str | None] | None = None
) -> tuple[Path, list[ClipFrame]]:
    path = directory / name
    truth = make_clip(path, script or MIXED)
    return path, truth


def box_inside(box: list[float], rect: tuple[int, int, int, int], slack: float = 12.0) -> bool:
    """The detected box lies on the pasted photo (allowing the model's few pixels of slack)."""
    x1, y1, x2, y2 = box
    rx1, ry1, rx2, ry2 = rect
    return x1 >= rx1 - slack and y1 >= ry1 - slack and x2 <= rx2 + slack and y2 <= ry2 + slack


def iou(a: list[float] | tuple[float, ...], b: list[float] | tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
