"""Preference pairs (APC margin, human overrides, branches), DPO training, adapters, exports."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError, InputError
from engine.types import Turn
from tests.fixtures_dpo import CHARACTER, STATEMENTS, TRAIN_QUERIES, ScriptedModel, store_pairs, toy_pairs

FAITHFUL = "I have a sister, Anne."
CONTRADICTING = "I never had a sister."
NEUTRAL_A = "What a lovely evening."
NEUTRAL_B = "Ah, the wind is cold tonight."


# -- pairs ----------------------------------------------------------------------------------------
def test_pairs_keep_only_apc_gaps_above_the_margin(keyword_scorer):
    from engine.dpo import build_apc_pairs
    from engine.types import Character, Statement

    character = Character(CHARACTER, statements=tuple(Statement(s) for s in STATEMENTS))
    model = ScriptedModel({
        "Do you have a sister?": [CONTRADICTING, FAITHFUL],  # big gap: kept, faithful chosen
        "What sweets do you love?": [NEUTRAL_A, NEUTRAL_B],  # both neutral: equal APC, dropped
        "How long did you keep the lighthouse?": [FAITHFUL, FAITHFUL],  # identical replies: dropped
    })  # fmt: skip
    kept = build_apc_pairs(model, keyword_scorer, character, TRAIN_QUERIES, method="rag", k=2, margin=0.2)
    assert [q for q, n in model.calls] == TRAIN_QUERIES and all(n == 2 for _, n in model.calls)  # one n=2 call per query
    assert len(kept) == 1
    sp = kept[0]
    assert sp.pair.chosen == FAITHFUL and sp.pair.rejected == CONTRADICTING
    assert sp.pair.chosen_apc - sp.pair.rejected_apc > 0.2
    assert sp.pair.source == "apc" and sp.pair.method == "rag" and sp.pair.prompt[-1] == Turn("user", "Do you have a sister?")
    scores = keyword_scorer.score(CHARACTER, STATEMENTS, sp.query, [FAITHFUL, CONTRADICTING])
    assert sp.pair.chosen_apc == pytest.approx(scores[0].apc) and sp.pair.rejected_apc == pytest.approx(scores[1].apc)
    # a margin larger than the gap drops it too
    gap = sp.pair.chosen_apc - sp.pair.rejected_apc
    assert build_apc_pairs(model, keyword_scorer, character, TRAIN_QUERIES[1:2], k=2, margin=gap + 0.01) == []


def test_pairs_job_stores_pairs_once_and_resumes(scripted_services):
    svc = scripted_services
    config, cid = svc.training.pairs_config(CHARACTER, "tiny", k=2, margin=0.2)  # a real spec; the pool answers with the scripted model
    row = svc.jobs.start("pairs", config, character_id=cid)
    assert row["status"] == "done", row["error"]
    assert row["artifacts"]["pairs_kept"] == 3 and row["checkpoint"]["kept"] == 3
    rows = svc.training.list_pairs(CHARACTER)
    assert len(rows) == 3 and {r["source"] for r in rows} == {"apc"} and all(r["query_id"] for r in rows)
    assert all("never" in r["rejected"] for r in rows)
    again = svc.jobs.start("pairs", config, character_id=cid)  # the same replies again: no duplicates
    assert again["status"] == "done" and again["artifacts"]["stored"] == 0
    assert len(svc.training.list_pairs(CHARACTER)) == 3


def test_human_labels_override_apc(dpo_services, keyword_scorer, branch):
    svc = dpo_services
    a, b = branch(svc, svc.character_id, [FAITHFUL, CONTRADICTING], scorer=keyword_scorer)
    rows = svc.training.list_pairs(CHARACTER)
    assert [(r["source"], r["chosen"], r["chosen_message_id"]) for r in rows] == [("apc", FAITHFUL, a)]

    pid = svc.training.record_preference(a, b, "b", annotator="ann")  # the human disagrees with APC
    rows = svc.training.list_pairs(CHARACTER)
    assert [(r["source"], r["chosen"], r["rejected"], r["annotator"]) for r in rows] == [("human", CONTRADICTING, FAITHFUL, "ann")]

    svc.training.record_preference(a, b, "tie", annotator="ann")  # latest label wins: tie drops the pair
    assert svc.training.list_pairs(CHARACTER) == []
    svc.training.record_preference(b, a, "both_bad", annotator="ann")
    assert svc.training.list_pairs(CHARACTER) == []

    ideal = "Yes, my sister Anne lives in Quimper."
    svc.training.record_preference(a, b, "a", annotator="ann", ideal_response=ideal)
    rows = {r["source"]: r for r in svc.training.list_pairs(CHARACTER)}
    assert rows["edited"]["chosen"] == ideal and rows["edited"]["rejected"] == CONTRADICTING
    assert rows["human"]["chosen"] == FAITHFUL and len(rows) == 2

    history = svc.training.pairs.preferences(svc.character_id, history=True)
    assert len(history) == 4 and len(svc.training.pairs.preferences(svc.character_id)) == 1  # one current vote
    for pref in history[:0:-1]:  # undo the re-votes, newest first: each brings the one it replaced back
        restored = svc.training.undo_preference(pref["id"])
        assert restored is not None and restored["superseded_by"] is None
    assert [r["source"] for r in svc.training.list_pairs(CHARACTER)] == ["human"]  # the first label remains
    assert svc.training.undo_preference(pid) is None
    assert [(r["source"], r["chosen"]) for r in svc.training.list_pairs(CHARACTER)] == [("apc", FAITHFUL)]  # APC is back


def test_human_label_replaces_a_generated_pair_with_the_same_replies(dpo_services, branch):
    svc = dpo_services
    a, b = branch(svc, svc.character_id, [FAITHFUL, CONTRADICTING])  # unscored: no branch pair
    prompt = svc.training.pairs.prompt_of(svc.training.pairs.message(a))
    generated = toy_pairs(1)[0].__class__(prompt, FAITHFUL, CONTRADICTING, "apc", 2.0, 1.0)
    store_pairs(svc, svc.character_id, [generated])
    svc.training.record_preference(a, b, "tie")
    assert svc.training.list_pairs(CHARACTER) == []


def test_record_preference_rejects_bad_input(dpo_services, branch):
    svc = dpo_services
    a, b = branch(svc, svc.character_id, [FAITHFUL, CONTRADICTING])
    (c,) = branch(svc, svc.character_id, [NEUTRAL_A])
    with pytest.raises(InputError, match="choice"):
        svc.training.record_preference(a, b, "maybe")
    with pytest.raises(InputError, match="same turn"):
        svc.training.record_preference(a, c, "a")
    with pytest.raises(InputError, match="no message"):
        svc.training.record_preference(a, 99999, "a")


# -- training -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dpo_lowers_loss_moves_logprobs_and_reloads(tmp_path, tiny_dir, one_thread_torch):
    from engine.backends import load_model
    from engine.dpo_train import DpoSettings, preference_margins, train_dpo
    from engine.lora_train import adapter_spec

    pairs = toy_pairs(6)
    before = preference_margins(load_model("tiny", device="cpu"), pairs[:2])
    logged: list[tuple[int, dict]] = []
    settings = DpoSettings(epochs=2, learning_rate=5e-3, lora_r=8, grad_accum=2, max_length=96, save_steps=100, device="cpu")
    result = train_dpo("tiny", pairs, settings, tmp_path / "run", on_metrics=lambda s, v: logged.append((s, v)))
    losses = [v["loss"] for _, v in logged if "loss" in v]
    assert result.steps == 6 and losses[-1] < losses[0] and result.metrics["loss"] < result.metrics["first_loss"]
    assert result.metrics["rewards/margins"] > 0 and result.metrics["rewards/accuracies"] > 0.5
    spec = adapter_spec("tiny", result.adapter_dir)
    assert spec.startswith("hf:") and "+lora:" in spec
    tuned = load_model(spec, device="cpu")  # the adapter reloads through hf:<base>+lora:<path>
    after = preference_margins(tuned, pairs[:2])
    assert all(x > y for x, y in zip(after, before, strict=True))  # log p(chosen) - log p(rejected) grew
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_weighted_dpo_scales_each_pair(tmp_path, tiny_dir, one_thread_torch):
    from engine.dpo_train import DpoSettings, train_dpo

    pairs = [p.__class__(**{**p.__dict__, "weight": w}) for p, w in zip(toy_pairs(2), (1.0, 3.0), strict=True)]
    base = dict(epochs=1, lora_r=4, grad_accum=1, max_length=96, device="cpu", learning_rate=1e-9)
    plain = train_dpo("tiny", pairs, __import__("engine.dpo_train").dpo_train.DpoSettings(**base), tmp_path / "p")
    weighted = train_dpo("tiny", pairs, DpoSettings(**base, weighted=True), tmp_path / "w")
    # step 1 has pair weight 1/2 (normalised over mean 2); at lr ~0 the loss is ln 2 times the weight
    assert plain.metrics["first_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert weighted.metrics["first_loss"] == pytest.approx(0.6931 * 0.5, abs=1e-3)
    with pytest.raises(ConfigError, match="batch size 1"):
        train_dpo("tiny", pairs, DpoSettings(**base, weighted=True, batch_size=2), tmp_path / "x")


def test_cuda_only_options_are_refused_on_cpu(tmp_path):
    from engine.dpo_train import DpoSettings, train_dpo

    with pytest.raises(ConfigError, match="4bit"):
        train_dpo("tiny", toy_pairs(1), DpoSettings(use_4bit=True, device="cpu"), tmp_path)
    with pytest.raises(ConfigError, match="only local transformers"):
        train_dpo("openai:gpt-4o", toy_pairs(1), DpoSettings(device="cpu"), tmp_path)
    with pytest.raises(InputError, match="no preference pairs"):
        train_dpo("tiny", [], DpoSettings(device="cpu"), tmp_path)


def test_memory_estimate_refuses_what_cannot_fit(tiny_dir):
    from engine.lora_train import BaseModel, check_memory, estimate_bytes

    need = estimate_bytes(BaseModel("tiny", str(tiny_dir)), lora_r=8, use_4bit=False, max_length=128, batch=1, sequences=2)
    assert 1024**3 < need < 2 * 1024**3  # tiny weights + the 1 GiB CUDA context allowance
    check_memory("cpu", 10**15, "DPO")  # no GPU: nothing to check


def test_memory_check_refuses_a_full_gpu(monkeypatch):
    import torch

    from engine.lora_train import check_memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (2 * 1024**3, 80 * 1024**3))
    with pytest.raises(ConfigError, match=r"needs about 10.0 GiB on cuda:0 but only 2.0 GiB is free; use --4bit"):
        check_memory("cuda:0", 10 * 1024**3, "DPO training")
    check_memory("cuda", 1024**3, "DPO training")  # fits: no error


@pytest.mark.slow
def test_dpo_job_registers_adapter_with_lineage(dpo_services, tiny_dir, one_thread_torch):
    from engine.backends import load_model
    from engine.dpo import pairs_sha256

    svc = dpo_services
    ids = store_pairs(svc, svc.character_id, toy_pairs(3))
    config, cid = svc.finetune.train_config("dpo", CHARACTER, "tiny", "maelle-dpo",
                                            {"epochs": 1, "lora_r": 4, "grad_accum": 1, "max_length": 96, "device": "cpu"})  # fmt: skip
    row = svc.jobs.start("dpo", config, character_id=cid)
    assert row["status"] == "done", row["error"]
    (adapter,) = svc.finetune.list_adapters(CHARACTER)
    assert adapter["name"] == "maelle-dpo" and adapter["kind"] == "dpo" and adapter["base_model"] == "tiny"
    assert adapter["pair_ids"] == ids and adapter["job_id"] == row["id"] and adapter["present"]
    assert adapter["pairs_hash"] == pairs_sha256([p for _, p in svc.training.training_pairs(cid)])
    assert adapter["config"]["lora_r"] == 4 and adapter["metrics"]["steps"] == 3
    assert {m["name"] for m in svc.jobs.metrics(row["id"])} >= {"loss", "rewards/margins", "rewards/accuracies"}
    assert load_model(adapter["spec"], device="cpu").generate([Turn("user", "hi")], 1)  # reloads and generates
    from engine.dpo_train import DpoSettings
    from tests.fixtures_dpo import assert_model_card

    assert_model_card(adapter["path"], adapter["lineage"], "dpo", tiny_dir, adapter["pairs_hash"], DpoSettings)
    with pytest.raises(InputError, match="exists already"):
        svc.finetune.train_config("dpo", CHARACTER, "tiny", "maelle-dpo", {})


# -- exports --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_exports_load_with_datasets_and_trl_accepts_them(dpo_services, tmp_path, tiny_dir, one_thread_torch):
    import datasets

    svc = dpo_services
    store_pairs(svc, svc.character_id, toy_pairs(3))
    out = {fmt: tmp_path / name for fmt, name in
           (("trl", "trl.jsonl"), ("openrlhf", "orlhf.jsonl"), ("llama-factory", "lf"), ("hf", "hfds"))}  # fmt: skip
    for fmt, path in out.items():
        svc.training.export(CHARACTER, fmt, path)
    trl = datasets.load_dataset("json", data_files=str(out["trl"]), split="train")
    orl = datasets.load_dataset("json", data_files=str(out["openrlhf"]), split="train")
    hf = datasets.load_dataset(str(out["hf"]), split="train")  # the Hub layout: README.md + data/*.parquet
    assert len(datasets.load_from_disk(str(out["hf"] / "arrow"))) == 3
    info = json.loads((out["llama-factory"] / "dataset_info.json").read_text())
    (name, entry), = info.items()
    lf = datasets.load_dataset("json", data_files=str(out["llama-factory"] / entry["file_name"]), split="train")
    assert entry["ranking"] is True and entry["formatting"] == "sharegpt"
    for ds in (trl, orl, hf, lf):
        assert len(ds) == 3
    assert trl[0]["prompt"][-1]["role"] == "user" and trl[0]["chosen"] == [{"role": "assistant", "content": toy_pairs(1)[0].chosen}]
    assert lf[0]["conversations"][0]["from"] == "human" and lf[0]["chosen"]["from"] == "gpt" and lf[0]["system"]
    for path in [out["trl"], out["openrlhf"], *out["llama-factory"].iterdir(), out["hf"] / "README.md"]:
        text = path.read_text()
        assert str(tmp_path) not in text and str(tiny_dir) not in text and "/root" not in text and "api_key" not in text

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    from peft import LoraConfig

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_dir), ref_model=None, processing_class=tok, train_dataset=trl,
        args=DPOConfig(output_dir=str(tmp_path / "o"), max_steps=1, report_to=[], use_cpu=True, bf16=False,
                       activation_checkpointing=False, max_length=96, disable_tqdm=True),
        peft_config=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )  # fmt: skip
    assert trainer.train().global_step == 1


def test_export_refuses_bad_targets(dpo_services, tmp_path):
    svc = dpo_services
    with pytest.raises(InputError, match="no preference pairs"):
        svc.training.export(CHARACTER, "trl", tmp_path / "x.jsonl")
    store_pairs(svc, svc.character_id, toy_pairs(1))
    with pytest.raises(InputError, match="not known"):
        svc.training.export(CHARACTER, "csv", tmp_path / "x.csv")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(InputError, match="not an empty directory"):
        svc.training.export(CHARACTER, "hf", tmp_path / "full")


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_dpo_list_and_bad_input(cli, services):
    services.characters.repo.upsert(CHARACTER, language="en", source_text="", passages=[], statements=[(STATEMENTS[0], "manual", None)])
    r = cli("dpo", "list", "--character", CHARACTER, "--json")
    assert r.code == 0 and r.json() == []
    r = cli("dpo", "train", "--character", CHARACTER, "--model", "tiny", "--name", "bad name!")
    assert r.code == 2 and "adapter name" in r.err and "Traceback" not in r.err
    r = cli("dpo", "train", "--character", "Nobody", "--model", "tiny", "--name", "x")
    assert r.code == 2 and "no character named" in r.err
    r = cli("adapters", "list", "--json")
    assert r.code == 0 and r.json() == []


@pytest.mark.slow
def test_stop_saves_a_checkpoint_and_training_resumes_from_it(tmp_path, tiny_dir, one_thread_torch):
    import threading

    from engine.dpo_train import DpoSettings, train_dpo
    from engine.errors import Cancelled

    stop, saved = threading.Event(), []
    settings = DpoSettings(epochs=100, max_steps=6, lora_r=4, grad_accum=1, max_length=96, save_steps=100, device="cpu")

    def on_metrics(step, values):
        if step == 2:
            stop.set()  # as the job heartbeat does when `apc jobs cancel` is requested; seen at the next step's end

    with pytest.raises(Cancelled, match="stopped at step 3"):
        train_dpo("tiny", toy_pairs(3), settings, tmp_path, stop=stop, on_metrics=on_metrics, on_checkpoint=saved.append)
    assert [p.rsplit("/", 1)[1] for p in saved] == ["checkpoint-3"]
    steps: list[int] = []
    result = train_dpo("tiny", toy_pairs(3), settings, tmp_path, resume_from=saved[-1], on_metrics=lambda s, v: steps.append(s))
    assert result.steps == 6 and sorted(set(steps)) == [4, 5, 6]  # continued after step 3
