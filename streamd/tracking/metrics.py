"""The tracking feature's metrics, on the daemon's registry (``StageContext.metrics.registry``);
``filtered`` is the shared ``streamd_detections_filtered_total`` (filters, the engine and tracking
all count there: tracks never announced, by ``threshold`` or ``required_zones``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class TrackingMetrics:
    def __init__(self, registry: CollectorRegistry, filtered: Counter) -> None:
        self.filtered = filtered
        self.tracks_active = Gauge(
            "streamd_tracks_active", "Confirmed tracks per source", ["source"], registry=registry
        )
        self.tracks_stationary = Gauge(
            "streamd_tracks_stationary", "Confirmed tracks that stand still", ["source"], registry=registry
        )
        self.track_events = Counter(
            "streamd_track_events",
            "Track events (new, update, end, enter, exit, cross, stationary, active)",
            ["source", "type"],
            registry=registry,
        )
        self.zone_occupancy = Gauge(
            "streamd_zone_occupancy", "Tracked objects inside a zone", ["source", "zone", "label"], registry=registry
        )

    def init_source(self, source: str) -> None:
        """A tracked source's series at 0 (dashboards see 0, not "no data")."""
        self.tracks_active.labels(source)
        self.tracks_stationary.labels(source)
