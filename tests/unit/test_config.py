"""Configs load, env overrides work, errors name the key (the CLI's exit codes for them:
tests/integration/test_cli_config.py)."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest

from streamd.config import ConfigError
from streamd.config_file import apply_env, load_config, parse_config
from streamd.redact import redact_uri

GOOD = """
[model]
path = "{model}"
device = "CPU"

[[sources]]
name = "door"
uri = "clip.mp4"
"""


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.xml"
    path.write_text("<net/>")
    return path


def test_files_read_as_fast_as_possible_lose_nothing_by_default(tmp_path: Path, model_file: Path) -> None:
    config = tmp_path / "streamd.toml"
    sources = (
        '[[sources]]\nname = "fast"\nuri = "a.mp4"\nrealtime = false\n'
        '[[sources]]\nname = "paced"\nuri = "a.mp4"\n'
        '[[sources]]\nname = "cam"\nuri = "rtsp://cam/s"\nrealtime = false\n'
        '[[sources]]\nname = "chosen"\nuri = "a.mp4"\nrealtime = false\ndrop = "newest"\n'
    )
    config.write_text(GOOD.split("[[sources]]")[0].replace("{model}", str(model_file)) + sources)
    drops = {s.name: s.drop for s in load_config(config, {}).sources}
    assert drops == {"fast": "block", "paced": "oldest", "cam": "oldest", "chosen": "newest"}


def test_env_overrides_any_key(tmp_path: Path, model_file: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(GOOD.replace("{model}", str(model_file)))
    loaded = load_config(
        config,
        {
            "STREAMD_MODEL__DEVICE": "HETERO:GPU,CPU",
            "STREAMD_MODEL__CONFIDENCE": "0.7",
            "STREAMD_MQTT__PORT": "1999",
            "STREAMD_SOURCES__0__URI": "rtsp://cam/stream",
            "STREAMD_MODEL__CPU_OPERATORS": '["MulticlassNms"]',
            "UNRELATED": "x",
        },
    )
    assert loaded.model.device == "HETERO:GPU,CPU"
    assert loaded.model.confidence == 0.7
    assert loaded.mqtt.port == 1999
    assert loaded.sources[0].uri == "rtsp://cam/stream"
    assert loaded.model.cpu_operators == ["MulticlassNms"]
    # Relative file sources resolve against the config file's folder.
    assert load_config(config, {}).sources[0].uri == str(tmp_path / "clip.mp4")


def test_env_override_of_unknown_key_is_named(tmp_path: Path, model_file: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(GOOD.replace("{model}", str(model_file)))
    with pytest.raises(ConfigError, match=r"^model\.colour: unknown key$"):
        load_config(config, {"STREAMD_MODEL__COLOUR": "red"})
    with pytest.raises(ConfigError, match="no list item 3"):
        apply_env({"sources": [{}]}, {"STREAMD_SOURCES__3__URI": "x"})


def test_credentials_are_redacted_whatever_the_password_holds() -> None:
    rng = random.Random(15)
    alphabet = string.ascii_letters + string.digits + "@/:?#%&=;"
    for _ in range(2000):
        secret = "S3" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16))) + "x9"
        for uri in (
            f"rtsp://admin:{secret}@10.0.0.5:554/stream",
            f"rtsp://{secret}@cam/s?user=admin",
            f"http://10.0.0.5/videostream.cgi?user=admin&pwd={secret}",
            f"http://cam/mjpg?Password={secret}&res=hd",
            f"https://u:{secret}@cam/x?token={secret}",
        ):
            shown = redact_uri(uri)
            assert secret not in shown, (uri, shown)
            assert "***" in shown
    assert redact_uri("rtsp://admin:pa@s3cret@host/x") == "rtsp://***@host/x"
    assert redact_uri("rtsp://admin:s3cret/x@host/x") == "rtsp://***@host/x"
    assert redact_uri("http://host/videostream.cgi?user=admin&pwd=s3cret") == (
        "http://host/videostream.cgi?user=admin&pwd=***"
    )
    assert redact_uri("http://cam/x?res=hd&key=abc&fps=5") == "http://cam/x?res=hd&key=***&fps=5"


def test_credentials_are_redacted() -> None:
    assert redact_uri("rtsp://admin:secret@10.0.0.5:554/s") == "rtsp://***@10.0.0.5:554/s"
    assert redact_uri("/var/clips/a.mp4") == "/var/clips/a.mp4"


def test_labels_from_a_file_become_safe_topic_levels(tmp_path: Path) -> None:
    from streamd.inference.labels import load_labels

    labels = tmp_path / "labels.txt"
    labels.write_text("person\n../../esc/a b\np+#\n..\ntraffic light\n")
    assert load_labels(str(labels), "coco80") == ("person", ".._.._esc_a b", "p__", "_", "traffic light")


def test_a_snapshot_dir_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    model = tmp_path / "m.xml"
    model.write_text("<net/>")
    data = {
        "model": {"path": str(model)},
        "sources": [
            {
                "name": "porch",
                "uri": "rtsp://cam/1",
                "tracking": {},
                "snapshots": {"save_dir": str(blocker / "snaps")},
            }
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.key == 'sources["porch"].snapshots.save_dir'
    assert "cannot create" in caught.value.message


def test_a_camera_url_comes_from_the_environment_by_source_name(tmp_path: Path, model_file: Path) -> None:
    """The password stays out of the 0644 config: systemd's EnvironmentFile= (0600) sets it."""
    config = tmp_path / "streamd.toml"
    config.write_text(
        f'[model]\npath = "{model_file}"\n'
        '[[sources]]\nname = "front-door"\nuri = "rtsp://10.0.0.5/stream"\n'
        '[[sources]]\nname = "garage"\nuri = "rtsp://10.0.0.6/stream"\n'
    )
    env = {"STREAMD_SOURCES__FRONT_DOOR__URI": "rtsp://admin:s3cret@10.0.0.5/stream"}
    loaded = load_config(config, env)
    assert [s.uri for s in loaded.sources] == ["rtsp://admin:s3cret@10.0.0.5/stream", "rtsp://10.0.0.6/stream"]
    with pytest.raises(ConfigError, match="no list item porch"):
        load_config(config, {"STREAMD_SOURCES__PORCH__URI": "rtsp://x"})
