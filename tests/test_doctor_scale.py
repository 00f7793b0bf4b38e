"""`apc doctor` for a whole box: every GPU, NCCL, a `--processes` / strategy suggestion for the
configured base, and the model server (models list, `n` support) against the real local server."""

from __future__ import annotations

import json

import pytest

GIB = 1024**3


def _doctor(monkeypatch, **env) -> dict[str, dict]:
    from typer.testing import CliRunner

    from apc_tui.cli import app

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    r = CliRunner().invoke(app, ["doctor", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return {row["check"]: row for row in json.loads(r.stdout)}


def test_doctor_on_a_cpu_box_says_no_gpu_and_what_would_run(monkeypatch):
    rows = _doctor(monkeypatch)
    assert rows["cuda"]["ok"] is False and rows["cuda"]["detail"] == "no CUDA GPU"
    plan = rows["training plan"]
    assert plan["ok"] and plan["detail"].startswith("tiny: apc dpo train ... --device cpu (single); no CUDA GPU")
    assert "`--device cpu --processes 2` runs 2 gloo ranks" in plan["detail"]
    assert "model server" not in rows  # no OPENAI_BASE_URL, no openai: model: nothing to probe


def test_doctor_checks_the_model_server_models_and_n(monkeypatch, fake_openai):
    rows = _doctor(monkeypatch, APC_MODEL="openai:echo")
    assert rows["model server"]["ok"], rows["model server"]
    assert rows["model server"]["detail"].endswith("echo listed; n=2 returns 2 choices in one request")
    assert rows["training plan"]["ok"] is False and "cannot be a training base" in rows["training plan"]["detail"]
    single = _doctor(monkeypatch, APC_MODEL="openai:single")["model server"]  # a server that ignores n (like Ollama)
    assert not single["ok"] and "n=2 returned 1 choice(s)" in single["detail"] and "ignores n" in single["fix"]
    missing = _doctor(monkeypatch, APC_MODEL="openai:not-served")["model server"]
    assert not missing["ok"] and "'not-served' is not among them" in missing["detail"]
    listed = _doctor(monkeypatch, APC_MODEL="tiny")["model server"]  # base URL set, local model: list only
    assert listed["ok"] and "echo" in listed["detail"] and "set model" in listed["detail"]
    sent = [r for r in fake_openai.calls("echo") if r.get("max_tokens") == 1]
    assert sent and sent[-1]["n"] == 2


def test_doctor_reports_an_unreachable_server_with_the_fix(monkeypatch):
    row = _doctor(monkeypatch, OPENAI_BASE_URL="http://127.0.0.1:9/v1", APC_MODEL="openai:x")["model server"]
    assert not row["ok"] and "ConnectError" in row["detail"] and "vLLM recipe" in row["fix"]


def test_gpu_rows_list_every_gpu_with_memory_and_capability():
    from apc_tui.commands.doctor import gpu_rows

    gpus = [{"index": i, "name": "NVIDIA H100 80GB HBM3", "free": 70 * GIB, "total": 80 * GIB, "capability": "9.0"} for i in range(2)]
    rows = gpu_rows(gpus)
    assert [r["check"] for r in rows] == ["cuda", "gpu 0", "gpu 1"]
    assert rows[1]["detail"] == "NVIDIA H100 80GB HBM3: 70.0 of 80.0 GiB free, compute 9.0"
    assert rows[0]["detail"].startswith("2 GPU(s); NCCL ")  # this CPU torch build has no NCCL: says so, with the fix
    assert rows[0]["ok"] is (rows[0]["detail"].endswith("available"))


@pytest.fixture(scope="module")
def seven_b(tmp_path_factory):
    """A 7B-shaped Llama: config only (the estimate reads no weights)."""
    from transformers import LlamaConfig

    path = tmp_path_factory.mktemp("llama7b")
    LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000).save_pretrained(path)
    return f"hf:{path}"


def _gpus(n: int, free_gib: float) -> list[dict]:
    return [{"index": i, "name": "GPU", "free": int(free_gib * GIB), "total": 80 * GIB, "capability": "8.0"} for i in range(n)]


def test_suggestion_picks_processes_and_strategy_for_the_base(seven_b):
    from engine.distributed import suggest

    roomy = suggest(seven_b, _gpus(2, 75), bnb=True)
    assert (roomy.processes, roomy.strategy, roomy.use_4bit, roomy.command) == (2, "ddp", False, "--processes 2")
    tight = suggest(seven_b, _gpus(2, 16), bnb=False)  # no replica fits one GPU, halves do
    assert (tight.strategy, tight.command) == ("fsdp", "--processes 2") and "sharded over 2 GPUs" in tight.why
    small = suggest(seven_b, _gpus(1, 14), bnb=True)  # one small GPU: QLoRA
    assert (small.processes, small.strategy, small.command) == (1, "ddp", "--processes 1 --4bit")
    hopeless = suggest(seven_b, _gpus(1, 2), bnb=True)
    assert hopeless.strategy == "none" and "does not fit" in hopeless.why
    assert suggest("openai:gpt-4o", _gpus(2, 75), bnb=True).strategy == "none"
