"""The last seconds of a camera's packets, whole groups of pictures (a clip can only start on a
keyframe), bounded in seconds and in bytes."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from streamd.sources.packets import StoredPacket


class PacketRing:
    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._groups: deque[list[StoredPacket]] = deque()  # each starts with a keyframe
        self.bytes = 0

    def add(self, packet: StoredPacket) -> None:
        if packet.keyframe:
            self._groups.append([])
        elif not self._groups:
            return  # before the stream's first keyframe: nothing can decode it
        self._groups[-1].append(packet)
        self.bytes += len(packet.data)
        # Keep the latest group that starts at or before ``seconds`` ago, and all after it.
        horizon = packet.wall - self.seconds
        while len(self._groups) > 1 and (self._groups[1][0].wall <= horizon or self.bytes > self.max_bytes):
            self.bytes -= sum(len(p.data) for p in self._groups.popleft())

    def since(self, wall: float) -> Iterator[StoredPacket]:
        """Packets from the last keyframe at or before ``wall`` (else the oldest kept) on."""
        groups = list(self._groups)
        start = 0
        for index, group in enumerate(groups):
            if group[0].wall <= wall:
                start = index
        for group in groups[start:]:
            yield from group

    def clear(self) -> None:
        """A new connection: its packets do not continue the old ones."""
        self._groups.clear()
        self.bytes = 0
