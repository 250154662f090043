"""Split the configured sources between N instances with no coordinator: rendezvous hashing.

Each source goes to the instance with the highest hash of (source name, instance index), so
every instance computes the same split on its own, and going from N to N+1 instances moves
only the ~1/(N+1) of the sources the new instance wins (nothing moves between old ones).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass

from streamd.config import Config, ConfigError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N``; ``auto/N`` takes I from a StatefulSet-style host name (``streamd-2`` -> 2)."""
        match = re.fullmatch(r"\s*(\d+|auto)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ConfigError("shard", f"{text!r}: expected INDEX/COUNT, e.g. 0/3, or auto/3")
        index_text, count = match.group(1), int(match.group(2))
        if index_text == "auto":
            host = os.environ.get("HOSTNAME") or socket.gethostname()
            ordinal = re.search(r"-(\d+)$", host)
            if not ordinal:
                raise ConfigError("shard", f"auto/{count}: host name {host!r} does not end in -<ordinal>")
            index_text = ordinal.group(1)
        index = int(index_text)
        if count < 1 or not 0 <= index < count:
            raise ConfigError("shard", f"{text!r}: need 0 <= INDEX < COUNT")
        return cls(index, count)


def owner(source: str, count: int) -> int:
    """The instance index that takes ``source`` among ``count`` instances."""

    def weight(index: int) -> int:
        digest = hashlib.blake2b(f"{source}\0{index}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    return max(range(count), key=weight)


def apply(config: Config, shard: Shard) -> Config:
    """This instance's share of the sources, publishing under ``{instance}-{index}``."""
    mine = [s for s in config.sources if owner(s.name, shard.count) == shard.index]
    mqtt = config.mqtt.model_copy(update={"instance": f"{config.mqtt.instance}-{shard.index}"})
    return config.model_copy(update={"sources": mine, "mqtt": mqtt})
