"""One OpenCV reader thread per source, handing frames to the loop's FrameQueue.

OpenCV's ``read`` blocks (and releases the GIL), so it lives in a thread; frames reach the loop
in batches (``Handoff``), everything else it tells the loop through ``call_soon_threadsafe``.
Host-side resizing also happens here, where it runs in parallel with inference instead of on
the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2

from streamd.config import SourceConfig, is_file_uri
from streamd.images import Decoded, PictureMissing, Transform
from streamd.logging import get_logger
from streamd.metrics import Metrics
from streamd.queue import FrameQueue
from streamd.redact import redact_uri
from streamd.runtime.backoff import Backoff
from streamd.runtime.handoff import Handoff
from streamd.runtime.room import Room
from streamd.sources.decoding import DecodeChoice
from streamd.sources.diagnose import describe_failure, diagnose
from streamd.sources.motion import MotionGate, regions
from streamd.sources.opening import SourceDecoder
from streamd.sources.packets import PacketRelay
from streamd.sources.reading import Capture, EngineInput, decode_slot
from streamd.types import Frame, Picture, Region

if TYPE_CHECKING:
    from streamd.stages import FrameTap

log = get_logger(__name__)


StateCallback = Callable[[str, str], None]


HEALTHY_RESET = 60.0  # a connection that lived this long resets the backoff


class CaptureSource:
    def __init__(
        self,
        config: SourceConfig,
        loop: asyncio.AbstractEventLoop,
        queue: FrameQueue,
        metrics: Metrics,
        on_state: StateCallback,
        transform: Transform,
        engine_input: EngineInput | None = None,
        first_frame: int = 0,
    ) -> None:
        """``engine_input``: what the current engine takes (motion regions, a decoder process's
        ready-made input); ``first_frame``: the number of its first frame (``numbering.FrameNumbers``)."""
        self.config = config
        self.name = config.name
        self.is_file = is_file_uri(config.uri)
        self.finite = self.is_file and not config.loop
        self._loop = loop
        self._queue = queue
        self._metrics = metrics
        self._on_state = on_state
        self._transform = transform
        self._keep_image = config.takes_snapshots
        self.gate = MotionGate(config.motion) if config.motion is not None else None
        self._regions = engine_input if config.motion is not None and config.motion.regions else None
        # Skipped frames travel to the stages only where one needs them (tracking ages its tracks,
        # presence times its OFF, publish_empty reports them): set from the source's route.
        self.forward_skipped = True
        self.taps: tuple[FrameTap, ...] = ()  # live views: see the decoded pictures while they want them
        # Recording: the camera's packets go to its recorder from this one connection.
        self.relay = PacketRelay() if config.recording is not None else None
        self.decoding = DecodeChoice(self.name, config.decode, metrics)  # where its video is decoded
        self._opener = SourceDecoder(config, self.relay, self.decoding, engine_input, self.gate is not None)
        self._stop = threading.Event()
        self.failure: str | None = None  # why it does not open, e.g. "AUTH FAILED (401)" (reader thread)
        self._done: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name=f"streamd-src-{self.name}", daemon=True)
        self._frames = Handoff(loop, self._enqueue)
        self._seq = 0  # frames so far; a frame's number is first_frame + this
        self._first = first_frame
        self._skipped = 0
        self.skipped_by: dict[str, int] = {}  # reason -> frames the motion gate kept from inference
        self._streaming_said = False  # source_streaming: once per connection, not per loop of a file
        self._last_read_seconds = 0.0  # how long the read that ended the last connection took
        self.safe_uri = redact_uri(config.uri)
        # ``block``: free places in this source's share of the queue (the queue gives them back).
        self._room: Room | None = None
        if config.drop == "block":
            self._room = Room(queue.size)
            queue.on_taken(self.name, self._room.give)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await asyncio.shield(self._done)

    @property
    def captured(self) -> int:
        """Frames handed to the queue so far (the next frame's sequence number)."""
        return self._seq

    @property
    def skipped(self) -> int:
        """Of those, frames the motion gate kept from inference."""
        return self._skipped

    # -- reader thread -------------------------------------------------------------------------

    def _crops(self, width: int, height: int) -> list[tuple[int, int, int, int]] | None:
        """Motion regions for this frame, or None for the whole frame (keep-alive, no regions)."""
        if self._regions is None or self.gate is None:
            return None
        limit = self.gate.config.max_regions
        return regions(self.gate.boxes, (width, height), self._regions.input_size(), limit)

    def _wants_pictures(self) -> bool:
        """Whether the whole picture is needed besides the model's input: for snapshots, by a
        live view someone is watching, or because a reload changed the model's input since the
        stream opened (asked per frame, in the reader thread)."""
        return self._keep_image or any(tap.wanted() for tap in self.taps) or self._opener.stale()

    def _state(self, state: str) -> None:
        self._loop.call_soon_threadsafe(self._on_state, self.name, state)

    def _run(self) -> None:
        try:
            self._read_until_done()
        except Exception:
            log.exception("source_crashed", source=self.name)
            self._state("failed")
        finally:
            self._opener.close()
            self._metrics.source_up.labels(self.name).set(0)
            self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _read_until_done(self) -> None:
        delays = Backoff()
        self._state("connecting")
        while not self._stop.is_set():
            if self.is_file and not Path(self.config.uri).is_file():
                log.error("source_missing", source=self.name, uri=self.safe_uri)
                self._metrics.source_errors.labels(self.name, "missing").inc()
                self._state("failed")
                return
            cap = self._opener.open(self._wants_pictures)
            if not cap.isOpened():
                cap.release()
                if self.is_file:
                    log.error("source_unreadable", source=self.name, uri=self.safe_uri)
                    self._metrics.source_errors.labels(self.name, "unreadable").inc()
                    self._state("failed")
                    return
                delay = delays.next_delay()
                reason, status = diagnose(self.config.uri, min(self.config.read_timeout, 5.0))
                self.failure = describe_failure(reason, status)
                self._metrics.source_errors.labels(self.name, reason).inc()
                log.warning(
                    "source_reconnecting",
                    source=self.name,
                    uri=self.safe_uri,
                    reason=reason,
                    status=status,
                    retry_in=round(delay, 1),
                )
                self._metrics.source_reconnects.labels(self.name).inc()
                self._state("reconnecting")
                self._stop.wait(delay)
                continue
            opened = time.monotonic()
            count, expected = self._stream(cap)
            cap.release()
            self._metrics.source_up.labels(self.name).set(0)
            if time.monotonic() - opened > HEALTHY_RESET:
                delays.reset()
            if self._stop.is_set():
                break
            if self.is_file:
                if count == 0:
                    log.error("source_corrupt", source=self.name, uri=self.safe_uri)
                    self._metrics.source_errors.labels(self.name, "corrupt").inc()
                    self._state("failed")
                    return
                if expected > 0 and count < expected:
                    log.warning("source_truncated", source=self.name, frames=count, expected=expected)
                    self._metrics.source_errors.labels(self.name, "truncated").inc()
                if self.config.loop:
                    continue
                log.info("source_ended", source=self.name, frames=self._seq)
                self._state("ended")
                return
            self._metrics.source_reconnects.labels(self.name).inc()
            self._streaming_said = False  # a new connection says so again
            delay = delays.next_delay()
            stalled = self._last_read_seconds >= 0.8 * self.config.read_timeout
            log.warning(
                "source_stream_lost",
                source=self.name,
                uri=self.safe_uri,
                reason=f"no frame for {self.config.read_timeout:g} s (read_timeout)" if stalled else "the stream ended",
                frames=count,
                connected_seconds=round(time.monotonic() - opened, 1),
                retry_in=round(delay, 1),
            )
            self._state("reconnecting")
            self._stop.wait(delay)
        self._state("ended")

    def _stream(self, cap: Capture) -> tuple[int, int]:
        """Read until the end or a stop; returns (frames read, frames the container declares)."""
        cfg = self.config
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps < 1000 else 25.0
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.is_file else 0
        pace = self.is_file and cfg.realtime
        every = 1.0 / cfg.max_fps if cfg.max_fps > 0 else 0.0
        next_due = 0.0
        started = time.monotonic()
        count = 0
        first = True
        while not self._stop.is_set():
            with decode_slot(self.is_file, self._stop) as granted:
                if not granted:
                    break
                # One call (one trip out of the GIL and back) unless sampling may skip the decode.
                asked = time.monotonic()
                grabbed, image = (cap.grab(), None) if every else cap.read()
            if not grabbed:
                self._last_read_seconds = time.monotonic() - asked  # a stall or an end
                break
            count += 1
            if every:
                # Files run on media time, live streams on wall time; sampling skips the decode.
                now_media = count / fps if self.is_file else time.monotonic() - started
                if now_media < next_due:
                    continue
                next_due = max(next_due + every, now_media)
                with decode_slot(self.is_file, self._stop) as granted:
                    ok, image = cap.retrieve() if granted else (False, None)
                if not ok:
                    break
            if image is None:
                break
            if pace:
                ahead = started + count / (fps * cfg.speed) - time.monotonic()
                if ahead > 0 and self._stop.wait(ahead):
                    break
            if first and not self._streaming_said:
                self._streaming_said = True
                log.info(
                    "source_streaming",
                    source=self.name,
                    uri=self.safe_uri,
                    width=image.width,
                    height=image.height,
                    decode=self.decoding.device,
                    fps=round(fps, 2),
                )
            if first:
                self._metrics.source_up.labels(self.name).set(1)
                self.failure = None
                self._state("streaming")
                first = False
            self._deliver(image)
        return count, expected

    def _deliver(self, image: Decoded) -> None:
        height, width = image.height, image.width
        now = time.monotonic()
        skipped = self.gate.decide(image, now) if self.gate is not None else None
        if skipped is not None:
            self._metrics.frames_skipped.labels(self.name, skipped).inc()
            self._skipped += 1
            self.skipped_by[skipped] = self.skipped_by.get(skipped, 0) + 1
            self._show(image, skipped, ())
            if not self.forward_skipped:
                self._seq += 1  # nothing downstream needs it: it ends here, counted
                self._metrics.captured_for(self.name).inc()
                return
            # Not inferred (nor resized): it still goes through the queue and the engine, so the
            # stages see every frame in capture order (tracks age; publish_empty says it was skipped).
            frame = Frame(self.name, self._first + self._seq, time.time(), now, width, height, None, skipped=skipped)
        elif (crops := self._crops(width, height)) is not None:
            assert self._regions is not None
            self._show(image, None, tuple(crops))
            bgr = image.bgr()
            parts = [Region(x, y, w, h, self._regions.tensor(bgr[y : y + h, x : x + w])) for x, y, w, h in crops]
            frame = Frame(self.name, self._first + self._seq, time.time(), now, width, height, None, regions=parts)
            frame.nbytes = sum(int(getattr(p.tensor, "byte_size", 0)) for p in parts)
        else:
            self._show(image, None, ())
            try:
                tensor = self._transform(image)
            except PictureMissing:  # decoded for the model before a reload changed its input
                log.info("frame_not_inferred", source=self.name, reason="the model's input changed")
                return
            frame = Frame(self.name, self._first + self._seq, time.time(), now, width, height, tensor)
            frame.nbytes = int(getattr(tensor, "byte_size", 0) or getattr(tensor, "nbytes", 0))
            if self._keep_image:  # snapshots crop from the decoded frame, not the model's input
                frame.image = image.bgr()
                if frame.nbytes < frame.image.nbytes:  # a host-resized tensor: the frame is held as well
                    frame.nbytes += frame.image.nbytes
        self._seq += 1
        self._metrics.captured_for(self.name).inc()
        if self._room is not None:
            # Lossless: wait for room in this source's share, then in the queue's memory bound.
            while not self._room.take(timeout=0.5):
                if self._stop.is_set():
                    self._loop.call_soon_threadsafe(self._queue.drop, frame, "shutdown")
                    return
            while self._queue.bytes + frame.nbytes > self._queue.max_bytes and len(self._queue) > 0:
                if self._stop.wait(0.01):
                    self._room.give()
                    self._loop.call_soon_threadsafe(self._queue.drop, frame, "shutdown")
                    return
        self._frames.put(frame)

    def _show(self, image: Decoded, skipped: str | None, crops: tuple[tuple[int, int, int, int], ...]) -> None:
        """The picture to the live views that want it now (nothing is made or kept otherwise)."""
        for tap in self.taps:
            if tap.wanted():
                try:
                    picture = image.bgr()
                except PictureMissing:  # decoded before the viewer came: the next one will do
                    return
                motion = tuple(self.gate.boxes) if self.gate is not None else ()
                seq = self._first + self._seq
                tap.offer(Picture(self.name, seq, time.time(), picture, skipped, motion, crops))

    def _enqueue(self, frames: list[Frame]) -> None:
        put, drop = self._queue.put_nowait, self.config.drop
        for frame in frames:
            put(frame, drop)
