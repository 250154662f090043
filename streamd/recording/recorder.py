"""A recording source's writer thread: it keeps the ring of recent packets and opens, writes and
closes clips as tracks start and end. Disk work never runs on the reader thread (a slow disk
must not cost frames) nor on the event loop.

Overlapping tracks of one source share one clip: it starts ``pre_capture`` seconds before the
first of them appeared (on the keyframe before), and ends ``post_capture`` seconds after the last
of them ended; every track it covers is announced with it. A clip that reaches ``max_seconds``
ends on a keyframe and the next one goes on from it.

A write the disk refuses (full, over the file size limit, read-only) abandons the clip (its
temporary file is removed) and stops recording for the source, said once with the reason;
after ``RETRY_AFTER`` seconds the next packet with a track active tries again, so recording
resumes by itself when the disk has room.
"""

from __future__ import annotations

import errno
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamd.logging import get_logger
from streamd.private import private_folder
from streamd.recording.clip import OWN_CLIP, OWN_PARTIAL, ClipFile, partial_name
from streamd.recording.config import RecordingConfig
from streamd.recording.ring import PacketRing
from streamd.retention import prune
from streamd.sources.packets import StoredPacket, StreamTemplate

log = get_logger(__name__)

RETRY_AFTER = 10.0  # seconds after a refused write before recording tries again
# Packets reach the writer thread in batches of this many seconds: waking it per packet cost the
# reader a quarter of its speed on 2 cores (benchmarks/README.md, "Recording").
HANDOFF_EVERY = 0.25
MAX_BACKLOG = 200  # batches waiting for the writer thread (50 s); past it they are dropped, counted
SWEEP_EVERY = 600.0  # seconds between retention sweeps when no clip finishes


@dataclass(frozen=True)
class Clip:
    """A finished clip and the tracks it shows: (track id, label)."""

    source: str
    path: Path
    start: float  # wall clock of its first and last packets
    end: float
    bytes: int
    codec: str
    tracks: list[tuple[int, str]]


@dataclass
class _Open:
    file: ClipFile
    tracks: dict[int, str] = field(default_factory=dict)  # covered so far: id -> label
    active: set[int] = field(default_factory=set)
    close_at: float | None = None  # wall clock: post_capture after the last track ended


Announce = Callable[[Clip], None]
Fault = Callable[[str | None, str | None], None]  # (reason, message), (None, None): recording again
Stored = Callable[[int], None]  # bytes of the source's clips on disk


