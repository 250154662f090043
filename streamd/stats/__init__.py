"""Per-frame counters and the ``{prefix}/{instance}/stats`` message."""
