"""The lineage of a trained LoRA adapter and its README.md model card.

Lineage = what someone needs to reproduce or trust the adapter: the base model (a hub id, or a path
relative to the adapter folder, never an absolute local path), the training data's size and sha256,
every hyperparameter as the run resolved it (our settings with their defaults filled in: rank,
alpha, device, precision; and the TRL trainer's whole config), the final metrics and the versions of
the libraries that trained it. The same dict is stored in the database and rendered as the card.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")
_DROPPED_TRAINER_KEYS = {"output_dir", "logging_dir", "hub_token", "hub_model_id", "push_to_hub_token",
                         "push_to_hub_model_id", "push_to_hub_organization", "resume_from_checkpoint"}  # fmt: skip


@dataclass(frozen=True)
class TrainingData:
    """What an adapter was trained on: `kind` (preference pairs | dialogues), count and fingerprint."""

    kind: str
    count: int
    sha256: str


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def base_reference(spec: str, path: str, adapter_dir: Path) -> dict:
    """How the card names the base: `hub_id` when it is a hub model, else `relative_path` from the
    adapter folder (or only the folder name when no relative path exists, e.g. another drive)."""
    local = Path(path).expanduser()
    if not local.exists() and not path.startswith(("/", "~", ".")) and path.count("/") <= 1:
        return {"spec": spec, "hub_id": path}
    try:
        rel = os.path.relpath(local.resolve(), Path(adapter_dir).resolve())
    except ValueError:
        rel = local.name
    return {"spec": spec if not spec.startswith("hf:") else f"hf:{rel}", "relative_path": Path(rel).as_posix()}


def trainer_config(args, out: Path) -> dict:
    """The TRL config with every default resolved, minus local paths and tokens."""
    raw = args.to_dict()
    clean = {}
    for key, value in sorted(raw.items()):
        if key in _DROPPED_TRAINER_KEYS or (isinstance(value, str) and str(out) in value):
            continue
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
        clean[key] = value
    return clean


def lineage(*, kind: str, base: dict, data: TrainingData, hyperparameters: dict, trainer: dict, metrics: dict) -> dict:
    return {
        "kind": kind,
        "base": base,
        "data": {"kind": data.kind, "count": data.count, "sha256": data.sha256},
        "hyperparameters": hyperparameters,
        "trainer_config": trainer,
        "metrics": metrics,
        "versions": library_versions(),
    }


def _table(rows: dict) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| `{k}` | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in rows.items())])


def _ranks(info: dict) -> str:
    """How many processes trained it, when the lineage says (several ranks: data-parallel)."""
    if "world_size" not in info:
        return ""
    how = info.get("strategy") or "single"
    backend = f", {info['backend']}" if info.get("backend") else ""
    return f" Trained on {info['world_size']} process(es) ({how}{backend}) on {', '.join(map(str, info.get('rank_devices') or []))}."


def model_card(name: str, info: dict) -> str:
    """README.md for the adapter folder `name`, from a `lineage` dict."""
    base = info["base"]
    method = "DPO" if info["kind"] == "dpo" else "SFT (experience upload)"
    base_text = f"`{base['hub_id']}` (Hugging Face Hub)" if "hub_id" in base else f"the folder `{base['relative_path']}` (relative to this adapter)"
    folder = Path(name).name
    base_arg = f'"{base["hub_id"]}"' if "hub_id" in base else f'os.path.join(adapter, "{base["relative_path"]}")'
    header = ["---"]
    if "hub_id" in base:
        header.append(f"base_model: {base['hub_id']}")
    header += ["library_name: peft", "pipeline_tag: text-generation",
               "tags:", "- apc-workbench", "- lora", f"- {'dpo' if info['kind'] == 'dpo' else 'sft'}", "- trl", "- peft", "- role-playing",
               "---"]  # fmt: skip
    data = info["data"]
    reference = " The base model itself was the DPO reference." if info["kind"] == "dpo" else ""
    hash_note = " (the `pairs_hash` of `apc adapters list`)" if info["kind"] == "dpo" else ""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    metrics = {k: round(v, 6) if isinstance(v, float) else v for k, v in info["metrics"].items()}
    body = f"""
# {folder}

A LoRA adapter trained with {method} by the APC Workbench, to make a role-playing character more
faithful to its persona statements (APC: Peng & Shang, NeurIPS 2024).{reference}

## Base model

{base_text}; workbench spec `{base['spec']}`.

## Training data

{data['count']} {data['kind']}, sha256 `{data['sha256']}`{hash_note}.{_ranks(info)}

## Hyperparameters (resolved)

{_table(info['hyperparameters'])}

<details><summary>The full TRL trainer config (every default resolved)</summary>

```json
{json.dumps(info['trainer_config'], indent=1, sort_keys=True)}
```

</details>

## Metrics (last logged values)

{_table(metrics)}

## Library versions

{versions}

## How to load

```python
import os
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

adapter = "path/to/this/folder"   # the folder holding this README and adapter_config.json
base = AutoModelForCausalLM.from_pretrained({base_arg})
model = PeftModel.from_pretrained(base, adapter)
tokenizer = AutoTokenizer.from_pretrained(adapter)
```

In the workbench: `--model hf:<base>+lora:<this folder>`.
"""
    return "\n".join(header) + "\n" + body


def write_model_card(adapter_dir: Path, name: str, info: dict) -> Path:
    """Replace peft's template README.md with the real card."""
    path = Path(adapter_dir) / "README.md"
    path.write_text(model_card(name, info), encoding="utf-8")
    return path
