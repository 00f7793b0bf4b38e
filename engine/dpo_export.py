"""Preference-pair exports for other trainers: TRL, LLaMA-Factory, OpenRLHF, an HF dataset.

Only the conversation text, the pair's provenance label and its APC scores go out: no model specs
(they may hold local paths), no annotator names, no keys. A scorer profile that names local
discriminator paths is written with the last path component only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.types import PreferencePair

FORMATS = ("trl", "llama-factory", "openrlhf", "hf")
FORMAT_HELP = "trl | llama-factory | openrlhf | hf"
OPENRLHF_FLAGS = "--apply_chat_template --prompt_key prompt --chosen_key chosen --rejected_key rejected"
"""What OpenRLHF's trainers need to read our file (its `margin` column is read by train_rm --margin_loss)."""
HF_PARQUET = "data/train-00000-of-00001.parquet"


@dataclass(frozen=True)
class Provenance:
    """Where a pair set came from, for the HF dataset card."""

    character: str
    scorer_profiles: tuple[str, ...] = ()
    language: str = ""


def apc_margin(pair: PreferencePair) -> float:
    """The APC gap chosen - rejected (OpenRLHF's `margin`); 0 when a reply is unscored or a human
    preferred the reply APC scored lower (a negative margin would ask the model to prefer the other)."""
    if pair.chosen_apc is None or pair.rejected_apc is None:
        return 0.0
    return max(float(pair.chosen_apc) - float(pair.rejected_apc), 0.0)


def public_profile(profile: str) -> str:
    """A scorer profile without local paths: `rel=/x/y/rel-model,nli=...` -> `rel=rel-model,nli=...`."""
    parts = re.split(r"([,=+])", profile)
    out = []
    for part in parts:
        head, sep, tail = part.rpartition(":")
        if tail.startswith(("/", "~", "./", "../")) or re.match(r"^[A-Za-z]:[\\/]", tail):
            tail = re.split(r"[\\/]", tail.rstrip("/\\"))[-1]
        out.append(head + sep + tail)
    return "".join(out)


def _chat(pair: PreferencePair) -> dict:
    return {
        "prompt": [{"role": t.role, "content": t.content} for t in pair.prompt],
        "chosen": [{"role": "assistant", "content": pair.chosen}],
        "rejected": [{"role": "assistant", "content": pair.rejected}],
    }


def _sharegpt(pair: PreferencePair) -> dict:
    roles = {"user": "human", "assistant": "gpt"}
    system = "\n\n".join(t.content for t in pair.prompt if t.role == "system")
    return {
        "conversations": [{"from": roles[t.role], "value": t.content} for t in pair.prompt if t.role != "system"],
        "chosen": {"from": "gpt", "value": pair.chosen},
        "rejected": {"from": "gpt", "value": pair.rejected},
        "system": system,
    }


