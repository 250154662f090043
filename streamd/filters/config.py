"""``filters`` (per label, overridable per zone) and the rules they hold: the filters feature's settings."""

from __future__ import annotations

from pydantic import Field, model_validator

from streamd.config_objects import Strict


class ObjectFilter(Strict):
    """What a detection (or a track) must be to count, as Frigate's ``objects.filters``.

    Areas at most 1.0 are fractions of the frame's area, larger ones pixels. Ratios are
    width / height (a standing person is about 0.4)."""

    min_area: float = Field(default=0.0, ge=0.0)
    max_area: float | None = Field(default=None, gt=0.0)
    min_ratio: float = Field(default=0.0, ge=0.0)
    max_ratio: float | None = Field(default=None, gt=0.0)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)  # per detection
    # Median score over the track's last scores before its 'new' is published (tracking only).
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    required_zones: list[str] = Field(default_factory=list)  # no 'new' until it enters one

    @model_validator(mode="after")
    def _ranges(self) -> ObjectFilter:
        max_area = self.max_area
        if (
            max_area is not None
            and self.min_area > 0
            and _same_unit(self.min_area, max_area)
            and max_area < self.min_area
        ):
            raise ValueError(f"max_area ({self.max_area}) is below min_area ({self.min_area})")
        if self.max_ratio is not None and self.max_ratio < self.min_ratio:
            raise ValueError(f"max_ratio ({self.max_ratio}) is below min_ratio ({self.min_ratio})")
        return self


def _same_unit(a: float, b: float) -> bool:
    return (a <= 1.0) == (b <= 1.0)
