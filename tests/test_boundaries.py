"""Trust at the boundaries: re-import replaces, per-database isolation, key redaction at every
sink, recoverable deletes, detached jobs keep their settings, every numeric option has a range."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fixtures_boundaries import dump, run_apc

C = "Maelle Kervran"


def write_statements(path: Path, statements: list[str], name: str = "Ann Reyes") -> Path:
    path.write_text(json.dumps({"name": name, "language": "en", "statements": statements}), encoding="utf-8")
    return path


# -- every option checked ---------------------------------------------------------------------------
def test_every_numeric_option_of_every_command_has_a_range():
    from apc_tui.cli import command
    from apc_tui.validation import unchecked_numeric

    assert unchecked_numeric(command()) == []


def test_engine_settings_refuse_bad_values_wherever_they_are_built():
    """The TUI's Train form and a stored job config build the same dataclasses as the CLI."""
    from engine.dpo_train import DpoSettings
    from engine.errors import InputError
    from engine.types import GenerationParams

    for bad in ({"beta": -1.0}, {"lora_r": 0}, {"learning_rate": float("nan")}, {"epochs": 1e9}, {"epochs": "3"}, {"max_steps": 0}):
        with pytest.raises(InputError):
            DpoSettings.from_dict(bad)
    assert DpoSettings.from_dict({"epochs": 2, "max_steps": -1}).epochs == 2.0
    with pytest.raises(InputError, match="max-new-tokens 0"):
        GenerationParams(max_new_tokens=0)


def test_train_form_values_are_refused_by_the_service_before_a_job(services):
    from engine.errors import InputError

    services.characters.import_demo([Path(d["path"]) for d in services.characters.demo_catalogue() if d["slug"] == "maelle_kervran"])
    before = dump(services.settings.db_path)
    with pytest.raises(InputError, match="beta"):
        services.finetune.train_config("dpo", C, "", "form-run", {"beta": -1.0})
    assert dump(services.settings.db_path) == before


# -- re-import means replace ------------------------------------------------------------------------
def test_reimport_replaces_the_statement_set(tmp_path, services):
    first = write_statements(tmp_path / "ann.json", ["Ann Reyes lives in Paris.", "Ann Reyes is a pilot."])
    services.characters.import_files([first])
    ids = {s.text: s.id for s in services.characters.get("Ann Reyes").statements}
    second = write_statements(tmp_path / "ann2.json", ["Ann Reyes lives in Rome.", "Ann Reyes is a pilot."])
    ran = run_apc(["characters", "import", str(second)])
    assert ran.code == 0, ran.err
    assert "+1 added / −1 disabled (kept, off) / =1 kept" in ran.out
    c = services.characters.get("Ann Reyes")
    enabled = {s.text for s in c.statements if s.enabled}
    assert enabled == {"Ann Reyes lives in Rome.", "Ann Reyes is a pilot."}
    paris = next(s for s in c.statements if s.text == "Ann Reyes lives in Paris.")
    assert not paris.enabled and paris.id == ids["Ann Reyes lives in Paris."]  # kept, for its scores and labels
    assert next(s.id for s in c.statements if s.text == "Ann Reyes is a pilot.") == ids["Ann Reyes is a pilot."]
    back = services.characters.import_files([first])[0]  # the old file again: Paris back on, Rome off
    assert (back.added, back.disabled, back.kept) == (0, 1, 2)
    assert {s.text for s in services.characters.get("Ann Reyes").statements if s.enabled} == {"Ann Reyes lives in Paris.", "Ann Reyes is a pilot."}


# -- per-database isolation -------------------------------------------------------------------------
def test_two_databases_in_one_folder_share_no_job_or_adapter_folder(tmp_path, monkeypatch, sleepy_kind):
    from apc_tui.config import Settings
    from apc_tui.factory import build_services
    from apc_tui.paths import adapters_dir, jobs_dir

    a, b = (build_services(Settings(db_path=tmp_path / f"{n}.db")) for n in ("a", "b"))
    ja, jb = a.jobs.start(sleepy_kind, {"fast": True}), b.jobs.start(sleepy_kind, {"fast": True})
    assert ja["id"] == jb["id"] == 1
    assert jobs_dir(a.settings) == tmp_path / "a.jobs" and jobs_dir(b.settings) == tmp_path / "b.jobs"
    assert (tmp_path / "a.jobs" / "1").is_dir() and (tmp_path / "b.jobs" / "1").is_dir()
    assert adapters_dir(a.settings) == tmp_path / "a.adapters" != adapters_dir(b.settings)
    assert a.jobs.show(1)["log_file"] != b.jobs.show(1)["log_file"]
    # owner-only: the database file and the folders made for it
    assert stat.S_IMODE((tmp_path / "a.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a.jobs").stat().st_mode) == 0o700


