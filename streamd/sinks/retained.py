"""The retained topics published for each source, so that a source removed for good takes them
with it (its state, switches, presence, Home Assistant's discovery configs)."""

from __future__ import annotations


class RetainedTopics:
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix + "/"
        self._by_source: dict[str, set[str]] = {}

    def published(self, topic: str, present: bool) -> None:
        """A retained publish: ``{prefix}/{source}/...`` is the source's; an empty payload clears."""
        owner, sep, _ = topic[len(self._prefix) :].partition("/") if topic.startswith(self._prefix) else ("", "", "")
        if sep:
            self.own(owner, topic, present)

    def own(self, source: str, topic: str, present: bool = True) -> None:
        if present:
            self._by_source.setdefault(source, set()).add(topic)
        elif source in self._by_source:
            self._by_source[source].discard(topic)

    def take(self, source: str) -> list[str]:
        """The source's retained topics, forgotten here (the caller clears them)."""
        return sorted(self._by_source.pop(source, set()))
