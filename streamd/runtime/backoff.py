"""Exponential backoff with jitter, shared by source reconnects and the MQTT sink."""

from __future__ import annotations

import random


class Backoff:
    """1 s, 2 s, 4 s ... capped, each drawn from [d/2, d]: no reconnect storms after an outage."""

    def __init__(self, start: float = 1.0, cap: float = 60.0) -> None:
        self.start, self.cap, self.attempt = start, cap, 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.start * 2**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
