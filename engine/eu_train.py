"""EU (experience upload): LoRA SFT on dialogues derived from the persona statements.

The paper's EU baseline fine-tunes the character's knowledge into the weights; at inference the
prompt carries no persona (method `none` prompt + the EU adapter = method `eu`). Dialogues come
from the teacher's NLI rows written to be *entailed* (query -> faithful reply) when present, else
from the character's queries answered with their statement, else from one generic question per
statement. Training sees exactly the `none` prompt, so train and inference prompts match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Unpack

from engine.backends.hf import to_chat
from engine.errors import InputError
from engine.model_card import TrainingData
from engine.lora_train import LoraSettings, TrainHooks, TrainResult, load_for_training, setting, train_adapter, trainer_args
from engine.types import Character, Turn


@dataclass(frozen=True)
class EuSettings(LoraSettings):
    """EU (SFT + LoRA) settings (the rest: LoraSettings). One help line per field."""

    kind: ClassVar[str] = "EU"

    epochs: float = setting(3.0, "passes over the dialogues")
    batch_size: int = setting(1, "dialogues per device step")
    max_length: int = setting(1024, "max tokens per dialogue")


@dataclass(frozen=True)
class Dialogue:
    prompt: tuple[Turn, ...]  # the `none`-method prompt for this query
    reply: str
    origin: str  # teacher | statement | generic


def eu_dialogues(
    character: Character,
    entailed: Sequence[tuple[str, str]] = (),
    queries: Sequence[tuple[str, str]] = (),
) -> list[Dialogue]:
    """Training dialogues. `entailed`: (query, teacher reply written to entail a statement);
    `queries`: (query, statement text it was written for). Falls back to one generic question per
    enabled statement, answered with the statement itself."""
    if entailed:
        items = [(q, r, "teacher") for q, r in entailed if q.strip() and r.strip()]
    elif queries:
        items = [(q, s, "statement") for q, s in queries if q.strip() and s.strip()]
    else:
        items = [(f"Tell me something about yourself, {character.name}.", s.text, "generic") for s in character.enabled_statements]
    if not items:
        raise InputError(f"character {character.name!r}: nothing to build EU dialogues from; add statements or synthesize queries")
    return [Dialogue(none_prompt(character, q), reply, origin) for q, reply, origin in items]


def none_prompt(character: Character, query: str) -> tuple[Turn, ...]:
    """The method-`none` prompt (no persona statements), as generation builds it."""
    from engine.rag import build_prompt

    return tuple(build_prompt(character, (Turn("user", query),), "none", 0, None).messages)


def dialogues_sha256(dialogues: Sequence[Dialogue]) -> str:
    """Fingerprint of an EU training set (every prompt and reply, in order): adapter lineage."""
    import hashlib
    import json

    h = hashlib.sha256()
    for d in dialogues:
        h.update(json.dumps([[[t.role, t.content] for t in d.prompt], d.reply], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def train_eu(base_spec: str, dialogues: list[Dialogue], config: EuSettings, out_dir: Path | str,
             **hooks: Unpack[TrainHooks]) -> TrainResult:  # fmt: skip
    """LoRA SFT on the replies only (prompt tokens are masked); writes `out_dir/adapter`."""
    from trl import SFTConfig, SFTTrainer

    if not dialogues:
        raise InputError("no EU dialogues to train on")
    loaded = load_for_training(base_spec, config, sequences=1)
    rows = [{"prompt": to_chat(d.prompt, loaded.system_ok), "completion": [{"role": "assistant", "content": d.reply}]}
            for d in dialogues]  # fmt: skip
    out = Path(out_dir)
    args = SFTConfig(**trainer_args(config, out, loaded.device), completion_only_loss=True)
    return train_adapter(
        SFTTrainer, args, rows, loaded, config, out,
        too_long=f"no dialogue fits in {config.max_length} tokens; raise --max-length",
        counts=lambda kept: {"n_dialogues": len(dialogues)},
        data=TrainingData("dialogues", len(dialogues), dialogues_sha256(dialogues)),
        **hooks,
    )  # fmt: skip
