"""One running source: its reader (and the reader's motion gate), its route down the chain, and
the one way it retires, whether a reload or shutdown stops it, its file ends, or its detect
switch pauses it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from streamd.pipeline import Chain, Route
from streamd.sources.capture import CaptureSource
from streamd.sources.motion import MotionFeedback

Through = Callable[[str], Awaitable[None]]  # the source's queued and in-flight frames are through


class SourceRuntime:
    def __init__(self, reader: CaptureSource, chain: Chain, through: Through) -> None:
        """Built, not started: nothing running is touched (a reload builds every new source
        before it stops an old one)."""
        self.reader = reader
        self.config = reader.config
        self.name = reader.name
        self._chain = chain
        self._through = through
        self.route = self._new_route()

    def _new_route(self) -> Route:
        last = [("MotionFeedback", MotionFeedback(self.reader.gate))] if self.reader.gate is not None else []
        route = self._chain.route(self.config, last)
        # Skipped frames travel to the handlers only where one needs them (tracking ages its
        # tracks, presence times its OFF, publish_empty reports them).
        self.reader.forward_skipped = route.wants_skipped
        self.reader.taps = route.taps
        if self.reader.relay is not None:  # one connection: the camera's packets reach its recorder
            self.reader.relay.attach(route.packets)
        return route

    def start(self, then: Callable[[], None] = lambda: None) -> None:
        """Reader first: a thread that cannot start leaves nothing behind. If ``then`` or the
        handlers fail, the reader is stopped again and the error raised."""
        self.reader.start()
        try:
            then()
            self._chain.attach(self.route)
        except Exception:
            self.reader.stop()
            self._chain.detach(self.route)
            raise

    @property
    def retired(self) -> bool:
        return self.route.finished

    async def retire(
        self, stop_reader: bool = True, timeout: float | None = None, still: Callable[[], bool] = lambda: True
    ) -> None:
        """Stop the reader (if asked), let the queued and in-flight frames through (bounded by
        ``timeout``), then, if ``still()`` holds, the handlers finish (once): tracks end, their
        snapshots go out."""
        if stop_reader:
            self.reader.stop()
            await self.reader.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._through(self.name), timeout)
        if still():
            self._chain.detach(self.route)
            self.reader.taps = ()
            if self.reader.relay is not None:
                self.reader.relay.attach(None)

    def resume(self) -> None:
        """The detect switch is back ON after a pause retired the handlers: they start anew."""
        if self.retired:
            self.route = self._new_route()
            self._chain.attach(self.route)
