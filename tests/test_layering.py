"""The dependency rule (DESIGN.md §2), checked in fresh interpreters."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import engine
from tests.fixtures_core import ROOT

HEAVY = ["torch", "transformers", "trl", "peft", "datasets", "accelerate"]


def modules_after_import(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_engine_never_imports_the_app_or_ui_libraries():
    names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    loaded = modules_after_import("\n".join(f"import {n}" for n in names))
    for forbidden in ["apc_tui", "textual", "rich", "sqlite_utils"]:
        assert not any(m == forbidden or m.startswith(forbidden + ".") for m in loaded), forbidden


def test_engine_modules_do_not_import_heavy_libraries_at_import_time():
    names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    loaded = modules_after_import("\n".join(f"import {n}" for n in names))
    assert not [h for h in HEAVY if h in loaded]


def test_cli_and_tui_startup_path_does_not_import_torch():
    loaded = modules_after_import("import apc_tui.cli, apc_tui.app, apc_tui.tui, apc_tui.factory")
    assert not [h for h in HEAVY if h in loaded]
