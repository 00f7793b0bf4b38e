"""Discriminators: wire-format templates, label order, batching, loading errors, judges, training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.discriminators import (
    PAPER_NLI_TEMPLATE,
    PAPER_RELEVANCE_TEMPLATE,
    CompactFormat,
    CrossEncoderDiscriminator,
    JudgeDiscriminator,
    NliItem,
    PaperFormat,
    RelevanceItem,
    load_profile,
)
from engine.errors import ConfigError, InputError, ModelError

DESIGN = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"

EXPECTED_RELEVANCE = (
    b"Character: Komeiji Koishi\n    \nPersona Statement: Komeiji Koishi lives in Chireiden.\n\n"
    b"User Utterance: Where do you live, Koishi?\n\n"
    b"Does this user utterance should be responded by including the information in the given persona statement? "
    b'Only answer "yes" or "no" without any explanation.'
)
EXPECTED_NLI = (
    b"Character: Komeiji Koishi\n    \nPersona Statement: Komeiji Koishi lives in Chireiden.\n\n"
    b"User Utterance: Where do you live, Koishi?\n\nResponse: I live in Chireiden!\n\n"
    b"For this response, is the given persona entailed, neutral, or contradict to it in natural language inference? "
    b'Only answer "entailed", "neutral" or "contradict" without any explanation.'
)
REL = RelevanceItem("Komeiji Koishi", "Komeiji Koishi lives in Chireiden.", "Where do you live, Koishi?")
NLI = NliItem(REL.character, REL.statement, REL.query, "I live in Chireiden!")


def varied_items(kind=RelevanceItem, n=7):
    """Items of different lengths, so batches need padding."""
    out = []
    for i in range(n):
        statement = "Alice Liddell likes tea" + " and rabbits" * i + "."
        query = "Do you like tea?" if i % 2 else "What do you eat and who is your friend in the garden?"
        extra = ("I like tea." + " I have never seen the ocean." * (i % 3),) if kind is NliItem else ()
        out.append(kind("Alice Liddell", statement, query, *extra))
    return out


# -- templates -----------------------------------------------------------------------------
def test_paper_templates_are_byte_exact():
    assert PaperFormat().render(REL).encode("utf-8") == EXPECTED_RELEVANCE
    assert PaperFormat().render(NLI).encode("utf-8") == EXPECTED_NLI


@pytest.mark.skipif(not DESIGN.is_file(), reason="shared/DESIGN.md not beside the checkout")
def test_paper_templates_match_design_doc():
    blocks = re.findall(r"```\n(Character: \{character\}.*?)\n```", DESIGN.read_text(encoding="utf-8"), re.S)
    assert blocks == [PAPER_RELEVANCE_TEMPLATE, PAPER_NLI_TEMPLATE]


def test_templates_keep_braces_in_content():
    item = RelevanceItem("K", "K writes {query} literally.", "q")
    assert "K writes {query} literally." in PaperFormat().render(item)


def test_compact_format_is_a_text_pair():
    assert CompactFormat().render(REL) == ("Komeiji Koishi: Komeiji Koishi lives in Chireiden.", "Where do you live, Koishi?")
    assert CompactFormat().render(NLI)[1] == "Where do you live, Koishi? [SEP] I live in Chireiden!"


# -- cross-encoders ------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["bert", "deberta", "xlmr"])
def test_batching_matches_batch_size_one(tiny_models, arch):
    for task, kind in (("relevance", RelevanceItem), ("nli", NliItem)):
        disc = CrossEncoderDiscriminator.load(str(tiny_models.path(arch, task)), task, device="cpu")
        items = varied_items(kind)
        one = disc.predict(items, batch_size=1)
        batched = disc.predict(items, batch_size=4)
        assert one.shape == (len(items), len(disc.labels))
        np.testing.assert_allclose(batched, one, atol=1e-5)
        np.testing.assert_allclose(one.sum(axis=1), 1.0, atol=1e-6)
        assert len({round(float(p), 6) for p in one[:, -1]}) > 1  # inputs really differ


def test_label_order_and_meta_reordering(tiny_models):
    plain = CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "relevance")), "relevance", device="cpu")
    assert plain.labels == ("no", "yes") and plain.format == "paper"
    swapped_meta = {"task": "relevance", "labels": ["yes", "no"], "format": "paper", "base_model": "x"}
    swapped = CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "relevance", meta=swapped_meta)), "relevance", device="cpu")
    items = varied_items()
    # same weights; the meta says the model's column 0 is "yes": the loader puts columns back in task order
    np.testing.assert_allclose(swapped.predict(items), plain.predict(items)[:, ::-1], atol=1e-6)
    nli = CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "nli")), "nli", device="cpu")
    assert nli.labels == ("contradicted", "neutral", "entailed")


def test_meta_format_is_honoured(tiny_models):
    meta = {"task": "nli", "labels": ["contradicted", "neutral", "entailed"], "format": "compact", "base_model": "x",
            "adapter": False, "data_sha256": None, "metrics": {}, "quantize": None}  # fmt: skip
    disc = CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "nli", meta=meta)), "nli", device="cpu")
    assert disc.format == "compact" and "compact" in disc.identity
    ids = disc.encode([NLI])["input_ids"][0]
    assert disc.tokenizer.sep_token_id in ids[1:-1]  # a real pair: [CLS] a [SEP] b [SEP]


def test_meta_temperature_sharpens_without_changing_the_argmax(tiny_models):
    base = {"task": "nli", "labels": ["contradicted", "neutral", "entailed"], "format": "paper", "base_model": "x"}
    plain = CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "nli", meta=base)), "nli", device="cpu")
    sharp = CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "nli", meta={**base, "temperature": 0.5})), "nli", device="cpu")
    items = varied_items(NliItem)
    p, q = plain.predict(items), sharp.predict(items)
    np.testing.assert_array_equal(p.argmax(axis=1), q.argmax(axis=1))
    expected = p**2 / (p**2).sum(axis=1, keepdims=True)  # softmax(z / 0.5) = p^2, renormalised
    np.testing.assert_allclose(q, expected, atol=1e-6)
    assert sharp.identity != plain.identity  # cached relevance/NLI of one is never served for the other
    with pytest.raises(ModelError, match="temperature must be a positive number"):
        CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "nli", meta={**base, "temperature": 0})), "nli", device="cpu")


def test_wrong_label_count_is_a_clear_error(tiny_models):
    path = tiny_models.path("bert", "relevance", num_labels=3)
    with pytest.raises(ModelError, match="outputs 3 labels but a relevance discriminator needs 2"):
        CrossEncoderDiscriminator.load(str(path), "relevance", device="cpu")


def test_meta_for_the_other_task_is_refused(tiny_models):
    meta = {"task": "nli", "labels": ["contradicted", "neutral", "entailed"], "format": "paper", "base_model": "x"}
    with pytest.raises(ModelError, match="is a nli discriminator, not relevance"):
        CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "nli", meta=meta)), "relevance", device="cpu")


def test_cuda_on_a_cpu_machine_is_a_clear_error(tiny_models):
    import torch

    from engine.device import dtype_name, resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="use --device cpu"):
        CrossEncoderDiscriminator.load(str(tiny_models.path("bert", "relevance")), "relevance", device="cuda:0")
    assert resolve_device("auto") in ("cpu", "mps")
    assert dtype_name("cpu") == "float32"
    with pytest.raises(ConfigError, match="not known"):
        resolve_device("gpu")


def test_hub_id_offline_says_it_needs_a_download():
    with pytest.raises(ModelError) as err:
        CrossEncoderDiscriminator.load("KomeijiForce/deberta-v3-large-relevance-12character", "relevance", device="cpu")
    message = str(err.value)
    assert "needs a download" in message and "local directory" in message and "\n" not in message


def test_missing_directory_and_weights(tiny_models, tmp_path):
    with pytest.raises(ModelError, match="no such directory"):
        CrossEncoderDiscriminator.load(str(tmp_path / "nope"), "relevance", device="cpu")
    with pytest.raises(ModelError, match="safetensors"):
        CrossEncoderDiscriminator.load(str(tmp_path), "relevance", device="cpu")


def test_int8_is_explicit_and_close(tiny_models):
    path = str(tiny_models.path("bert", "nli"))
    fp32 = CrossEncoderDiscriminator.load(path, "nli", device="cpu")
    int8 = CrossEncoderDiscriminator.load(path, "nli", device="cpu", quantize="int8")
    assert fp32.describe()["dtype"] == "float32" and int8.describe()["dtype"] == "int8"
    assert fp32.identity != int8.identity  # never share cached relevance across precisions
    items = varied_items(NliItem)
    np.testing.assert_allclose(int8.predict(items), fp32.predict(items), atol=0.05)


# -- profiles ------------------------------------------------------------------------------
def test_paths_profile(tiny_profile):
    pair = load_profile(tiny_profile, device="cpu")
    assert (pair.relevance.task, pair.nli.task, pair.profile) == ("relevance", "nli", tiny_profile)


@pytest.mark.parametrize(
    "profile, message",
    [("nonsense", "is not known"), ("rel=/x", "needs both"), ("rel=/x,foo=/y", "cannot read"), ("judge:", "give a model spec")],
)
def test_bad_profiles(profile, message):
    with pytest.raises(ConfigError, match=message):
        load_profile(profile, device="cpu")


def test_embedded_profile_not_built(monkeypatch, tmp_path):
    import engine.discriminators.profiles as profiles

    monkeypatch.setattr(profiles, "embedded_dirs", lambda: (tmp_path / "relevance", tmp_path / "nli"))
    with pytest.raises(ConfigError, match="embedded discriminators are not built yet; run `make discriminators`"):
        load_profile("embedded", device="cpu")


# -- judges --------------------------------------------------------------------------------
def test_judge_reads_label_logprobs(fake_chat_model):
    model = fake_chat_model(logprobs={"no": -2.0, "yes": -0.5, "contradict": -3.0, "neutral": -1.0, "entailed": -0.2})
    rel = JudgeDiscriminator(model, "relevance")
    probs = rel.predict([REL, REL])
    expected = np.exp([-2.0, -0.5]) / np.exp([-2.0, -0.5]).sum()
    np.testing.assert_allclose(probs, [expected, expected])
    assert not probs.used_fallback and rel.fallback_calls == 0
    kind, messages, labels = model.calls[0]
    assert kind == "label_logprobs" and labels == ("no", "yes")
    assert messages[-1].role == "user" and messages[-1].content == EXPECTED_RELEVANCE.decode()
    nli = JudgeDiscriminator(model, "nli").predict([NLI])
    assert nli.shape == (1, 3) and int(nli.argmax()) == 2  # entailed, in [contradicted, neutral, entailed] order


def test_judge_text_fallback_is_flagged_and_counted(fake_chat_model):
    judge = JudgeDiscriminator(fake_chat_model(logprobs=None, answer="Contradict."), "nli")
    probs = judge.predict([NLI])
    np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0]])
    assert probs.used_fallback and list(probs.how) == ["text"] and judge.fallback_calls == 1
    vague = JudgeDiscriminator(fake_chat_model(logprobs=None, answer="Hard to say."), "relevance")
    probs = vague.predict([REL])
    np.testing.assert_allclose(probs, [[0.5, 0.5]])
    assert list(probs.how) == ["unparsed"] and vague.unparsed == 1


# -- labelled data and metrics -------------------------------------------------------------
def test_labelled_rows_and_bad_lines(tmp_path):
    from engine.discriminators.data import read_labelled

    good = {"character": "A", "statement": "A is here.", "query": "Where?", "response": "Here.", "label": "contradict"}
    path = tmp_path / "nli.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "label": "maybe"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}:3: label 'maybe' is not one of"):
        read_labelled(path, "nli")
    path.write_text(json.dumps(good) + "\n", encoding="utf-8")
    assert read_labelled(path, "nli")[0].label == 0
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=":1: not valid JSON"):
        read_labelled(path, "nli")
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="binary|UTF-8"):
        read_labelled(path, "relevance")


def test_classification_report_by_hand():
    from engine.metrics import classification_report

    r = classification_report([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], ("no", "yes"))
    assert r["n"] == 5 and r["accuracy"] == pytest.approx(0.6)
    assert r["per_label"]["yes"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert r["per_label"]["no"]["precision"] == pytest.approx(0.5)
    assert r["confusion"] == {"no": {"no": 1, "yes": 1}, "yes": {"no": 1, "yes": 2}}


# -- training ------------------------------------------------------------------------------
def write_rows(path: Path, task: str, characters=("Alice", "Bob"), n: int = 5) -> Path:
    rows = []
    for c in characters:
        for i in range(n):
            st = f"{c} likes thing {i}."
            if task == "relevance":
                rows += [{"character": c, "statement": st, "query": f"Do you like thing {i}?", "label": "yes"},
                         {"character": c, "statement": st, "query": f"What is job {i}?", "label": "no"}]  # fmt: skip
            else:
                for label, resp in (("entailed", "Yes I do."), ("neutral", "Hello."), ("contradict", "No, I hate it.")):
                    rows.append({"character": c, "statement": st, "query": f"Thing {i}?", "response": resp, "label": label})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_training_is_seeded_and_loadable(tiny_models, tmp_path):
    from engine.disc_train import TrainConfig, train_discriminator
    from engine.discriminators import read_meta

    data = write_rows(tmp_path / "rel.jsonl", "relevance")
    base = str(tiny_models.path("bert", "relevance"))
    configs = [TrainConfig("relevance", data, base, tmp_path / f"out{i}", epochs=2, batch_size=4, device="cpu", int8=True)
               for i in range(2)]  # fmt: skip
    a, b = (train_discriminator(c) for c in configs)
    assert a.losses == b.losses and a.metrics == b.metrics  # same seed, same run
    assert (a.n_train, a.n_eval) == (8 * 2, 2 * 2)  # 80/20 by statement: 2 of 10 statements held out
    meta = read_meta(a.out)
    assert meta.quantize == "int8" and meta.format == "compact" and len(meta.data_sha256) == 64
    assert "accuracy" in meta.metrics and "accuracy_int8" in meta.metrics
    disc = CrossEncoderDiscriminator.load(str(a.out), "relevance")  # device auto: int8 means the CPU
    assert disc.quantize == "int8" and disc.format == "compact" and disc.device == "cpu"


def test_split_by_character_needs_two(tmp_path):
    from engine.disc_train import split_rows
    from engine.discriminators.data import read_labelled

    rows = read_labelled(write_rows(tmp_path / "r.jsonl", "relevance", characters=("Alice",)), "relevance")
    with pytest.raises(InputError, match="only one character"):
        split_rows(rows, "character", 0.2, 0)
    train, held = split_rows(rows, "statement", 0.2, 0)
    assert {r.item.statement for r in train}.isdisjoint({r.item.statement for r in held})
    both = read_labelled(write_rows(tmp_path / "b.jsonl", "relevance"), "relevance")
    train, held = split_rows(both, "statement", 0.2, 0, held_out=("Bob",))
    assert {r.item.character for r in held} == {"Bob"} and {r.item.character for r in train} == {"Alice"}
    with pytest.raises(InputError, match="'Carol' is not in the data"):
        split_rows(both, "statement", 0.2, 0, held_out=("Carol",))
