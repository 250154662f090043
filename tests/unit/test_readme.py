"""The README's TOML is TOML: every block parses, every commented key parses once uncommented, and
the home setup a newcomer copies is a valid streamd config."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from streamd.config_file import parse_config

README = Path(__file__).resolve().parents[2] / "README.md"
KEY_LINE = re.compile(r"^#\s?([a-z_]+\s*=\s*.+)$")


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)


def test_every_toml_block_parses_and_every_commented_key_alone() -> None:
    blocks = _toml_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        tomllib.loads(block)
        for line in block.splitlines():
            match = KEY_LINE.match(line.strip())
            if match is None:
                continue
            text = match.group(1)
            assert ";" not in text.split("#")[0], f"one key per line: {line!r}"
            tomllib.loads(text)  # uncommented, it is valid TOML


def test_the_home_setup_is_a_valid_config(tmp_path: Path) -> None:
    home = next(b for b in _toml_blocks() if 'name = "front-door"' in b and "discovery = true" in b)
    data = tomllib.loads(home)
    model = tmp_path / "model.xml"
    model.write_text("<net/>")
    data["model"]["path"] = str(model)
    data["sources"][0]["snapshots"]["save_dir"] = str(tmp_path / "snapshots")
    data["mqtt"]["password_file"] = str(tmp_path / "password")
    config = parse_config(data)
    front, garden = config.sources
    assert front.tracking is not None and front.zones[0].name == "porch" and front.snapshots is not None
    assert front.motion is not None and garden.motion is not None and config.mqtt.discovery


def _sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)


def test_streamd_is_on_path_before_the_readme_first_calls_it() -> None:
    """#37: after the two commands, bare `streamd` was called with .venv not activated."""
    text = README.read_text()
    activate = text.index(". .venv/bin/activate")
    first_bare = min(m.start() for m in re.finditer(r"(?m)^(?:\$ )?streamd \w+", text))
    assert activate < first_bare and activate < text.index("## A home setup")


def test_the_home_setup_puts_the_model_where_it_points_and_checks_with_the_cameras_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#37: the example's model.path did not exist after the demo, and `check` without the unit's
    EnvironmentFile said AUTH FAILED."""
    from streamd.demo.model import default_model_path

    home = next(b for b in _toml_blocks() if 'name = "front-door"' in b and "discovery = true" in b)
    setup = next(b for b in _sh_blocks() if "streamd.demo.model" in b and "--env-file" in b)
    model_line = next(line for line in setup.splitlines() if "streamd.demo.model" in line)
    data = re.search(r"STREAMD_DATA=(\S+)", model_line)
    assert data is not None
    monkeypatch.setenv("STREAMD_DATA", data.group(1))
    assert str(default_model_path()) == tomllib.loads(home)["model"]["path"]
    check = next(line for line in setup.splitlines() if " check " in line)
    env = re.search(r"--env-file (\S+)", check)
    assert env is not None and env.group(1) == "/etc/streamd/cameras.env"
    cameras = next(b for b in _sh_blocks() if "STREAMD_SOURCES__FRONT_DOOR__URI" in b and "cameras.env" in b)
    lines = [line for line in cameras.splitlines() if line and not line.startswith("#")]
    environment = tmp_path / "cameras.env"
    environment.write_text("\n".join(lines) + "\n")
    from streamd.config_file import read_env_file

    names = set(read_env_file(environment))
    assert names == {"STREAMD_SOURCES__FRONT_DOOR__URI", "STREAMD_SOURCES__GARDEN__URI"}
