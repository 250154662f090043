"""structlog set-up: JSON lines for journald by default, a readable console on a TTY."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from types import TracebackType
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
MASK = "***"
# Shorter values are not masked: a one- or two-character "secret" would blank that letter
# everywhere in the log, and protects nothing anyway.
MIN_SECRET = 3

_secrets: list[str] = []  # longest first, so a secret that contains another is masked whole
_lock = threading.Lock()


def add_secrets(values: Iterable[str]) -> None:
    """Every later log line, exception text and traceback included, shows these as ``***``
    (camera passwords and query secrets, the broker password: ``config_file.load_config``
    registers them as it reads the config, before anything can fail with one in its message).
    The JSON-escaped form is added too, for values a renderer escapes."""
    forms = set()
    for value in values:
        if len(value) >= MIN_SECRET:
            forms.update({value, json.dumps(value)[1:-1], repr(value)[1:-1]})
    with _lock:
        merged = set(_secrets) | {f for f in forms if len(f) >= MIN_SECRET}
        _secrets[:] = sorted(merged, key=len, reverse=True)


def mask(text: str) -> str:
    """``text`` with every registered secret replaced."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _masked(value: Any) -> Any:
    """The value with secrets masked; an object becomes its masked text here, so no renderer's
    ``repr`` or ``str`` can bring a secret back."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    if isinstance(value, BaseException):
        return mask(repr(value))
    return mask(str(value))


def mask_secrets(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor, after the traceback is formatted: secrets out of every field. An
    event name (a bare identifier, written in code) is left as it is, so a password that happens
    to be a word (``stream``) cannot rename ``source_streaming``; a library's message is masked."""
    if not _secrets:
        return event
    for key, value in event.items():
        if key == "event" and isinstance(value, str) and value.isidentifier():
            continue
        event[key] = _masked(value)
    return event


class _ToStructlog(logging.Handler):
    """Library log records (asyncio, paho, aiomqtt) through structlog: one format, masked."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                fields["exc_info"] = record.exc_info
            method = record.levelname.lower() if record.levelname.lower() in LEVELS else "warning"
            getattr(structlog.get_logger(record.name), method)(record.getMessage(), **fields)
        except Exception:
            self.handleError(record)


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    structlog.get_logger("streamd").error("uncaught_exception", exc_info=(kind, error, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    thread = args.thread.name if args.thread is not None else "?"
    structlog.get_logger("streamd").error(
        "thread_crashed", thread=thread, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )


def configure(fmt: str = "json", level: str = "info", **fields: Any) -> None:
    """Logs go to stderr so stdout stays free for command output (``check``, ``bench``, ``demo``).
    ``fields`` go on every line, from every thread (a worker process: ``worker=1``)."""

    def add_fields(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.update(fields)
        return event

    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()) if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        # One write per line (message and newline together): worker processes share the
        # parent's stderr, and print()'s two writes let two workers' lines run into one.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Tracebacks Python would print itself (a thread's, the main one's) and library log records
    # go through the same processors, so no secret leaves by a side door.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught
    root = logging.getLogger()
    root.handlers = [_ToStructlog()]
    root.setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
