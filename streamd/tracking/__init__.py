"""Tracks, zones and lines: per-frame detections turned into events."""