class Recorder:
    def __init__(
        self,
        source: str,
        config: RecordingConfig,
        announce: Announce,
        fault: Fault,
        stored: Stored,
        dropped: Callable[[], None],
    ) -> None:
        """The callbacks run on the writer thread: they hand over to the loop themselves."""
        self.source = source
        self.config = config
        self.folder = config.directory / source
        self._announce, self._fault, self._stored, self._dropped = announce, fault, stored, dropped
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._batch: list[StoredPacket] = []  # the reader thread's, until handed over
        self._thread = threading.Thread(target=self._run, name=f"streamd-rec-{source}", daemon=True)
        self._ring = PacketRing(config.pre_capture + 1.0, config.ring_bytes)
        self._template: StreamTemplate | None = None
        self._clip: _Open | None = None
        # Tracks started and not ended: a clip is (re)opened for them when there is none (after a
        # refused write, a reconnect, or a clip that reached max_seconds).
        self._active: dict[int, str] = {}
        self._failed_until = 0.0
        self._failing = False
        self._last_sweep = 0.0

    # -- any thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def opened(self, template: StreamTemplate) -> None:
        """The reader thread: a new connection (its last packets go first)."""
        self._hand_over()
        self._inbox.put(("opened", template))

    def packet(self, packet: StoredPacket) -> None:
        """The reader thread: one packet, handed over with the others every ``HANDOFF_EVERY``."""
        batch = self._batch
        batch.append(packet)
        if packet.wall - batch[0].wall >= HANDOFF_EVERY:
            self._hand_over()

    def _hand_over(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self._inbox.qsize() > MAX_BACKLOG:
            self._dropped()
            return
        self._inbox.put(("packets", batch))

    def track_started(self, track_id: int, label: str, wall: float) -> None:
        self._inbox.put(("start", (track_id, label, wall)))

    def track_ended(self, track_id: int, wall: float) -> None:
        self._inbox.put(("end", (track_id, wall)))

    def close(self) -> None:
        """The source is done: the open clip is finished with what it has, the thread ends."""
        self._inbox.put(("close", None))

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the writer thread -----------------------------------------------------------------------

    def _resolve_folder(self) -> None:
        """A source folder that is a link is followed once, here, and written and pruned where it
        leads (retention never follows links: it would never prune a linked folder)."""
        if self.folder.is_symlink():
            resolved = self.folder.resolve()
            log.warning("recording_folder_linked", source=self.source, folder=str(self.folder), to=str(resolved))
            self.folder = resolved

    def _run(self) -> None:
        try:
            self._resolve_folder()
            self._sweep(time.time())  # also removes what a crash left half-written
            while True:
                kind, value = self._inbox.get()
                if kind == "packets":
                    for packet in value:
                        self._on_packet(packet)
                elif kind == "start":
                    self._on_start(*value)
                elif kind == "end":
                    self._on_end(*value)
                elif kind == "opened":
                    self._on_opened(value)
                else:
                    break
            if self._clip is not None:
                self._finish(self._clip)
        except Exception as exc:  # a bug, not a disk: said, and recording stops for the source
            log.exception("recorder_crashed", source=self.source)
            self._fault("crashed", repr(exc))

    def _on_opened(self, template: StreamTemplate) -> None:
        """A new connection (or a file's next loop): its timestamps start over."""
        if self._clip is not None:
            self._finish(self._clip)
        self._ring.clear()
        self._template = template

    def _on_packet(self, packet: StoredPacket) -> None:
        self._ring.add(packet)
        clip = self._clip
        if clip is None:
            if self._active and packet.keyframe and packet.wall >= self._failed_until:
                self._open(packet.wall - self.config.pre_capture, dict(self._active))
            elif packet.wall - self._last_sweep > SWEEP_EVERY:
                self._sweep(packet.wall)
            return
        started = clip.file.first_wall
        if packet.keyframe and started is not None and packet.wall - started >= self.config.max_seconds:
            active = {i: clip.tracks[i] for i in clip.active}
            self._finish(clip)  # long enough: the next clip starts on this keyframe
            if active:
                self._open(packet.wall, active)
            return
        if not self._write(clip, packet):
            return
        if clip.close_at is not None and packet.wall >= clip.close_at:
            self._finish(clip)

    def _on_start(self, track_id: int, label: str, wall: float) -> None:
        self._active[track_id] = label
        clip = self._clip
        if clip is not None:
            clip.tracks[track_id] = label
            clip.active.add(track_id)
            clip.close_at = None
            return
        if time.time() >= self._failed_until:
            self._open(wall - self.config.pre_capture, dict(self._active))

    def _on_end(self, track_id: int, wall: float) -> None:
        self._active.pop(track_id, None)
        clip = self._clip
        if clip is not None and track_id in clip.active:
            clip.active.discard(track_id)
            if not clip.active:
                clip.close_at = wall + self.config.post_capture

    def _open(self, since: float, tracks: dict[int, str]) -> None:
        if self._template is None:
            return  # no packets yet: opened on the first keyframe with the tracks still active
        backlog = list(self._ring.since(since))
        if not backlog:
            return
        name = time.strftime("%Y%m%d-%H%M%S", time.gmtime(backlog[0].wall)) + f"-{min(tracks)}"
        path = self.folder / f"{name}.mp4"
        serial = 1
        while path.exists():
            path = self.folder / f"{name}-{serial}.mp4"
            serial += 1
        try:
            private_folder(self.folder)
            file = ClipFile(path, self._template)
        except Exception as exc:
            self._refused(exc)
            return
        clip = _Open(file, dict(tracks), set(tracks))
        self._clip = clip
        for packet in backlog:
            if not self._write(clip, packet):
                return
        if self._failing:
            self._failing = False
            log.info("recording_resumed", source=self.source)
            self._fault(None, None)

    def _write(self, clip: _Open, packet: StoredPacket) -> bool:
        try:
            clip.file.write(packet)
        except Exception as exc:
            clip.file.abandon()
            self._clip = None
            self._refused(exc)
            return False
        return True

    def _finish(self, clip: _Open) -> None:
        self._clip = None
        try:
            size = clip.file.finish()
        except Exception as exc:
            clip.file.abandon()
            self._refused(exc)
            return
        assert clip.file.first_wall is not None
        self._announce(
            Clip(
                self.source,
                clip.file.path,
                clip.file.first_wall,
                clip.file.last_wall,
                size,
                clip.file.codec,
                sorted(clip.tracks.items()),
            )
        )
        self._sweep(time.time(), just_announced=clip.file.path.name)

    def _sweep(self, now: float, just_announced: str | None = None) -> None:
        """Retention; the clip just announced is kept whatever ``max_bytes`` says, and so is the
        one being written (its temporary name); other temporary files are a crash's leftovers."""
        self._last_sweep = now
        keep = {just_announced} if just_announced else set()
        if self._clip is not None:
            keep.add(partial_name(self._clip.file.path).name)
        total, deleted = prune(
            self.folder,
            OWN_CLIP,
            self.config.retain_days * 86400.0,
            self.config.max_bytes,
            now,
            keep=keep,
            partials=OWN_PARTIAL,
        )
        if deleted:
            log.info("clips_deleted", source=self.source, files=len(deleted), kept_bytes=total)
        self._stored(total)

    def _refused(self, exc: Exception) -> None:
        self._failed_until = time.time() + RETRY_AFTER
        reason = _reason(exc)
        if not self._failing:  # once per outage, not per packet
            self._failing = True
            log.error("recording_stopped", source=self.source, reason=reason, error=str(exc), retry_in=RETRY_AFTER)
        self._fault(reason, f"{reason}: {exc}")


def _reason(exc: Exception) -> str:
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return "no_space"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "unwritable"
    return "write_error"
