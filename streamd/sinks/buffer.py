"""The durable side of the MQTT buffer: an ordered, bounded queue in SQLite (WAL).

Why SQLite rather than an append-only segment file: ordering (rowid), bounded size (delete
the lowest rowid), deleting acknowledged messages out of order and crash recovery are all one
statement each, and the file survives ``kill -9`` without a recovery pass of our own. WAL with
``synchronous=NORMAL`` means no fsync per message: a committed row survives the process
dying (it is in the OS), though not a power cut between checkpoints; that trade keeps a
buffered publish near 30 us.

Faults: a directory that cannot hold the file is :class:`BufferUnavailable` at start (a config
error: it will not fix itself). A file that is not a database, or a damaged one, is moved aside
(``*.corrupt-<time>``) with what could be read of it carried over. Write errors later (a full
disk) raise ``sqlite3.Error``/``OSError`` to the sink, which falls back to memory.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from streamd.config_objects import directory_problem
from streamd.logging import get_logger

log = get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
)
"""


class BufferUnavailable(Exception):
    """The buffer's directory or file cannot be used at all (read-only, not a directory...)."""


@dataclass(slots=True)
class StoredMessage:
    row: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _usable_directory(directory: Path) -> None:
    problem = directory_problem(directory)
    if problem:
        raise BufferUnavailable(problem)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(SCHEMA)
        # Reading every row proves the file is whole, not just its header (a quick_check would
        # read the same pages, and this also yields the count).
        db.execute("SELECT COUNT(*), SUM(LENGTH(payload)) FROM messages").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def _salvage(path: Path) -> list[tuple[str, bytes, int, int]]:
    """Whatever rows of a damaged buffer can still be read, in order."""
    rows: list[tuple[str, bytes, int, int]] = []
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db,
    ):
        for row in db.execute("SELECT topic, payload, qos, retain FROM messages ORDER BY id"):
            rows.append((str(row[0]), bytes(row[1]), int(row[2]), int(row[3])))
    return rows


class DiskBuffer:
    def __init__(self, path: Path, capacity: int) -> None:
        _usable_directory(path.parent)
        self.path = path
        self.capacity = capacity
        self.salvaged = 0
        self.moved_to: Path | None = None
        try:
            self._db = _connect(path)
        except sqlite3.OperationalError as exc:  # cannot open, read-only, I/O: not the file's fault
            raise BufferUnavailable(f"cannot use {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            self._db = self._replace_corrupt(exc)
        except OSError as exc:
            raise BufferUnavailable(f"cannot open {path}: {exc.strerror}") from None
        self.count = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def _replace_corrupt(self, error: Exception) -> sqlite3.Connection:
        """Keep the damaged file for a post-mortem, start a new one with what could be read."""
        rows = _salvage(self.path)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.moved_to = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            self.path.rename(self.moved_to)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.rename(self.moved_to.with_name(self.moved_to.name + suffix))
            db = _connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise BufferUnavailable(f"{self.path} is damaged ({error}) and cannot be replaced: {exc}") from None
        with db:
            db.executemany(
                "INSERT INTO messages (topic, payload, qos, retain) VALUES (?, ?, ?, ?)", rows[-self.capacity :]
            )
        self.salvaged = min(len(rows), self.capacity)
        log.error(
            "mqtt_buffer_corrupt",
            path=str(self.path),
            error=str(error),
            moved_to=str(self.moved_to),
            salvaged=self.salvaged,
        )
        return db

    def append(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Store one message; returns how many old ones were dropped to make room (0 or 1)."""
        dropped = 0
        with self._db:
            if self.count >= self.capacity:
                cursor = self._db.execute("DELETE FROM messages WHERE id = (SELECT MIN(id) FROM messages)")
                dropped = cursor.rowcount
            self._db.execute(
                "INSERT INTO messages (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                (topic, payload, qos, int(retain)),
            )
        # Counted only once committed: a failed write (full disk) rolled both statements back.
        self.count += 1 - dropped
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

    def check_writable(self) -> None:
        """A real write (committed, then undone): raises while the disk still refuses."""
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS probe (at REAL)")
            self._db.execute("INSERT INTO probe (at) VALUES (?)", (time.time(),))
        with self._db:
            self._db.execute("DELETE FROM probe")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def probe(path: Path) -> str:
    """For ``streamd check``: can the buffer be used, and what waits in it (no changes made
    beyond creating the directory)."""
    _usable_directory(path.parent)
    if not path.exists():
        return "empty (created on first start)"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            count = int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    except sqlite3.Error as exc:
        return f"DAMAGED ({exc}): run moves it aside and keeps what can be read"
    return f"{count} message(s) waiting"
