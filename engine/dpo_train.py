"""DPO with a LoRA adapter through TRL's DPOTrainer (the paper's stage 8).

`ref_model=None` with a peft adapter: the reference is the base model with the adapter disabled,
as in the paper ("the base model itself serves as the reference"). Datasets are conversational
(prompt / chosen / rejected as chat messages), so each model's own chat template is used.

The relevance-weighted variant (`weighted=True`, our reading of the paper's Eq. 9): each pair's DPO
term is scaled by its weight (by default the APC gap between chosen and rejected), normalised to
mean 1 over the set, so pairs APC is surer about count more. Exact per pair at batch size 1 (the
paper's setting); refused at larger batches, where TRL only exposes the batch mean.
"""

from __future__ import annotations

import shutil
import threading
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
from engine.types import PreferencePair


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DpoSettings:
    """DPO + LoRA settings; defaults follow the paper's script. One help line per field."""

    epochs: float = _f(10.0, "passes over the pairs (paper: 10)")
    learning_rate: float = _f(2e-4, "AdamW learning rate (paper: 2e-4)")
    beta: float = _f(0.1, "DPO beta: how far the policy may move from the reference (paper: 0.1)")
    lora_r: int | None = _f(None, "LoRA rank; empty = 128 on a GPU (paper), 16 on CPU")
    lora_alpha: int | None = _f(None, "LoRA alpha; empty = 2 x rank")
    lora_dropout: float = _f(0.05, "dropout on the LoRA branch")
    target_modules: str = _f("all-linear", "modules that get LoRA: all-linear or a comma list (q_proj,v_proj)")
    batch_size: int = _f(1, "pairs per device step (paper: 1)")
    grad_accum: int = _f(8, "gradient accumulation steps (paper: 8)")
    max_length: int = _f(1024, "max tokens of prompt + reply; longer pairs are truncated")
    max_steps: int = _f(-1, "stop after this many optimizer steps; -1 = run all epochs")
    save_steps: int = _f(50, "save a resumable checkpoint every N optimizer steps")
    seed: int = _f(42, "random seed (adapter init, data order)")
    use_4bit: bool = _f(False, "QLoRA: load the base in 4-bit NF4 (CUDA + bitsandbytes only)")
    weighted: bool = _f(False, "scale each pair's loss by its weight (APC gap; paper Eq. 9 variant); batch size 1")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DpoSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"DPO setting {sorted(unknown)[0]!r} is not known; known: {', '.join(sorted(known))}")
        return cls(**data)


