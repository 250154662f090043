"""The live view as a stage (the public contract): a handler per source that sees its pictures
while someone looks, and its latest boxes; the web routes (``api.py``) read them."""

from __future__ import annotations

from streamd.config import Config, SourceConfig
from streamd.live.view import LiveSource
from streamd.stages import SourceHandler, Stage, StageContext


class LiveStage(Stage):
    name = "live"
    order = 950  # after the payload: it only looks

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self.views: dict[str, LiveSource] = {}  # the running sources'

    @classmethod
    def wanted(cls, config: Config) -> bool:
        return bool(config.http.listen)

    def for_source(self, source: SourceConfig) -> SourceHandler:
        return LiveSource(source, self.views)
