"""Recording as a stage after tracking: for each recording source, a handler tells the source's
:class:`Recorder` when a track of a recorded label starts and ends; finished clips are announced
on ``{source}/clip/{label}`` (JSON, QoS 1, retained: the last clip per label) and counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from streamd.config import SourceConfig
from streamd.logging import get_logger
from streamd.recording.config import RecordingConfig
from streamd.recording.metrics import RecordingMetrics
from streamd.recording.recorder import Clip, Recorder
from streamd.stages import SourceHandler, Stage, StageContext
from streamd.timestamps import rfc3339
from streamd.types import Result

log = get_logger(__name__)

CLIPS_PATH = "/clips"  # served by the health/metrics server: /clips/{source}/{file}


class RecordingStage(Stage):
    name = "recording"
    order = 450

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self._notices = context.notices
        self._sink = context.publisher
        self._metrics = RecordingMetrics(context.metrics.registry)
        self._public_url = context.config.http.public_url  # before the clip's path in its message
        self.stopped: dict[str, str] = {}  # sources whose recording is stopped, and why (/readyz)
        self._recorders: set[Recorder] = set()
        self._recording: set[str] = set()  # sources whose recorder runs (a retired one's last word is moot)

    def for_source(self, config: SourceConfig) -> SourceRecording | None:
        if config.recording is None:
            return None
        loop = asyncio.get_running_loop()
        source = config.name

        def on_loop(function: Callable[..., object], *first: object) -> Callable[..., None]:
            """Called on the writer thread, run on the loop."""

            def call(*rest: object) -> None:
                loop.call_soon_threadsafe(function, *(first + rest))

            return call

        recorder = Recorder(
            source,
            config.recording,
            announce=on_loop(self._announce),
            fault=on_loop(self._fault, source),
            stored=on_loop(self._stored, source),
            dropped=on_loop(self._fault, source, "backlog", "the writer fell behind: packets dropped"),
        )
        return SourceRecording(recorder, config.recording, self)

    def started(self, recorder: Recorder) -> None:
        self._metrics.init_source(recorder.source, recorder.config)
        self._recorders = {r for r in self._recorders if r.alive}  # those of retired sources, once done
        self._recorders.add(recorder)
        self._recording.add(recorder.source)
        recorder.start()

    def finished(self, recorder: Recorder) -> None:
        recorder.close()  # its thread finishes the open clip (shutdown waits for it: drain)
        self._recording.discard(recorder.source)
        self.stopped.pop(recorder.source, None)

    def problems(self) -> list[str]:
        return list(self.stopped.values())

    async def drain(self, timeout: float) -> None:
        """Shutdown: the open clips are finished and announced before the sink closes."""
        recorders, self._recorders = list(self._recorders), set()
        for recorder in recorders:
            recorder.close()
        await asyncio.gather(*(asyncio.to_thread(r.join, max(timeout, 0.1)) for r in recorders))
        await asyncio.sleep(0)  # the announcements, handed over from the writer threads

    def _announce(self, clip: Clip) -> None:
        self.stopped.pop(clip.source, None)
        for track_id, label in clip.tracks:
            payload = {
                "id": track_id,
                "label": label,
                "start": rfc3339(clip.start),
                "end": rfc3339(clip.end),
                "seconds": round(clip.end - clip.start, 3),
                "file": clip.path.name,
                "url": f"{self._public_url}{CLIPS_PATH}/{clip.source}/{clip.path.name}",
                "bytes": clip.bytes,
                "codec": clip.codec,
            }
            topic = self._sink.topic(clip.source, f"clip/{label.replace(' ', '_')}")
            self._sink.publish(topic, json.dumps(payload), qos=1, retain=True)
            self._metrics.clips.labels(clip.source, label).inc()
            self._notices.post("clip", clip.source, {"track_id": track_id, "file": str(clip.path)})
        log.info("clip_saved", source=clip.source, file=str(clip.path), bytes=clip.bytes, tracks=len(clip.tracks))

    def _stored(self, source: str, total: int) -> None:
        self._metrics.bytes.labels(source).set(total)

    def _fault(self, source: str, reason: str | None, message: str | None) -> None:
        if reason is None:
            self.stopped.pop(source, None)
            return
        self._metrics.errors.labels(source, reason).inc()
        if source in self._recording:  # not for a source that is gone: /readyz speaks of the running
            self.stopped[source] = f"recording {source} stopped ({message or reason})"


class SourceRecording(SourceHandler):
    """One source's recorder, told which tracks start and end."""

    end_key = "clip"  # nothing is added to the end event: the clip comes post_capture later

    def __init__(self, recorder: Recorder, config: RecordingConfig, stage: RecordingStage) -> None:
        self.packets = recorder
        self._recorder = recorder
        self._labels = frozenset(config.labels)
        self._stage = stage
        self._active: set[int] = set()
        self._last_ts = 0.0

    def start(self) -> None:
        self._stage.started(self._recorder)

    def on_result(self, result: Result) -> None:
        self._last_ts = result.frame.ts
        for track in result.tracks:
            if track.id not in self._active and (not self._labels or track.label in self._labels):
                self._active.add(track.id)
                self._recorder.track_started(track.id, track.label, result.frame.ts)

    def track_ended(self, track_id: int) -> None:
        if track_id in self._active:
            self._active.discard(track_id)
            self._recorder.track_ended(track_id, self._last_ts)

    def finish(self) -> None:
        self._stage.finished(self._recorder)
