"""Ctrl-C and time-outs against a real local server that never answers, with the CLI as a subprocess.

Each interrupt test starts `apc ...` against the `hang` model of tests/openai_server.py, waits until
the request is on the wire, sends one SIGINT and asserts: the process is gone within 2 s, stderr
holds exactly one `error:` line saying it was interrupted (no traceback), and the database holds
nothing half-written.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.fixtures_core import ROOT

NAME = "Hana Ito"
PASSAGES = [
    "Hana Ito keeps bees on a roof in Osaka. Hana Ito sells honey at the Sunday market.",
    "Hana Ito learnt beekeeping from her grandmother. Hana Ito dislikes wasps.",
    "Hana Ito rides a red bicycle. Hana Ito reads poetry at night.",
]


def _dump(db) -> list[str]:
    with sqlite3.connect(db) as con:
        return list(con.iterdump())


@pytest.fixture
def character(services):
    from apc_tui.storage.characters import CharacterRepo

    statements = [("Hana Ito keeps bees on a roof in Osaka.", "split", 0), ("Hana Ito dislikes wasps.", "split", 1)]
    CharacterRepo(services.store).upsert(NAME, language="en", source_text="", passages=PASSAGES, statements=statements)
    services.store.close()
    return services.settings.db_path


def _interrupt(server, args: list[str], *, calls: int = 1) -> tuple[subprocess.CompletedProcess, float]:
    """Run `apc ARGS`, send SIGINT once `calls` requests hang on the server; (result, seconds to exit)."""
    proc = subprocess.Popen([sys.executable, "-m", "apc_tui.cli", *args], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(server.calls("hang")) < calls:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the request never reached the server"
            time.sleep(0.05)
        time.sleep(0.2)  # the request is in flight, waiting for an answer that never comes
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        seconds = time.monotonic() - sent
        print(f"{args[0]} stopped {seconds:.2f} s after SIGINT")
        return subprocess.CompletedProcess(args, proc.returncode, out, err), seconds
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _one_interrupted_line(err: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0], err


def test_ctrl_c_stops_synth_waiting_on_a_teacher_that_never_answers(fake_openai, character):
    before = _dump(character)
    r, seconds = _interrupt(fake_openai, ["synth", "statements", "-c", NAME, "--teacher", "openai:hang", "--concurrency", "2"], calls=2)
    assert seconds < 2.0, (seconds, r.stderr)
    assert r.returncode == 130
    _one_interrupted_line(r.stderr)
    assert _dump(character) == before  # no teacher call, statement or failure recorded for the abandoned items


def test_ctrl_c_stops_chat_and_keeps_no_turn_without_replies(fake_openai, character):
    before = _dump(character)
    args = ["chat", "-c", NAME, "--query", "Do you keep bees?", "--model", "openai:hang", "--method", "none", "--no-score"]
    r, seconds = _interrupt(fake_openai, args)
    assert seconds < 2.0, (seconds, r.stderr)
    assert r.returncode == 130
    _one_interrupted_line(r.stderr)
    assert _dump(character) == before  # the conversation and user message made for this turn are gone again


def test_ctrl_c_stops_a_foreground_job_blocked_on_the_server(fake_openai, character):
    args = ["dpo", "pairs", "-c", NAME, "--model", "openai:hang", "--method", "none", "--max", "2"]
    r, seconds = _interrupt(fake_openai, args)
    assert seconds < 2.0, (seconds, r.stderr)
    assert r.returncode == 130 and "Traceback" not in r.stderr
    assert "cancelled; continue it with `apc jobs resume" in r.stderr
    with sqlite3.connect(character) as con:
        assert con.execute("SELECT status FROM jobs").fetchall() == [("cancelled",)]
        assert con.execute("SELECT COUNT(*) FROM preference_pairs").fetchone() == (0,)


def test_synth_where_every_item_times_out_exits_non_zero_naming_the_timeout(fake_openai, character, cli):
    fake_openai.slow_seconds = 1.0
    r = cli("synth", "statements", "-c", NAME, "--teacher", "openai:slow", "--timeout", "0.2", "--limit", "1")
    assert r.code == 1, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "every item failed (1 failed, 0 unparsed)" in errors[0]
    assert "did not answer within 0.2 s" in errors[0] and "raise the timeout (--timeout SECONDS, APC_TIMEOUT or `timeout`" in errors[0]


def test_timeout_setting_from_env_and_config(tmp_path):
    from apc_tui.config import load_settings
    from engine.errors import ConfigError

    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    assert load_settings(empty, {"APC_TIMEOUT": "7.5"}).timeout == 7.5
    cfg = tmp_path / "c.toml"
    cfg.write_text("timeout = 30\n", encoding="utf-8")
    assert load_settings(cfg, {}).timeout == 30.0
    for bad in ("abc", "0", "-3", "nan", "inf"):
        with pytest.raises(ConfigError, match="'timeout' .* not a positive number of seconds"):
            load_settings(empty, {"APC_TIMEOUT": bad})
