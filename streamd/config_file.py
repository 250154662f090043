"""Reading the config: TOML, ``STREAMD_*`` overrides, relative paths, then validation into one
:class:`~streamd.config.Config`, every problem reported as ``key.path: what is wrong``."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamd.config import Config, ConfigError, is_file_uri

ENV_PREFIX = "STREAMD_"


def _dotted(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _describe(error: Mapping[str, Any]) -> ConfigError:
    loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
    key = _dotted(loc)
    kind = error["type"]
    if kind == "extra_forbidden" and key == "mqtt.password":
        return ConfigError(
            key, "inline passwords are refused: put it in a file and set mqtt.password_file (systemd: LoadCredential=)"
        )
    if kind == "extra_forbidden":
        return ConfigError(key, "unknown key")
    if kind == "missing":
        return ConfigError(key, "required key is missing")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error.get("input") is not None and kind not in ("value_error",):
        message += f" (got {error['input']!r})"
    return ConfigError(key, message)


def _env_value(raw: str) -> Any:
    """Parse an override as a TOML value (numbers, booleans, arrays), else keep the string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``STREAMD_MQTT__HOST=x`` sets ``mqtt.host``; ``STREAMD_SOURCES__0__URI`` a list item."""
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node: Any = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(_dotted(tuple(path[:i])), f"{name}: no list item {part}")
                if last:
                    node[int(part)] = _env_value(raw)
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = _env_value(raw)
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(".".join(path[:i]), f"{name}: not a table")
    return data


def parse_config(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        raise ConfigError(problems[0].key, problems[0].message, problems[1:]) from None


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, validate; raise ConfigError naming the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: invalid TOML: {exc}") from None
    data = apply_env(data, os.environ if environ is None else environ)
    base = path.parent
    # Relative model and file paths are relative to the config file, like systemd units do.
    model = data.get("model")
    if isinstance(model, dict) and isinstance(model.get("path"), str):
        model["path"] = str(_resolve(base, model["path"]))
    for source in data.get("sources", []) if isinstance(data.get("sources"), list) else []:
        uri = source.get("uri") if isinstance(source, dict) else None
        if isinstance(uri, str) and is_file_uri(uri):
            source["uri"] = str(_resolve(base, uri))
    return parse_config(data)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def dump_config(config: Config) -> str:
    """The config as TOML that ``load_config`` reads back to the same Config (the bench writes
    one for the processes it starts). Nested tables are written inline; None means the default."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str):
            return json.dumps(item)
        if isinstance(item, list | tuple):
            return "[" + ", ".join(value(v) for v in item) + "]"
        if isinstance(item, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(v)}" for k, v in item.items() if v is not None) + " }"
        raise TypeError(f"cannot write {item!r} as TOML")

    def table(data: dict[str, Any]) -> list[str]:
        return [f"{json.dumps(k)} = {value(v)}" for k, v in data.items() if v is not None]

    data = config.model_dump(mode="json")
    lines: list[str] = []
    for name, section in data.items():
        if name != "sources":
            lines += [f"[{name}]", *table(section), ""]
    for source in data["sources"]:
        lines += ["[[sources]]", *table(source), ""]
    return "\n".join(lines)
