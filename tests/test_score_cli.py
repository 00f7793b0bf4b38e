"""`apc score` and `apc disc eval|train` through a real subprocess, on tiny local models."""

from __future__ import annotations

import json

import pytest

from tests.test_discriminators import write_rows

STATEMENTS = {"name": "Komeiji Koishi", "language": "en",
              "statements": ["Komeiji Koishi lives with her sister, Komeiji Satori.", "Komeiji Koishi lives in Chireiden."]}  # fmt: skip
QUERY = "Where do you live, Koishi?"
RESPONSES = ["I live in Chireiden with my sister, Satori!", "I live in Hakurei Shrine!"]
TERM_KEYS = {"statement", "p_yes", "p_entailed", "p_neutral", "p_contradicted", "term", "delta_term"}


def invoke(*args: str):
    """Run `apc ...` in this process (imports already warm); the subprocess `cli` fixture costs ~10 s a call."""
    from typer.testing import CliRunner

    from apc_tui.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def statements_file(tmp_path):
    path = tmp_path / "koishi.json"
    path.write_text(json.dumps(STATEMENTS), encoding="utf-8")
    return path


def test_score_json_shape(cli, statements_file, tiny_profile):
    args = ["score", "--statements", str(statements_file), "--query", QUERY, "--profile", tiny_profile, "--device", "cpu", "--json"]
    r = cli(*args, *[x for resp in RESPONSES for x in ("--response", resp)])
    assert r.code == 0, r.err
    data = r.json()
    assert list(data) == ["character", "profile", "n_statements", "query", "results"]
    assert (data["character"], data["profile"], data["n_statements"], data["query"]) == ("Komeiji Koishi", tiny_profile, 2, QUERY)
    assert [x["response"] for x in data["results"]] == RESPONSES
    for result in data["results"]:
        assert list(result) == ["response", "apc", "delta_apc", "active", "passive", "terms"]
        assert [set(t) for t in result["terms"]] == [TERM_KEYS, TERM_KEYS]
        assert result["apc"] == pytest.approx(sum(t["term"] for t in result["terms"]))
        assert result["delta_apc"] == pytest.approx(result["apc"] - sum(1 - t["p_yes"] for t in result["terms"]))


def test_score_table_for_a_stored_character(services, tiny_profile):
    from apc_tui.storage.characters import CharacterRepo

    CharacterRepo(services.store).upsert("Komeiji Koishi", language="en", source_text="", passages=[],
                                         statements=[(s, "manual", None) for s in STATEMENTS["statements"]])  # fmt: skip
    r = invoke("score", "-c", "Komeiji Koishi", "-q", QUERY, "-r", RESPONSES[0], "--profile", tiny_profile, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "APC" in r.output and "ΔAPC" in r.output and "of 2" in r.output and "deciding statements" in r.output
    assert "Komeiji Koishi lives in Chireiden." in r.output


def test_score_input_errors(cli, statements_file):
    r = cli("score", "-q", QUERY, "-r", "x")
    assert r.code == 2 and "give exactly one of --character NAME or --statements FILE" in r.err
    r = cli("score", "--statements", str(statements_file), "-q", QUERY, "-r", "x", "--profile", "nonsense")
    assert r.code == 2 and r.err.startswith("error: --profile 'nonsense': unknown discriminator profile") and "Traceback" not in r.err


def test_score_cuda_on_cpu_machine(cli, statements_file, tiny_profile):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = cli("score", "--statements", str(statements_file), "-q", QUERY, "-r", "x", "--profile", tiny_profile, "--device", "cuda")
    assert r.code == 2 and "error: device 'cuda' asked for" in r.err and "--device cpu" in r.err


def test_disc_eval_json(cli, tmp_path, tiny_profile):
    data = write_rows(tmp_path / "nli.jsonl", "nli", n=2)
    r = cli("disc", "eval", "--task", "nli", "--data", str(data), "--profile", tiny_profile, "--device", "cpu", "--json")
    assert r.code == 0, r.err
    report = r.json()
    assert list(report) == ["task", "profile", "n", "accuracy", "per_label", "confusion", "recorded"]
    assert report["recorded"] == {}  # a plain checkpoint has no training-time record
    assert report["task"] == "nli" and report["n"] == 12
    assert list(report["per_label"]) == ["contradicted", "neutral", "entailed"]
    assert sum(sum(row.values()) for row in report["confusion"].values()) == 12
    assert report["per_label"]["contradicted"]["support"] == 4  # "contradict" rows counted as contradicted


def test_disc_eval_bad_row_names_file_and_line(cli, tmp_path):
    data = tmp_path / "rel.jsonl"
    data.write_text('{"character": "A", "statement": "A is.", "query": "q", "label": "yes"}\n{"character": "A"}\n')
    r = cli("disc", "eval", "--task", "relevance", "--data", str(data), "--profile", f"rel={tmp_path},nli={tmp_path}")  # data first
    assert r.code == 2 and f"{data}:2: field 'statement' is missing" in r.err


@pytest.mark.slow
def test_disc_train_lora_output_loads_in_the_scorer(tmp_path, tiny_models, tiny_pair_paths):
    from engine.apc import ApcScorer
    from engine.discriminators import load_profile, read_meta

    data = write_rows(tmp_path / "rel.jsonl", "relevance")
    out = tmp_path / "rel-lora"
    base = tiny_models.path("deberta", "relevance")
    r = invoke("disc", "train", "--task", "relevance", "--data", str(data), "--base", str(base), "--out", str(out),
            "--lora", "--epochs", "1", "--seed", "3", "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["n_eval"] == 4 and 0.0 <= summary["accuracy"] <= 1.0
    meta = read_meta(out)
    assert meta.adapter and meta.format == "compact" and meta.metrics["seed"] == 3
    assert (out / "adapter_model.safetensors").is_file() and (out / "apc_discriminator.json").is_file()
    pair = load_profile(f"rel={out},nli={tiny_pair_paths[1]}", device="cpu")
    [score] = ApcScorer(pair).score("Alice", ["Alice likes thing 1."], "Do you like thing 1?", ["Yes!"])
    assert 0.0 <= score.apc <= 1.0 and pair.relevance.describe()["adapter"] is True
