"""CLI basics: help without heavy imports, doctor, config errors."""

from __future__ import annotations


def test_help_lists_every_command_group(cli):
    r = cli("--help")
    assert r.code == 0
    for group in ["characters", "statements", "score", "disc", "chat", "synth", "dpo", "eval", "jobs", "doctor", "pipeline"]:
        assert group in r.out


def test_doctor_reports_each_check_with_a_fix(cli):
    r = cli("doctor", "--json")
    assert r.code == 0, r.err
    checks = {c["check"]: c for c in r.json()}
    assert {"python", "torch", "cuda", "bitsandbytes", "profile embedded", "profile paper", "model tiny", "database"} <= set(checks)
    assert all(c["fix"] for c in checks.values() if not c["ok"])
    assert "migrations" in checks["database"]["detail"]


def test_config_with_a_secret_is_refused(cli, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('api_key = "sk-should-not-be-here"\n')
    r = cli("--config", str(config), "characters", "list")
    assert r.code != 0 and "secret" in r.err and "sk-should" not in r.err


def test_unknown_setting_is_named(cli, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('modle = "tiny"\n')
    r = cli("--config", str(config), "characters", "list")
    assert r.code != 0 and "'modle'" in r.err
