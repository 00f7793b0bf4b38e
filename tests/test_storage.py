"""The SQLite store: migrations, foreign keys, transactions, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from apc_tui.storage import Store
from apc_tui.storage.characters import CharacterRepo
from apc_tui.storage.migrations import MIGRATIONS
from engine.errors import ConfigError


def test_migrations_are_recorded_and_applied_once(db_path):
    store = Store(db_path)
    assert store.applied_migrations() == [name for name, _ in MIGRATIONS]
    assert store.pending_migrations() == []
    assert Store(db_path).migrate() == []  # reopening applies nothing again
    assert {"characters", "statements", "messages", "apc_terms", "preferences", "jobs", "adapters", "eval_runs"} <= set(
        store.db.table_names()
    )


def test_pragmas_wal_and_foreign_keys(db_path):
    db = Store(db_path).db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO statements (character_id, position, text, created_at) VALUES (999, 0, 'x', 'now')")


def test_newer_database_gives_clear_error(db_path):
    store = Store(db_path)
    store.db.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', 'now')")
    with pytest.raises(ConfigError, match="newer APC Workbench"):
        Store(db_path)


def test_failed_transaction_leaves_nothing(db_path):
    repo = CharacterRepo(Store(db_path))
    repo.upsert("Ann", language="en", source_text="", passages=[], statements=[("Ann is a pilot.", "manual", None)])
    with pytest.raises(RuntimeError):
        with repo.store.transaction() as db:
            db["statements"].insert({"character_id": 1, "position": 5, "text": "Ann flies.", "origin": "manual", "enabled": 1, "created_at": "t"})
            raise RuntimeError("boom")
    assert [s.text for s in repo.get("Ann").statements] == ["Ann is a pilot."]


def test_delete_keeps_a_copy_until_purge_cascades(db_path):
    repo = CharacterRepo(Store(db_path))
    repo.upsert("Ann", language="en", source_text="Ann is a pilot.", passages=["Ann is a pilot."], statements=[("Ann is a pilot.", "split", 0)])
    repo.delete("Ann")
    assert repo.names() == [] and repo.store.db.execute("SELECT COUNT(*) FROM statements").fetchone()[0] == 1
    repo.purge("Ann")
    assert repo.store.db.execute("SELECT COUNT(*) FROM statements").fetchone()[0] == 0
    assert repo.store.db.execute("SELECT COUNT(*) FROM passages").fetchone()[0] == 0


def test_concurrent_writer_from_second_process(db_path):
    """A second process writes while this one holds connections: both land, nothing is lost."""
    repo = CharacterRepo(Store(db_path))
    repo.upsert("Ann", language="en", source_text="", passages=[], statements=[])
    script = textwrap.dedent(
        f"""
        from apc_tui.storage import Store
        from apc_tui.storage.characters import CharacterRepo
        repo = CharacterRepo(Store({str(db_path)!r}))
        for i in range(40):
            repo.add_statement("Ann", f"Ann owns {{i}} books (child).")
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    for i in range(40):
        repo.add_statement("Ann", f"Ann owns {i} books (parent).")
    assert child.wait(timeout=60) == 0
    assert len(repo.get("Ann").statements) == 80


def test_unwritable_db_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="--db"):
        Store(blocker / "sub" / "apc.db")
