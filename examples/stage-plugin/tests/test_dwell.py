"""The plugin's own test: its clock, and its settings as streamd validates them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from streamd_dwell import DwellClock, DwellSettings


def test_the_alert_goes_out_once_per_stay_and_the_end_says_how_long() -> None:
    clock = DwellClock(alert_after=2.0)
    assert clock.seen(7, 10.0, True) is None
    assert clock.seen(7, 11.5, True) is None
    assert clock.seen(7, 12.0, True) == 2.0
    assert clock.seen(7, 13.0, True) is None, "one alert per stay"
    assert clock.gone(7) == 3.0


def test_leaving_the_area_starts_the_stay_over() -> None:
    clock = DwellClock(alert_after=1.0)
    clock.seen(1, 0.0, True)
    assert clock.seen(1, 0.9, False) is None
    assert clock.seen(1, 1.5, True) is None and clock.seen(1, 2.5, True) == 1.0


def test_settings_are_checked() -> None:
    assert DwellSettings().alert_after == 30.0
    with pytest.raises(ValidationError):
        DwellSettings(alert_after=-1)
    with pytest.raises(ValidationError):
        DwellSettings.model_validate({"alert_afer": 3})
