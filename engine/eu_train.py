"""EU (experience upload): LoRA SFT on dialogues derived from the persona statements.

The paper's EU baseline fine-tunes the character's knowledge into the weights; at inference the
prompt carries no persona (method `none` prompt + the EU adapter = method `eu`). Dialogues come
from the teacher's NLI rows written to be *entailed* (query -> faithful reply) when present, else
from the character's queries answered with their statement, else from one generic question per
statement. Training sees exactly the `none` prompt, so train and inference prompts match.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.errors import Cancelled, ConfigError, InputError
from engine.lora_train import (
    CheckpointCallback,
    MetricsCallback,
    Progress,
    check_memory,
    check_resume,
    default_lora_r,
    drop_printers,
    estimate_bytes,
    keeps_system,
    last_metrics,
    load_base,
    lora_config,
    make_callback,
    pick_device,
    precision_args,
    quiet_training,
    resolve_base,
    to_chat,
)
from engine.types import Character, Turn


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class EuSettings:
    """EU (SFT + LoRA) settings. One help line per field."""

    epochs: float = _f(3.0, "passes over the dialogues")
    learning_rate: float = _f(2e-4, "AdamW learning rate")
    lora_r: int | None = _f(None, "LoRA rank; empty = 128 on a GPU, 16 on CPU")
    lora_alpha: int | None = _f(None, "LoRA alpha; empty = 2 x rank")
    lora_dropout: float = _f(0.05, "dropout on the LoRA branch")
    target_modules: str = _f("all-linear", "modules that get LoRA: all-linear or a comma list")
    batch_size: int = _f(1, "dialogues per device step")
    grad_accum: int = _f(8, "gradient accumulation steps")
    max_length: int = _f(1024, "max tokens per dialogue")
    max_steps: int = _f(-1, "stop after this many optimizer steps; -1 = run all epochs")
    save_steps: int = _f(50, "save a resumable checkpoint every N optimizer steps")
    seed: int = _f(42, "random seed")
    use_4bit: bool = _f(False, "QLoRA: load the base in 4-bit NF4 (CUDA + bitsandbytes only)")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EuSettings:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"EU setting {sorted(unknown)[0]!r} is not known")
        return cls(**data)


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


def train_eu(
    base_spec: str,
    dialogues: list[Dialogue],
    config: EuSettings,
    out_dir: Path | str,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    resume_from: str | None = None,
    on_metrics: MetricsCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
):
    """LoRA SFT on the replies only (prompt tokens are masked); writes `out_dir/adapter`."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from engine.dpo_train import TrainResult

    if not dialogues:
        raise InputError("no EU dialogues to train on")
    base = resolve_base(base_spec)
    device = pick_device(config.device, config.use_4bit)
    r = config.lora_r or default_lora_r(device)
    if device.startswith("cuda"):
        need = estimate_bytes(base, lora_r=r, use_4bit=config.use_4bit, max_length=config.max_length, batch=config.batch_size, sequences=1)
        check_memory(device, need, "EU training")
    model, tok = load_base(base, device, config.use_4bit)
    system_ok = keeps_system(tok)
    rows = [{"prompt": to_chat(d.prompt, system_ok), "completion": [{"role": "assistant", "content": d.reply}]} for d in dialogues]
    out = Path(out_dir)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        seed=config.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        completion_only_loss=True,
        **precision_args(device),
    )
    callback = make_callback(progress, stop, on_metrics, on_checkpoint)
    with quiet_training():
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            peft_config=lora_config(r, config.lora_alpha, config.lora_dropout, config.target_modules),
            callbacks=[callback],
        )
        drop_printers(trainer)
        if len(trainer.train_dataset) == 0:
            raise InputError(f"no dialogue fits in {config.max_length} tokens; raise --max-length")
        trainer.train(resume_from_checkpoint=check_resume(resume_from))
    if callback.stopped:
        raise Cancelled(f"EU training stopped at step {trainer.state.global_step}; a checkpoint was saved to resume from")
    adapter_dir = out / "adapter"
    trainer.save_model(str(adapter_dir))
    tok.save_pretrained(str(adapter_dir))
    metrics = last_metrics(trainer.state.log_history)
    metrics.update(steps=trainer.state.global_step, n_dialogues=len(dialogues), lora_r=r, device=device)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return TrainResult(str(adapter_dir), metrics, trainer.state.global_step)
