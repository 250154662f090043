"""Reading the config: TOML, ``STREAMD_*`` overrides, relative paths, then validation into one
:class:`~streamd.config.Config`, every problem reported as ``key.path: what is wrong``."""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, Field, ValidationError, create_model

from streamd.config import Config, ConfigError, SourceConfig, is_file_uri
from streamd.logging import add_secrets
from streamd.redact import uri_secrets

ENV_PREFIX = "STREAMD_"


def _dotted(loc: tuple[int | str, ...], data: Mapping[str, Any] | None = None) -> str:
    """``sources["porch"].max_fsp``: list items by their name where they have one (an operator
    knows the camera's name, not its index), else ``[index]``."""
    key = ""
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            valid = isinstance(name, str) and re.fullmatch(r"[a-z0-9_-]{1,64}", name)
            key += f'["{name}"]' if valid else f"[{part}]"  # an invalid name is itself the error
            node = item
        else:
            key += f".{part}" if key else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return key


@functools.cache
def config_model() -> type[Config]:
    """``Config`` whose ``[[sources]]`` also take a ``[sources.<name>]`` section for every
    registered stage that declares ``settings`` (a plugin's): its keys are validated, misspelt
    ones answered with "did you mean", and without the plugin installed it is an unknown key."""
    from streamd.stages import registered

    extra: dict[str, Any] = {
        cls.name: (cls.settings | None, None)
        for cls in registered()
        if cls.settings is not None and cls.name not in SourceConfig.model_fields
    }
    if not extra:
        return Config
    source = create_model("SourceConfig", __base__=SourceConfig, **extra)
    composed = create_model("Config", __base__=Config, sources=(list[source], Field(min_length=1)))
    return composed


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model a key path leads to (for "did you mean")."""
    model: Any = config_model()
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """``SourceConfig`` out of ``list[SourceConfig]``, ``TrackingConfig | None``, ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(get_args(annotation)):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _describe(error: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> ConfigError:
    loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
    key = _dotted(loc, data)
    kind = error["type"]
    if kind == "extra_forbidden" and key == "mqtt.password":
        return ConfigError(
            key, "inline passwords are refused: put it in a file and set mqtt.password_file (systemd: LoadCredential=)"
        )
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1) if model else []
        return ConfigError(key, "unknown key" + (f"; did you mean {close[0]}?" if close else ""))
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


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd's ``EnvironmentFile=`` reads them (``#`` comments, blank
    lines, an optional ``export``, values optionally in quotes), so ``streamd check --env-file``
    sees the cameras' URLs the unit gives ``run``. Its values are never shown."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--env-file", f"cannot read {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError("--env-file", f"{path}, line {number}: not NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``STREAMD_MQTT__HOST=x`` sets ``mqtt.host``; ``STREAMD_SOURCES__0__URI`` a list item, and
    ``STREAMD_SOURCES__FRONT_DOOR__URI`` the source named ``front-door`` (``-`` written ``_``): how a
    camera's password stays out of the config file (systemd ``EnvironmentFile=``, mode 0600)."""
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node: Any = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit():
                    named = [
                        n
                        for n, item in enumerate(node)
                        if isinstance(item, dict) and str(item.get("name", "")).replace("-", "_") == part
                    ]
                    part = str(named[0]) if named else part
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
        return config_model().model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error, data) for error in exc.errors()]
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
    add_secrets(_secrets_in(data))
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


def _secrets_in(data: Mapping[str, Any]) -> set[str]:
    """The camera URLs' secrets and the broker password, known before validation can fail (or a
    reader, a connect or a diagnosis can), so the log masks them from the first line on."""
    found: set[str] = set()
    sources = data.get("sources")
    for source in sources if isinstance(sources, list) else []:
        uri = source.get("uri") if isinstance(source, dict) else None
        if isinstance(uri, str):
            found |= uri_secrets(uri)
    for section in ("mqtt", "http"):  # the broker's password, the web page's
        table = data.get(section)
        password_file = table.get("password_file") if isinstance(table, dict) else None
        if isinstance(password_file, str) and password_file:
            with contextlib.suppress(OSError, UnicodeDecodeError):  # the MQTT sink says so when it connects
                found.add(Path(password_file).expanduser().read_text().strip())
    return found


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
