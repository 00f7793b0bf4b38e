"""Preference-pair exports against the formats their readers expect: OpenRLHF's keys, flags and
`margin`; the HF dataset in the Hub's layout (parquet + dataset card) loading offline."""

from __future__ import annotations

import json

import pytest

from engine.types import PreferencePair, Turn
from tests.fixtures_dpo import CHARACTER, store_pairs, toy_pairs

PROMPT = (Turn("system", f"You are {CHARACTER}."), Turn("user", "Do you have a sister?"))


def mixed_pairs() -> list[PreferencePair]:
    return [
        PreferencePair(PROMPT, "Yes, Anne.", "No sister.", "apc", chosen_apc=2.25, rejected_apc=0.75),
        PreferencePair(PROMPT, "Anne lives in Quimper.", "I am alone.", "human"),  # unscored
        PreferencePair(PROMPT, "My sister Anne.", "Anne? Never heard of her.", "human", chosen_apc=0.5, rejected_apc=1.0),
    ]


def test_openrlhf_export_has_margin_and_documented_flags(dpo_services, tmp_path, tiny_dir):
    from transformers import AutoTokenizer
    from typer.testing import CliRunner

    from apc_tui.cli import app
    from engine.dpo_export import OPENRLHF_FLAGS

    store_pairs(dpo_services, dpo_services.character_id, mixed_pairs())
    (path,) = dpo_services.training.export(CHARACTER, "openrlhf", tmp_path / "orlhf.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["margin"] for r in rows] == [1.5, 0.0, 0.0]  # the APC gap; 0 when unscored or against APC
    assert [r["source"] for r in rows] == ["apc", "human", "human"]

    # what OpenRLHF does with --apply_chat_template --prompt_key prompt --chosen_key chosen --rejected_key rejected:
    # render prompt (with the generation prompt) and prompt + reply, and cut the reply off at len(prompt)
    flags = OPENRLHF_FLAGS.split()
    keys = {flags[i].removeprefix("--"): flags[i + 1] for i in range(len(flags) - 1) if flags[i].endswith("_key")}
    assert keys == {"prompt_key": "prompt", "chosen_key": "chosen", "rejected_key": "rejected"}
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    for r in rows:
        prompt = tok.apply_chat_template(r[keys["prompt_key"]], tokenize=False, add_generation_prompt=True)
        for key, reply in (("chosen_key", r["chosen"][0]["content"]), ("rejected_key", r["rejected"][0]["content"])):
            full = tok.apply_chat_template(r[keys["prompt_key"]] + r[keys[key]], tokenize=False)
            assert full.startswith(prompt) and reply in full[len(prompt):]

    help_text = CliRunner().invoke(app, ["dpo", "export", "--help"], terminal_width=200).output
    for flag in flags:
        assert flag in help_text
    readme = (__import__("pathlib").Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert OPENRLHF_FLAGS in readme and "--margin_loss" in readme


def test_hf_export_is_a_hub_dataset_with_a_card(dpo_services, keyword_scorer, branch, tmp_path):
    import datasets
    import yaml

    from engine.dpo import pairs_sha256

    svc = dpo_services
    branch(svc, svc.character_id, ["I have a sister, Anne.", "I never had a sister."], scorer=keyword_scorer)  # an APC pair, scored by `keyword`
    store_pairs(svc, svc.character_id, toy_pairs(2))
    pairs = [p for _, p in svc.training.training_pairs(svc.character_id)]
    out = tmp_path / "hf"
    files = svc.training.export(CHARACTER, "hf", out)
    assert out / "README.md" in files and out / "data" / "train-00000-of-00001.parquet" in files

    text = (out / "README.md").read_text()
    header, body = text.removeprefix("---\n").split("\n---\n", 1)
    meta = yaml.safe_load(header)
    features = [f["name"] for f in meta["dataset_info"]["features"]]
    assert features == ["prompt", "chosen", "rejected", "source", "chosen_apc", "rejected_apc", "margin", "weight"]
    assert meta["dataset_info"]["splits"] == [{"name": "train", "num_bytes": meta["dataset_info"]["dataset_size"], "num_examples": 3}]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]
    assert meta["size_categories"] == ["n<1K"] and "dpo" in meta["tags"] and meta["language"] == ["en"]
    assert CHARACTER in body and pairs_sha256(pairs) in body and "`keyword`" in body
    assert "3 pairs in one `train` split: 3 ranked by APC, 0 by a human" in " ".join(body.split()) and str(tmp_path) not in text

    by_folder = datasets.load_dataset(str(out), split="train")  # offline: HF_HUB_OFFLINE=1 in every test
    by_parquet = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    arrow = datasets.load_from_disk(str(out / "arrow"))
    assert by_folder.to_list() == by_parquet.to_list() == arrow.to_list()
    assert [r["chosen"][0]["content"] for r in by_folder] == [p.chosen for p in pairs]
    assert by_folder[0]["margin"] == pytest.approx(pairs[0].chosen_apc - pairs[0].rejected_apc)


def test_dataset_card_names_no_local_paths():
    from engine.dpo_export import public_profile

    assert public_profile("rel=/home/u/discs/rel-v2,nli=/home/u/discs/nli-v2/") == "rel=rel-v2,nli=nli-v2"
    assert public_profile("judge:hf:/srv/models/qwen+lora:/srv/adapters/a1") == "judge:hf:qwen+lora:a1"
    assert public_profile("judge:openai:gpt-4o") == "judge:openai:gpt-4o" and public_profile("paper") == "paper"


def test_model_card_names_a_hub_base_by_id_and_a_local_one_by_relative_path(tmp_path):
    import yaml

    from engine.model_card import TrainingData, base_reference, lineage, model_card

    adapter = tmp_path / "adapters" / "koishi-dpo" / "adapter"
    adapter.mkdir(parents=True)
    (tmp_path / "models" / "base").mkdir(parents=True)
    hub = base_reference("hf:google/gemma-1.1-7b-it", "google/gemma-1.1-7b-it", adapter)
    assert hub == {"spec": "hf:google/gemma-1.1-7b-it", "hub_id": "google/gemma-1.1-7b-it"}
    local = base_reference(f"hf:{tmp_path}/models/base", str(tmp_path / "models" / "base"), adapter)
    assert local["relative_path"] == "../../../models/base" and str(tmp_path) not in json.dumps(local)

    info = lineage(kind="dpo", base=hub, data=TrainingData("preference pairs", 3, "ab" * 32),
                   hyperparameters={"beta": 0.1, "lora_r": 128}, trainer={"beta": 0.1}, metrics={"loss": 0.5})  # fmt: skip
    card = model_card("koishi-dpo", info)
    meta = yaml.safe_load(card.removeprefix("---\n").split("\n---\n", 1)[0])
    assert meta["base_model"] == "google/gemma-1.1-7b-it" and meta["library_name"] == "peft"
    assert 'AutoModelForCausalLM.from_pretrained("google/gemma-1.1-7b-it")' in card and "ab" * 32 in card
