"""plan_reload: the pure diff a SIGHUP applies."""

from __future__ import annotations

from pathlib import Path

from streamd.config import Config
from streamd.config_file import parse_config
from streamd.reload import plan_reload


def config(tmp_path: Path, sources: dict[str, str], confidence: float = 0.4, port: int = 1883) -> Config:
    model = tmp_path / "m.xml"
    model.write_text("<net/>")
    return parse_config(
        {
            "model": {"path": str(model), "confidence": confidence},
            "sources": [{"name": n, "uri": u} for n, u in sources.items()],
            "mqtt": {"port": port},
        }
    )


def test_nothing_changed_is_an_empty_plan(tmp_path: Path) -> None:
    plan = plan_reload(config(tmp_path, {"a": "a.mp4"}), config(tmp_path, {"a": "a.mp4"}))
    assert not plan.model_changed and not plan.stopped and not plan.started and not plan.needs_restart


def test_sources_added_removed_and_changed(tmp_path: Path) -> None:
    old = config(tmp_path, {"keep": "k.mp4", "gone": "g.mp4", "moved": "m1.mp4"})
    new = config(tmp_path, {"keep": "k.mp4", "moved": "m2.mp4", "fresh": "f.mp4"})
    plan = plan_reload(old, new)
    assert (plan.added, plan.removed, plan.restarted) == (["fresh"], ["gone"], ["moved"])
    assert plan.stopped == ["gone", "moved"] and plan.started == ["fresh", "moved"]
    assert "keep" not in plan.stopped + plan.started, "an unchanged source is not touched"


def test_model_and_restart_only_sections(tmp_path: Path) -> None:
    plan = plan_reload(config(tmp_path, {"a": "a.mp4"}), config(tmp_path, {"a": "a.mp4"}, confidence=0.5, port=1884))
    assert plan.model_changed and plan.needs_restart == ["mqtt"]
