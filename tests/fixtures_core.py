"""Core fixtures: an isolated environment, a real SQLite store, services and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_WIKI = ROOT.parent / "shared" / "data" / "wiki"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test touches the user's real data dir, config or network hubs."""
    monkeypatch.setenv("APC_DB", str(tmp_path / "apc.db"))
    (tmp_path / "config.toml").touch()  # an explicit APC_CONFIG must exist
    monkeypatch.setenv("APC_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("APC_ADAPTERS_DIR", str(tmp_path / "adapters"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "apc.db"


@pytest.fixture
def services(db_path):
    from apc_tui.config import load_settings
    from apc_tui.factory import build_services

    return build_services(load_settings())


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli():
    """Run `apc ...` in a real subprocess (exit codes, stderr and imports are the user's)."""

    def run(*args: str, input: str | None = None, timeout: float = 300, env: dict | None = None) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "apc_tui.cli", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run
