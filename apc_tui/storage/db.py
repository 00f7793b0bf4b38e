"""The SQLite store: one file, WAL, foreign keys on, busy timeout, per-thread connections."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from engine.errors import ConfigError

from .migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 30_000


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Store:
    """Owns the database path; hands each thread its own connection."""

    def __init__(self, path: Path | str, *, migrate: bool = True):
        self.path = Path(path).expanduser()
        self._local = threading.local()
        if migrate:
            self.migrate()

    # -- connections -------------------------------------------------------------------
    def _connect(self) -> sqlite_utils.Database:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open database {self.path}: {exc}; pass --db PATH (or set APC_DB) to a writable file"
            ) from exc
        return sqlite_utils.Database(conn)

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction (BEGIN IMMEDIATE: writers queue on the busy timeout)."""
        db = self.db
        if db.conn.in_transaction:  # nested: join the outer transaction
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- migrations --------------------------------------------------------------------
    def applied_migrations(self) -> list[str]:
        db = self.db
        if "_migrations" not in db.table_names():
            return []
        return [r["name"] for r in db.query("SELECT name FROM _migrations ORDER BY id")]

    def pending_migrations(self) -> list[str]:
        done = set(self.applied_migrations())
        return [name for name, _ in MIGRATIONS if name not in done]

    def migrate(self) -> list[str]:
        known = [name for name, _ in MIGRATIONS]
        try:
            with self.transaction() as db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, applied_at TEXT NOT NULL)"
                )
                applied = self.applied_migrations()
                unknown = [n for n in applied if n not in known]
                if unknown:
                    raise ConfigError(
                        f"database {self.path} was written by a newer APC Workbench (migration {unknown[-1]!r}); "
                        "upgrade apc-workbench, or pass --db with another file"
                    )
                ran = []
                for name, fn in MIGRATIONS:
                    if name in applied:
                        continue
                    fn(db)
                    db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, now()])
                    ran.append(name)
                return ran
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"cannot use database {self.path}: {exc}; pass --db PATH (or set APC_DB) to a writable SQLite file"
            ) from exc
