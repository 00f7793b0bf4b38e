"""The SQLite store: one file, WAL, foreign keys on, busy timeout, per-thread connections."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


def _import_sqlite_utils():
    """sqlite_utils imports pandas and numpy (~0.5 s) only to map their scalar types to columns.

    We never store pandas/numpy objects, and the CLI and the TUI's first frame must stay fast:
    hide both while sqlite_utils loads (unless something already imported them). A later
    `import pandas` elsewhere works as usual.
    """
    import sys

    hidden = [m for m in ("pandas", "numpy") if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # makes `import m` raise ImportError, which sqlite_utils tolerates
    try:
        import sqlite_utils
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()

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
        from ..paths import private_file

        try:
            if not self.path.exists():
                private_file(self.path)  # owner-only: 0600 file in 0700 folders it creates
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
