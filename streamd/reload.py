"""What a SIGHUP changes: a pure diff of two configs, so the daemon applies only that."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamd.config import Config

# Sections a running daemon cannot change in place (connections, listeners, queue sizes).
RESTART_SECTIONS = ("mqtt", "metrics", "queue", "log")


@dataclass(frozen=True)
class ReloadPlan:
    model_changed: bool = False
    added: list[str] = field(default_factory=list)  # sources new in the file
    removed: list[str] = field(default_factory=list)  # sources gone from the file
    restarted: list[str] = field(default_factory=list)  # sources whose settings changed
    needs_restart: list[str] = field(default_factory=list)  # sections kept at their running values

    @property
    def stopped(self) -> list[str]:
        return self.removed + self.restarted

    @property
    def started(self) -> list[str]:
        return self.added + self.restarted


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    before = {s.name: s for s in old.sources}
    after = {s.name: s for s in new.sources}
    return ReloadPlan(
        model_changed=new.model != old.model,
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        restarted=[n for n in after if n in before and after[n] != before[n]],
        needs_restart=[n for n in RESTART_SECTIONS if getattr(new, n) != getattr(old, n)],
    )
