"""The events table on SQLAlchemy Core, the same statements for SQLite (WAL) and PostgreSQL.
The schema is versioned: migrations run at start, and a database newer than this code is
refused, naming both versions (an older streamd must not write rows it does not understand)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    insert,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

SCHEMA_VERSION = 1
metadata = MetaData()
events = Table(
    "events",
    metadata,
    Column("id", String(96), primary_key=True),  # "{first seen, ms}-{source}-{track id}": unique across restarts
    Column("track_id", Integer, nullable=False),  # the MQTT events' id
    Column("source", String(64), nullable=False),
    Column("label", String(64), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=True),
    Column("top_score", Float, nullable=False),
    Column("zones", Text, nullable=False),  # JSON: every zone it entered
    Column("lines", Text, nullable=False),  # JSON: every line it crossed
    Column("stationary", Boolean, nullable=False),
    Column("snapshot", Text, nullable=True),
    Column("clip", Text, nullable=True),
    Column("updated", Float, nullable=False),
)
Index("events_start", events.c.start)
Index("events_source_start", events.c.source, events.c.start)
Index("events_label_start", events.c.label, events.c.start)
versions = Table("streamd_schema", metadata, Column("version", Integer, nullable=False))
MIGRATIONS: dict[int, Sequence[Table]] = {1: (events,)}  # version -> what it adds


class SchemaTooNew(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(
            f"the event database has schema version {found}; this streamd knows up to {SCHEMA_VERSION}: "
            "upgrade streamd, or point [events] db at another database"
        )


@dataclass(frozen=True)
class Query:
    source: str | None = None
    label: str | None = None
    zone: str | None = None
    after: float | None = None
    before: float | None = None
    limit: int = 50
    before_id: str | None = None


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'events.db'}"


class EventStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg://", 1), pool_pre_ping=True, future=True
        )
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._dialect = self.engine.dialect.name

    def migrate(self) -> int:
        """Brings the schema to SCHEMA_VERSION; returns the version found (0: a new database).
        Worker processes start together on one database: one that loses the race to create the
        tables tries again once the other has."""
        for attempt in range(3):
            try:
                return self._migrate()
            except DBAPIError:
                if attempt == 2:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def _migrate(self) -> int:
        with self.engine.begin() as connection:
            versions.create(connection, checkfirst=True)
            found = connection.execute(select(versions.c.version)).scalar() or 0
            if found > SCHEMA_VERSION:
                raise SchemaTooNew(found)
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for table in MIGRATIONS[version]:
                    table.create(connection, checkfirst=True)
                    for index in table.indexes:
                        index.create(connection, checkfirst=True)
            if found < SCHEMA_VERSION:  # one row, whoever else migrated at the same time
                connection.execute(delete(versions))
                connection.execute(insert(versions).values(version=SCHEMA_VERSION))
        return int(found)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Inserts or updates the rows, all in one transaction (all or nothing)."""
        if not rows:
            return
        statement: Any = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(events)
        updates = {c.name: statement.excluded[c.name] for c in events.columns if c.name not in ("id", "start")}
        with self.engine.begin() as connection:
            connection.execute(statement.on_conflict_do_update(index_elements=["id"], set_=updates), list(rows))

    def query(self, wanted: Query) -> list[dict[str, Any]]:
        """Newest first (by start, then id)."""
        statement = select(events).order_by(events.c.start.desc(), events.c.id.desc()).limit(wanted.limit)
        conditions = []
        if wanted.source:
            conditions.append(events.c.source == wanted.source)
        if wanted.label:
            conditions.append(events.c.label == wanted.label)
        if wanted.zone:
            conditions.append(events.c.zones.contains(json.dumps(wanted.zone)))
        if wanted.after is not None:
            conditions.append(events.c.start >= wanted.after)
        if wanted.before is not None:
            conditions.append(events.c.start < wanted.before)
        with self.engine.connect() as connection:
            if wanted.before_id:
                start = connection.execute(select(events.c.start).where(events.c.id == wanted.before_id)).scalar()
                if start is None:
                    return []
                conditions.append(
                    or_(events.c.start < start, and_(events.c.start == start, events.c.id < wanted.before_id))
                )
            rows = connection.execute(statement.where(*conditions)).mappings().all()
        return [_shown(row) for row in rows]

    def get(self, event_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(events).where(events.c.id == event_id)).mappings().first()
        return _shown(row) if row is not None else None

    def prune(self, older_than: float) -> int:
        """Rows that ended before ``older_than`` go (their files keep their own retention)."""
        with self.engine.begin() as connection:
            result = connection.execute(delete(events).where(events.c.end < older_than))
        return int(result.rowcount or 0)

    def close(self) -> None:
        self.engine.dispose()


def _shown(row: Any) -> dict[str, Any]:
    shown = dict(row)
    shown["zones"] = json.loads(shown["zones"])
    shown["lines"] = json.loads(shown["lines"])
    return shown


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers never wait for the writer; a crash loses at most the last transaction."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
