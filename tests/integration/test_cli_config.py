"""Bad configs exit 78 with a one-line error that names the key, from `streamd check` and `run`
as a real process (what an operator sees)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_config import GOOD


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.xml"
    path.write_text("<net/>")
    return path


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamd", "check", "-c", str(config)], capture_output=True, text=True, timeout=60
    )


BAD_CASES = [
    ("unknown key", GOOD.replace('device = "CPU"', 'device = "CPU"\ncolour = "red"'), "model.colour: unknown key"),
    ("wrong type", GOOD.replace('device = "CPU"', 'confidence = "high"'), "model.confidence:"),
    ("out of range", GOOD.replace('device = "CPU"', "confidence = 1.5"), "model.confidence:"),
    ("missing model", GOOD.replace("{model}", "/nonexistent/model.xml"), "model.path: model file not found"),
    ("bad source name", GOOD.replace('name = "door"', 'name = "Front Door"'), "sources[0].name:"),
    ("topic chars", GOOD.replace('name = "door"', 'name = "a/#"'), "sources[0].name:"),
    ("duplicate source", GOOD + '\n[[sources]]\nname = "door"\nuri = "x.mp4"\n', "duplicate source name 'door'"),
    ("no sources", GOOD.split("[[sources]]")[0], "sources: required key is missing"),
    ("bad drop policy", GOOD + 'drop = "sometimes"\n', 'sources["door"].drop:'),
    ("typo", GOOD + "max_fsp = 5\n", 'sources["door"].max_fsp: unknown key; did you mean max_fps?'),
    (
        "model typo",
        GOOD.replace("[model]", "[model]\nconfidance = 0.5"),
        "model.confidance: unknown key; did you mean confidence?",
    ),
    ("bad listen", GOOD + '\n[metrics]\nlisten = "nowhere"\n', "metrics.listen: must be HOST:PORT"),
    # Camera footage is private (#34): a listen address other hosts reach needs a user.
    ("public, no user", GOOD + '\n[http]\nlisten = "0.0.0.0:9108"\n', "http.listen: '0.0.0.0:9108' is reachable"),
    ("old key, public", GOOD + '\n[metrics]\nlisten = "[::]:9108"\n', "http.listen: '[::]:9108' is reachable"),
    ("user, no password", GOOD + '\n[http]\nusername = "me"\n', "http: username needs password_file"),
    ("unknown table", GOOD + "\n[camera]\nx = 1\n", "camera: unknown key"),
    ("bad toml", GOOD + "\n[model\n", "invalid TOML"),
    ("inline password", GOOD + '\n[mqtt]\npassword = "hunter2"\n', "mqtt.password: inline passwords are refused"),
    ("topic prefix", GOOD + '\n[mqtt]\ntopic_prefix = "a/b"\n', "mqtt.topic_prefix: must be non-empty with no"),
    ("bad device", GOOD.replace('device = "CPU"', 'device = "HETERO:"'), "model.device:"),
    ("long source name", GOOD.replace('name = "door"', f'name = "{"d" * 70000}"'), "sources[0].name: at most 64"),
    ("long instance", GOOD + f'\n[mqtt]\ninstance = "{"i" * 300}"\n', "mqtt.instance: at most 64"),
    ("nul in instance", GOOD + '\n[mqtt]\ninstance = "a\\u0000b"\n', "mqtt.instance: must not contain control"),
    ("recording untracked", GOOD + "\n[sources.recording]\n", 'sources["door"]: recording makes a clip per tracked'),
    (
        "recording raw frames",
        GOOD.replace('uri = "clip.mp4"', 'uri = "/dev/video0"') + "\n[sources.tracking]\n[sources.recording]\n",
        'sources["door"]: recording keeps the camera\'s compressed stream, and a V4L2 device sends raw frames',
    ),
    # #32: hostile numbers crashed a source, looped a traceback, flooded the broker or exhausted memory.
    ("read_timeout inf", GOOD + "read_timeout = inf\n", 'sources["door"].read_timeout:'),
    ("read_timeout huge", GOOD + "read_timeout = 1e300\n", 'sources["door"].read_timeout:'),
    ("speed tiny", GOOD + "speed = 1e-300\n", 'sources["door"].speed:'),
    ("keepalive", GOOD + "\n[mqtt]\nkeepalive = 70000\n", "mqtt.keepalive:"),
    ("stats flood", GOOD + "\n[daemon]\nstats_interval = 1e-6\n", "daemon.stats_interval:"),
    ("requests", GOOD.replace('device = "CPU"', "infer_requests = 100000"), "model.infer_requests:"),
    ("nan", GOOD.replace('device = "CPU"', "confidence = nan"), "model.confidence:"),
    (
        "recording dir",
        GOOD + '\n[sources.tracking]\n[sources.recording]\ndir = "/proc/clips"\n',
        'sources["door"].recording.dir: cannot create /proc/clips',
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_config_exits_78_naming_the_key(
    tmp_path: Path, model_file: Path, case: str, text: str, expected: str
) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(text.replace("{model}", str(model_file)))
    result = run_check(config)
    assert result.returncode == 78, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_every_error_is_reported_at_once(tmp_path: Path, model_file: Path) -> None:
    config = tmp_path / "streamd.toml"
    text = GOOD.split("[[sources]]")[0].replace("{model}", str(model_file))
    config.write_text(text + "confidence = 7\n[queue]\nsize = 'big'\n")
    result = run_check(config)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith("streamd: config error: ") for line in lines)
    keys = sorted(line.removeprefix("streamd: config error: ").split(":")[0] for line in lines)
    assert keys == ["model.confidence", "queue.size", "sources"]


def test_bad_device_string_exits_78_from_run_too(tmp_path: Path, model_file: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(GOOD.replace("{model}", str(model_file)).replace('device = "CPU"', 'device = "GPU,CPU"'))
    result = subprocess.run(
        [sys.executable, "-m", "streamd", "run", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 78 and "model.device:" in result.stderr and "Traceback" not in result.stderr


def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    result = run_check(tmp_path / "absent.toml")
    assert result.returncode == 78 and "config file not found" in result.stderr


def test_unreadable_model_exits_69(tmp_path: Path, model_file: Path) -> None:
    config = tmp_path / "streamd.toml"
    config.write_text(GOOD.replace("{model}", str(model_file)))
    result = run_check(config)
    assert result.returncode == 69, result.stderr
    assert "cannot read model" in result.stderr and "Traceback" not in result.stderr
