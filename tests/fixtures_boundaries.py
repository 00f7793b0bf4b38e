"""Fixtures for boundary tests: `apc ...` run in this process (one error line, exit code, output)
and a database's logical dump, to assert that a refused command changed nothing."""

from __future__ import annotations

import io
import os
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Ran:
    code: int
    out: str
    err: str
    crashed: str = ""  # the exception that escaped `run` (a traceback the user would see)


def run_apc(args: list[str], env: dict[str, str | None] | None = None, stdin: str = "") -> Ran:
    """`apc ARGS` in this process, as `main()` runs it; env values of None unset the variable."""
    import sys
    import traceback

    from apc_tui.cli import run

    saved = {k: os.environ.get(k) for k in (env or {})}
    for k, v in (env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    crashed = ""
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = run([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:  # noqa: BLE001 - what a user would see as a traceback
                crashed = traceback.format_exc()
                code = 1
    finally:
        sys.stdin = old_stdin
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Ran(code, out.getvalue(), err.getvalue(), crashed)


def dump(db: Path) -> list[str]:
    """The database's logical content (schema + rows), as `sqlite3 .dump` would print it."""
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy of a WAL database (the backup API, not a file copy)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    return dst


@pytest.fixture(scope="session")
def seeded_db(tmp_path_factory) -> Path:
    """A database with one demo character (statements, shipped queries) and a conversation-free state."""
    from apc_tui.config import Settings
    from apc_tui.factory import build_services

    root = tmp_path_factory.mktemp("seeded")
    db = root / "seed.db"
    services = build_services(Settings(db_path=db, adapters_dir=root / "adapters"))
    catalogue = {d["slug"]: d for d in services.characters.demo_catalogue()}
    services.characters.import_demo([Path(catalogue["maelle_kervran"]["path"])])
    services.store.close()
    return db