def settings_help(cls=DpoSettings) -> dict[str, str]:
    """name -> one-line help: what the CLI flags and the TUI form show."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: str
    metrics: dict
    steps: int


def train_dpo(
    base_spec: str,
    pairs: list[PreferencePair],
    config: DpoSettings,
    out_dir: Path | str,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    resume_from: str | None = None,
    on_metrics: MetricsCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> TrainResult:
    """Train a DPO LoRA adapter on `pairs`; writes `out_dir/adapter`, checkpoints in `out_dir/checkpoints`.

    Raises Cancelled when `stop` is set (after saving a checkpoint to resume from)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    if not pairs:
        raise InputError("no preference pairs to train on; build some with `apc dpo pairs` or label pairs in the TUI")
    if config.weighted and config.batch_size != 1:
        raise ConfigError(f"weighted DPO needs batch size 1 (got {config.batch_size}); use --batch-size 1 with grad accumulation")
    base = resolve_base(base_spec)
    device = pick_device(config.device, config.use_4bit)
    r = config.lora_r or default_lora_r(device)
    if device.startswith("cuda"):
        need = estimate_bytes(base, lora_r=r, use_4bit=config.use_4bit, max_length=config.max_length, batch=config.batch_size, sequences=2)
        check_memory(device, need, "DPO training")
    model, tok = load_base(base, device, config.use_4bit)
    system_ok = keeps_system(tok)
    weights = _normalised_weights(pairs) if config.weighted else None
    rows = []
    for i, p in enumerate(pairs):
        row = {
            "prompt": to_chat(p.prompt, system_ok),
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        if weights is not None:
            row["weight"] = weights[i]
        rows.append(row)
    out = Path(out_dir)
    args = DPOConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        beta=config.beta,
        max_length=config.max_length,
        seed=config.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        **precision_args(device),
    )
    callback = make_callback(progress, stop, on_metrics, on_checkpoint)
    trainer_cls = _weighted_trainer() if weights is not None else DPOTrainer
    with quiet_training():
        trainer = trainer_cls(
            model=model,
            ref_model=None,  # peft: the base with the adapter disabled is the reference
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            peft_config=lora_config(r, config.lora_alpha, config.lora_dropout, config.target_modules),
            callbacks=[callback],
        )
        drop_printers(trainer)
        kept = len(trainer.train_dataset)
        if kept == 0:
            raise InputError(f"every one of the {len(rows)} pairs has a prompt of {config.max_length}+ tokens; raise --max-length")
        if weights is not None:
            trainer.data_collator = _WeightCollator(trainer.data_collator)
        trainer.train(resume_from_checkpoint=check_resume(resume_from))
    if callback.stopped:
        raise Cancelled(f"DPO training stopped at step {trainer.state.global_step}; a checkpoint was saved to resume from")
    adapter_dir = out / "adapter"
    trainer.save_model(str(adapter_dir))
    tok.save_pretrained(str(adapter_dir))
    metrics = last_metrics(trainer.state.log_history)
    metrics.update(steps=trainer.state.global_step, n_pairs=len(pairs), pairs_too_long=len(rows) - kept, lora_r=r, device=device)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the adapter is saved; optimizer states are large
    return TrainResult(str(adapter_dir), metrics, trainer.state.global_step)


def _normalised_weights(pairs: list[PreferencePair]) -> list[float]:
    raw = [max(float(p.weight), 0.0) for p in pairs]
    mean = sum(raw) / len(raw)
    if mean <= 0:
        raise InputError("weighted DPO: every pair has weight 0; check the pairs' APC scores or train unweighted")
    return [w / mean for w in raw]


class _WeightCollator:
    """Wraps TRL's preference collator: keeps each pair's weight as a tensor beside the batch."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, examples):
        import torch

        weights = torch.tensor([float(e.pop("weight")) for e in examples])
        batch = self.inner(examples)
        batch["weight"] = weights
        return batch


def _weighted_trainer():
    from trl import DPOTrainer

    class WeightedDPOTrainer(DPOTrainer):
        """DPO whose loss is scaled by the pair's weight (batch size 1: exact per pair)."""

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if "weight" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "weight"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weight = inputs.pop("weight").to(self.accelerator.device).mean()
            out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            if return_outputs:
                loss, rest = out
                return loss * weight, rest
            return out * weight

    return WeightedDPOTrainer


def preference_margins(model, pairs: list[PreferencePair]) -> list[float]:
    """log p(chosen | prompt) - log p(rejected | prompt) per pair, under a loaded HF ChatModel
    (with or without its adapter): positive means the model prefers what was chosen."""
    import torch

    hf, tok = getattr(model, "model", None), getattr(model, "tokenizer", None)
    if hf is None or tok is None:
        raise ConfigError(f"{getattr(model, 'spec', model)!r}: log-probabilities need a local transformers model (hf: or tiny)")
    system_ok = keeps_system(tok)

    def logp(prompt, reply: str) -> float:
        chat = to_chat(prompt, system_ok)
        p_ids = tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        full = tok.apply_chat_template(chat + [{"role": "assistant", "content": reply}], tokenize=True, return_dict=True)["input_ids"]
        ids = torch.tensor([full], device=hf.device)
        with torch.inference_mode():
            logits = hf(input_ids=ids).logits.float()
        lp = torch.log_softmax(logits[0, :-1], dim=-1)
        targets = ids[0, 1:]
        start = len(p_ids) - 1
        return float(lp[start:].gather(1, targets[start:, None]).sum())

    return [logp(p.prompt, p.chosen) - logp(p.prompt, p.rejected) for p in pairs]
