"""Preference-pair exports for other trainers: TRL, LLaMA-Factory, OpenRLHF, an HF dataset.

Only the conversation text and the pair's provenance label go out: no model specs (they may hold
local paths), no annotator names, no keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from engine.errors import InputError
from engine.types import PreferencePair

FORMATS = ("trl", "llama-factory", "openrlhf", "hf")
FORMAT_HELP = "trl | llama-factory | openrlhf | hf"


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


def export_pairs(pairs: Sequence[PreferencePair], fmt: str, out: Path | str, *, name: str = "apc_dpo") -> list[Path]:
    """Write `pairs` in `fmt`; returns the files written.

    trl       JSON Lines, conversational prompt/chosen/rejected (DPOTrainer reads it as is)
    openrlhf  JSON Lines, prompt/chosen/rejected as chat lists (--apply_chat_template --prompt_key prompt)
    llama-factory  a directory with <name>.json (sharegpt, ranking) and dataset_info.json
    hf        a directory written by datasets.Dataset.save_to_disk
    """
    if fmt not in FORMATS:
        raise InputError(f"export format {fmt!r} is not known; use {FORMAT_HELP}")
    if not pairs:
        raise InputError("no preference pairs to export; build some with `apc dpo pairs` or label pairs in the TUI")
    out = Path(out).expanduser()
    if fmt in ("trl", "openrlhf"):
        if out.is_dir():
            raise InputError(f"--out {out} is a directory; give a file name such as {out / (name + '.jsonl')}")
        return _write_jsonl([_chat(p) for p in pairs], out)
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
    from datasets import Dataset

    from engine.lora_train import quiet_training

    rows = [
        {**_chat(p), "source": p.source, "chosen_apc": p.chosen_apc, "rejected_apc": p.rejected_apc, "weight": float(p.weight)}
        for p in pairs
    ]
    with quiet_training():
        Dataset.from_list(rows).save_to_disk(str(out))
    return sorted(p for p in out.iterdir())
