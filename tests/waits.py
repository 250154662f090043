"""Waiting in a test for a condition, never for a time: ``until`` polls it and fails saying what
did not happen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """The condition's first true value, polled every 50 ms for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")