def test_an_adapter_name_on_disk_from_another_database_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared-adapters"
    (shared / "koishi-dpo").mkdir(parents=True)
    (shared / "koishi-dpo" / "adapter_config.json").write_text("{}")  # made by another database
    monkeypatch.setenv("APC_ADAPTERS_DIR", str(shared))
    assert run_apc(["characters", "demo", "maelle_kervran"]).code == 0
    before = dump(Path(__import__("os").environ["APC_DB"]))
    ran = run_apc(["dpo", "train", "-c", C, "--name", "koishi-dpo"])
    assert ran.code == 2 and "already exists on disk" in ran.err and "another --name" in ran.err
    assert (shared / "koishi-dpo" / "adapter_config.json").read_text() == "{}"
    assert dump(Path(__import__("os").environ["APC_DB"])) == before


def test_doctor_prints_config_data_and_adapters_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("APC_ADAPTERS_DIR")
    ran = run_apc(["--db", str(tmp_path / "mine.db"), "doctor", "--json"])
    checks = {c["check"]: c["detail"] for c in json.loads(ran.out)}
    assert str(tmp_path / "config.toml") in checks["config"]
    assert checks["data dir"] == str(tmp_path)
    assert checks["adapters dir"].startswith(str(tmp_path / "mine.adapters"))


