"""A third-party stage end to end (#33): examples/stage-plugin installed with pip into streamd's
environment, enabled by the TOML in its README, run on a file with the real model and a real
broker; its own tests pass; uninstalled, the same config is a config error naming the key."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, Collected, Launch, Streamd

PLUGIN = REPO / "examples" / "stage-plugin"


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed() -> Iterator[None]:
    result = pip("install", "--quiet", str(PLUGIN))  # as its README says
    assert result.returncode == 0, result.stderr
    try:
        yield
    finally:
        pip("uninstall", "--yes", "--quiet", "streamd-dwell")


def readme_settings() -> dict[str, object]:
    block = re.search(r"```toml\n(.*?)```", (PLUGIN / "README.md").read_text(), flags=re.S)
    assert block is not None
    source = tomllib.loads(block.group(1))["sources"][0]
    assert "tracking" in source
    return dict(source["dwell"])


async def test_the_example_plugin_runs_from_its_readme_and_uninstalled_is_an_unknown_key(
    installed: None, launch: Launch, subscriber: Collected
) -> None:
    own = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PLUGIN,
    )
    assert own.returncode == 0, own.stdout + own.stderr
    # The README's settings, with an alert the test clip's 0.4 s astronaut reaches.
    settings = readme_settings() | {"alert_after": 0.2}
    settings.pop("area")  # the clip's person stands in the upper half too: the whole frame
    source = launch.source("porch", loop=False, tracking={"min_hits": 2}, dwell=settings)
    daemon = await launch([source])
    assert await daemon.wait(120) == 0, daemon.stderr.decode()[-3000:]
    await subscriber.wait_for(lambda c: c.on("/porch/dwell/alert") and c.on("/porch/dwell/person"), 30)
    alert = json.loads(subscriber.on("/porch/dwell/alert")[0])
    assert alert["label"] == "person" and alert["seconds"] >= 0.2
    stay = json.loads(subscriber.on("/porch/dwell/person")[0])
    assert stay["id"] == alert["id"] and stay["seconds"] >= alert["seconds"]
    ends = [e for e in subscriber.json("/porch/events") if e["type"] == "end" and e["id"] == stay["id"]]
    assert ends and ends[0]["dwell"] == {"seconds": stay["seconds"]}, "the end event carries it"

    pip("uninstall", "--yes", "--quiet", "streamd-dwell")
    check = await Streamd("check", "-c", str(launch.config)).start()
    assert await check.wait(60) == 78
    assert 'sources["porch"].dwell: unknown key' in check.stderr.decode(), check.stderr.decode()


def test_every_built_in_stage_is_declared_as_an_entry_point() -> None:
    from streamd.stages import registered

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["streamd.stages"]
    assert {cls.name for cls in registered()} >= set(declared)
    assert set(declared) == {
        "filters",
        "stats",
        "tracking",
        "snapshots",
        "recording",
        "presence",
        "detections",
        "live",
        "events",
    }
