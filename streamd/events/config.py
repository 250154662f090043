"""``[events]``: where the event history is kept and for how long."""

from __future__ import annotations

from pydantic import Field, field_validator

from streamd.config_objects import Strict


class EventsConfig(Strict):
    enabled: bool = True  # for sources with [sources.tracking]
    # A SQLAlchemy URL: "" = SQLite, events.db in the state directory (/var/lib/streamd under the
    # unit); "postgresql://user@host/db" for one history shared by every shard and host.
    db: str = ""
    retain_days: float = Field(default=30.0, gt=0, le=36500)  # rows, and the snapshots kept with them
    queue: int = Field(default=10_000, ge=100, le=10_000_000)  # writes waiting; past it the oldest go

    @field_validator("db")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                "must be sqlite:///PATH or postgresql://USER@HOST/DB (or empty: SQLite in the state directory)"
            )
        return value