def _write_jsonl(rows: list[dict], out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return [out]


def _openrlhf(pair: PreferencePair) -> dict:
    return {**_chat(pair), "margin": apc_margin(pair), "source": pair.source}


def export_pairs(pairs: Sequence[PreferencePair], fmt: str, out: Path | str, *, name: str = "apc_dpo",
                 provenance: Provenance | None = None) -> list[Path]:  # fmt: skip
    """Write `pairs` in `fmt`; returns the files written.

    trl       JSON Lines, conversational prompt/chosen/rejected (DPOTrainer reads it as is)
    openrlhf  JSON Lines, prompt/chosen/rejected as chat lists + `margin` (the APC gap) + `source`;
              train with OPENRLHF_FLAGS
    llama-factory  a directory with <name>.json (sharegpt, ranking) and dataset_info.json
    hf        a directory in the Hub's layout: README.md (dataset card: features, size, provenance)
              and data/train-00000-of-00001.parquet, ready for `load_dataset(dir)` or an upload;
              plus arrow/, the same rows written by Dataset.save_to_disk (`load_from_disk(dir/arrow)`)
    """
    if fmt not in FORMATS:
        raise InputError(f"export format {fmt!r} is not known; use {FORMAT_HELP}")
    if not pairs:
        raise InputError("no preference pairs to export; build some with `apc dpo pairs` or label pairs in the TUI")
    out = Path(out).expanduser()
    if fmt in ("trl", "openrlhf"):
        if out.is_dir():
            raise InputError(f"--out {out} is a directory; give a file name such as {out / (name + '.jsonl')}")
        return _write_jsonl([(_chat if fmt == "trl" else _openrlhf)(p) for p in pairs], out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists and is not an empty directory; give a new directory for {fmt}")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "llama-factory":
        data = out / f"{name}.json"
        data.write_text(json.dumps([_sharegpt(p) for p in pairs], ensure_ascii=False, indent=1), encoding="utf-8")
        info = {
            name: {
                "file_name": data.name,
                "formatting": "sharegpt",
                "ranking": True,
                "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "system": "system"},
            }
        }
        (out / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        return [data, out / "dataset_info.json"]
    return _write_hf(pairs, out, provenance or Provenance(character=""))


def _write_hf(pairs: Sequence[PreferencePair], out: Path, provenance: Provenance) -> list[Path]:
    from datasets import Dataset

    from engine.dpo import pairs_sha256
    from engine.lora_train import quiet_training

    rows = [
        {**_chat(p), "source": p.source, "chosen_apc": p.chosen_apc, "rejected_apc": p.rejected_apc,
         "margin": apc_margin(p), "weight": float(p.weight)}
        for p in pairs
    ]  # fmt: skip
    parquet = out / HF_PARQUET
    parquet.parent.mkdir(parents=True)
    with quiet_training():
        ds = Dataset.from_list(rows)
        ds.save_to_disk(str(out / "arrow"))
        ds.to_parquet(str(parquet))
    card = out / "README.md"
    card.write_text(dataset_card(ds, pairs, provenance, pairs_sha256(pairs), parquet.stat().st_size), encoding="utf-8")
    return [card, parquet, *sorted((out / "arrow").iterdir())]


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def dataset_card(ds, pairs: Sequence[PreferencePair], provenance: Provenance, pairs_hash: str, download_size: int) -> str:
    """README.md of the HF export: the Hub's YAML header (features, split sizes, the parquet config)
    and a body that says what the rows are, where they came from and how to load them."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    profiles = tuple(public_profile(p) for p in provenance.scorer_profiles)
    data = DatasetCardData(
        language=[provenance.language] if provenance.language else None,
        pretty_name=f"APC preference pairs: {provenance.character}" if provenance.character else "APC preference pairs",
        size_categories=[_size_category(len(pairs))],
        task_categories=["text-generation"],
        tags=["dpo", "preference", "role-playing", "persona", "apc"],
    )
    splits = SplitDict()
    splits.add(SplitInfo("train", num_bytes=ds.data.nbytes, num_examples=len(ds)))
    info = DatasetInfo(features=ds.features, splits=splits, download_size=download_size, dataset_size=ds.data.nbytes)
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    MetadataConfigs({"default": {"data_files": [{"split": "train", "path": "data/train-*.parquet"}]}}).to_dataset_card_data(data)
    by_source = {s: sum(p.source == s for p in pairs) for s in ("apc", "human", "edited")}
    scorer = ", ".join(f"`{p}`" for p in profiles) or "none recorded (human-labelled pairs only)"
    body = f"""
# {data.pretty_name}

DPO preference pairs exported by the APC Workbench: for a role-playing character, two replies to the
same prompt, the one more faithful to the character's persona `chosen`. Faithfulness is the
Active-Passive-Constraint (APC) score of Peng & Shang, *Quantifying and Optimizing Global
Faithfulness in Persona-driven Role-playing* (NeurIPS 2024); human labels override APC.

## Size

{len(pairs)} pairs in one `train` split: {by_source['apc']} ranked by APC, {by_source['human']} by a human,
{by_source['edited']} with a human-edited ideal reply as `chosen`.

## Provenance

| | |
|---|---|
| character | {provenance.character or "(not given)"} |
| pairs sha256 | `{pairs_hash}` (the workbench's `pairs_hash` of the adapters trained on this set) |
| scorer profile | {scorer} |

## Fields

| column | type | meaning |
|---|---|---|
| `prompt` | list of {{role, content}} | the conversation up to the reply (system prompt with the persona, user turns) |
| `chosen` | list of one {{role: assistant, content}} | the preferred reply |
| `rejected` | list of one {{role: assistant, content}} | the other reply |
| `source` | string | `apc`, `human` or `edited`: who decided |
| `chosen_apc`, `rejected_apc` | float or null | APC of each reply (null when unscored) |
| `margin` | float | APC gap `chosen_apc - rejected_apc`, 0 when unknown or negative |
| `weight` | float | the pair's weight for relevance-weighted DPO |

## Use

```python
from datasets import load_dataset
pairs = load_dataset("path/to/this/folder", split="train")   # or load_dataset("parquet", data_files="data/*.parquet")
# TRL: DPOTrainer(..., train_dataset=pairs) reads prompt/chosen/rejected as conversations
pairs.push_to_hub("you/{re.sub(r"[^A-Za-z0-9._-]+", "-", provenance.character.lower()).strip("-") or "apc-pairs"}-apc-dpo")   # or: hf upload you/NAME . --repo-type dataset
```
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"
