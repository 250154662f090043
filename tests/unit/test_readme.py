"""The README's TOML is TOML: every block parses, every commented key parses once uncommented, and
the home setup a newcomer copies is a valid streamd config."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
