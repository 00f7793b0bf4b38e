"""The README's "Offline, end to end" block runs exactly as written on a fresh database."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.fixtures_boundaries import run_apc

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(marker: str = "Offline, end to end") -> list[str]:
    """The lines of the first ```sh block after the paragraph that starts with `marker`."""
    text = README.read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert match, f"no ```sh block after {marker!r} in README.md"
    return [line for line in match.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def commands(line: str) -> list[list[str]]:
    """`a && b` -> [[a...], [b...]]; each must be an `apc` command."""
    out = []
    for part in line.split("&&"):
        argv = shlex.split(part)
        assert argv and argv[0] == "apc", f"README line is not an apc command: {part!r}"
        out.append(argv[1:])
    return out


def test_readme_block_is_found_and_parsed():
    lines = readme_block()
    assert len(lines) >= 4 and all(argv for line in lines for argv in commands(line))


@pytest.mark.slow
def test_readme_offline_block_runs_as_written(tmp_path, monkeypatch, one_thread_torch):
    monkeypatch.setenv("APC_DB", str(tmp_path / "fresh.db"))
    monkeypatch.delenv("APC_MODEL", raising=False)
    monkeypatch.delenv("APC_ADAPTERS_DIR", raising=False)  # the database's own adapters folder
    for line in readme_block():
        for argv in commands(line):
            ran = run_apc(argv)
            assert ran.code == 0 and not ran.crashed, f"`apc {shlex.join(argv)}` failed ({ran.code}): {ran.err[-800:]}{ran.crashed[-800:]}"
    assert (tmp_path / "fresh.adapters" / "maelle-dpo").is_dir()