# -- secrets --------------------------------------------------------------------------------------
class _EchoKeyHandler(BaseHTTPRequestHandler):
    """A server that echoes the caller's key back in its error body (as some proxies do)."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}. Check it.", "type": "invalid_request_error"}})
        self.send_response(400)  # a status whose message the backend passes on
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        return


@pytest.fixture
def echo_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_redact_masks_sk_keys_bearer_values_and_the_configured_key(tmp_path, monkeypatch):
    from apc_tui.config import api_key
    from engine.secrets import redact

    key_file = tmp_path / "key"
    key_file.write_text("plain-token-without-prefix-42\n")
    key_file.chmod(0o600)
    monkeypatch.setenv("APC_KEY_FILE", str(key_file))
    assert api_key() == "plain-token-without-prefix-42"
    text = "bad key sk-proj-AbC123xyz789LMN, Authorization: Bearer abcdefghijk123, token plain-token-without-prefix-42"
    out = redact(text)
    assert "sk-proj" not in out and "abcdefghijk123" not in out and "plain-token" not in out and out.count("[redacted]") == 3


def test_an_echoed_key_never_reaches_the_terminal_teacher_calls_job_rows_or_logs(tmp_path, monkeypatch, echo_server):
    key = "sk-live-SECRET0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", echo_server)
    wiki = tmp_path / "wiki_Ann_Reyes.txt"
    wiki.write_text("Ann Reyes is a pilot from Lyon. She flies cargo planes at night.\n\nAnn Reyes has a sister called Mia.\n")
    assert run_apc(["characters", "import", str(wiki)]).code == 0
    printed = run_apc(["chat", "-c", "Ann Reyes", "-q", "Hi", "--model", "openai:gpt-x", "--method", "none", "--no-score"])
    assert printed.code == 2 and "[redacted]" in printed.err and key not in printed.err
    synth = run_apc(["synth", "statements", "-c", "Ann Reyes", "--teacher", "openai:gpt-x"])
    assert "failed" in synth.out and key not in synth.err + synth.out  # (its exit code is the netio work's)
    pairs = run_apc(["dpo", "pairs", "-c", "Ann Reyes", "--model", "openai:gpt-x", "--method", "none", "--max", "1"])
    assert pairs.code == 2 and key not in pairs.err + pairs.out
    db = Path(__import__("os").environ["APC_DB"])
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT COUNT(*) FROM teacher_calls WHERE error LIKE '%redacted%'").fetchone()[0]
    failed_jobs = conn.execute("SELECT error FROM jobs WHERE status = 'failed'").fetchall()
    conn.close()
    assert stored >= 1 and failed_jobs and all("[redacted]" in e for (e,) in failed_jobs)
    assert key not in "\n".join(dump(db))


# -- delete / restore ---------------------------------------------------------------------------------
def test_delete_shows_what_goes_asks_and_restore_brings_everything_back(services):
    from apc_tui.storage.conversations import ConversationRepo

    services.characters.import_demo([Path(d["path"]) for d in services.characters.demo_catalogue() if d["slug"] == "maelle_kervran"])
    cid = services.characters.get(C).id
    conv = ConversationRepo(services.store).create(cid, "t")
    ConversationRepo(services.store).add_user(conv, None, "Hello?")
    db = services.settings.db_path
    before = dump(db)
    refused = run_apc(["characters", "delete", C], stdin="n\n")
    assert refused.code != 0 and "24 statements, 1 conversations with 1 messages, 0 labels, 0 training pairs" in refused.out + refused.err
    assert dump(db) == before
    done = run_apc(["characters", "delete", C, "--yes"])
    assert done.code == 0 and "restore" in done.out
    assert run_apc(["characters", "list", "--json"]).out.strip() == "[]"
    assert run_apc(["conversations", "list", "--json"]).out.strip() == "[]"
    listed = run_apc(["characters", "restore", "--json"])
    assert [r["name"] for r in json.loads(listed.out)] == [C]
    again = run_apc(["characters", "import", str(next(Path(d["path"]) for d in services.characters.demo_catalogue() if d["slug"] == "maelle_kervran"))])
    assert again.code == 2 and "restore" in again.err  # the name is held by the deleted copy
    assert run_apc(["characters", "restore", C]).code == 0
    after = [line for line in dump(db) if "deleted_at" not in line and "INSERT INTO \"characters\"" not in line]
    assert after == [line for line in before if "deleted_at" not in line and "INSERT INTO \"characters\"" not in line]
    assert len(services.characters.get(C).statements) == 24 and len(services.chat.list(C)) == 1


# -- detached jobs keep their settings ------------------------------------------------------------------
def test_settings_env_round_trips_every_setting(tmp_path):
    from apc_tui.config import Settings, load_settings, settings_env

    cfg = tmp_path / "c.toml"
    cfg.write_text("k = 4\n")
    s = Settings(db_path=tmp_path / "x.db", profile="paper", model="tiny", teacher="openai:gpt-4o", device="cpu", method="lcm", k=4,
                 annotator="zoe", openai_base_url="http://127.0.0.1:9/v1", adapters_dir=tmp_path / "ad", trust_remote_code=True,
                 config_file=cfg)  # fmt: skip
    assert load_settings(environ=settings_env(s)) == s


@pytest.mark.slow
def test_detached_job_runs_with_the_config_flags_and_env_it_was_started_with(tmp_path, monkeypatch):
    cfg = tmp_path / "detach.toml"
    cfg.write_text(f'adapters_dir = "{tmp_path / "cfg-adapters"}"\nannotator = "zoe"\n')
    monkeypatch.delenv("APC_CONFIG")
    monkeypatch.delenv("APC_ADAPTERS_DIR")
    monkeypatch.setenv("APC_DEVICE", "cpu")
    db = tmp_path / "elsewhere" / "d.db"
    root = ["--db", str(db), "--config", str(cfg)]
    assert run_apc([*root, "characters", "demo", "maelle_kervran"]).code == 0
    ran = run_apc([*root, "dpo", "train", "-c", C, "--name", "detached-1", "--detach", "--json"])  # no pairs: fails fast in the worker
    assert ran.code == 0, ran.err
    job_id = json.loads(ran.out)["job_id"]
    deadline = time.monotonic() + 240
    status = "queued"
    while time.monotonic() < deadline and status in ("queued", "running"):
        time.sleep(0.5)
        conn = sqlite3.connect(db)
        status = conn.execute("SELECT status FROM jobs WHERE id = ?", [job_id]).fetchone()[0]
        conn.close()
    conn = sqlite3.connect(db)
    logs = [m for (m,) in conn.execute("SELECT message FROM job_logs WHERE job_id = ?", [job_id])]
    conn.close()
    line = next(m for m in logs if m.startswith("settings:"))
    assert f"config {cfg}" in line and f"db {db}" in line and f"adapters {tmp_path / 'cfg-adapters'}" in line and "device cpu" in line
    log_file = db.parent / "d.jobs" / f"{job_id}.log"
    assert log_file.is_file() and stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert "Warning" not in log_file.read_text()  # library warnings stay out of job logs without --verbose


def test_library_warnings_are_hidden_unless_verbose(monkeypatch):
    import os
    import warnings

    from apc_tui.verbosity import quiet_libraries

    monkeypatch.delenv("APC_VERBOSE", raising=False)
    for var in ("TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS"):
        monkeypatch.delenv(var, raising=False)
    with warnings.catch_warnings(record=True) as seen:
        quiet_libraries(False)
        warnings.warn("library noise", FutureWarning, stacklevel=1)
    assert seen == [] and os.environ["TRANSFORMERS_VERBOSITY"] == "error" and os.environ["PYTHONWARNINGS"] == "ignore"
    quiet_libraries(True)
    assert os.environ["APC_VERBOSE"] == "1"  # detached workers inherit --verbose
    monkeypatch.delenv("APC_VERBOSE")
