"""The per-frame detections message on ``{source}/detections``."""
