"""Exit codes and the start-up failures every entry point reports the same way (the CLI, the
checker and the worker processes import this; none of them imports another)."""

from __future__ import annotations

import sys

from streamd.config import ConfigError
from streamd.inference.model import ModelUnavailable
from streamd.inference.placement import PlacementError
from streamd.logging import mask
from streamd.sinks.refusal import MqttUnavailable

EX_OK = 0
EX_SOFTWARE = 1
EX_NOINPUT = 66  # every source was a file that could not be read
EX_UNAVAILABLE = 69  # the model, the broker or (check) a source cannot be used now
EX_CONFIG = 78


def config_failure(exc: ConfigError) -> int:
    """Every problem found, one line each naming its key; exit 78 (EX_CONFIG)."""
    for line in exc.lines():
        print(f"streamd: config error: {mask(line)}", file=sys.stderr)
    return EX_CONFIG


def startup_failure(exc: Exception) -> int:
    """One line on stderr and the exit code for what can go wrong before the first frame."""
    if isinstance(exc, ConfigError):
        return config_failure(exc)
    if isinstance(exc, PlacementError):
        print(f"streamd: config error: model.device: {mask(str(exc))}", file=sys.stderr)
        return EX_CONFIG
    if isinstance(exc, ModelUnavailable | MqttUnavailable):
        print(f"streamd: {mask(str(exc))}", file=sys.stderr)
        return EX_UNAVAILABLE
    raise exc
