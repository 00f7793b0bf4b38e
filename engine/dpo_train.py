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

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar, Unpack

from engine.backends.hf import keeps_system, to_chat
from engine.checks import Bounds
from engine.errors import ConfigError, InputError
from engine.model_card import TrainingData
from engine.dpo import pairs_sha256
from engine.lora_train import LoraSettings, TrainHooks, TrainResult, load_for_training, setting, train_adapter, trainer_args
from engine.types import PreferencePair


@dataclass(frozen=True)
class DpoSettings(LoraSettings):
    """DPO + LoRA settings; defaults follow the paper's script (the rest: LoraSettings)."""

    kind: ClassVar[str] = "DPO"
    BOUNDS: ClassVar[dict[str, Bounds]] = {**LoraSettings.BOUNDS, "beta": Bounds(float, 0, 100, lo_open=True, example="0.1 (paper)")}

    epochs: float = setting(10.0, "passes over the pairs (paper: 10)")
    learning_rate: float = setting(2e-4, "AdamW learning rate (paper: 2e-4)")
    beta: float = setting(0.1, "DPO beta: how far the policy may move from the reference (paper: 0.1)")
    lora_r: int | None = setting(None, "LoRA rank; empty = 128 on a GPU (paper), 16 on CPU")
    target_modules: str = setting("all-linear", "modules that get LoRA: all-linear or a comma list (q_proj,v_proj)")
    batch_size: int = setting(1, "pairs per device step (paper: 1)")
    grad_accum: int = setting(8, "gradient accumulation steps (paper: 8)")
    max_length: int = setting(1024, "max tokens of prompt + reply; longer pairs are truncated")
    seed: int = setting(42, "random seed (adapter init, data order)")
    weighted: bool = setting(False, "scale each pair's loss by its weight (APC gap; paper Eq. 9 variant); batch size 1")


def train_dpo(base_spec: str, pairs: list[PreferencePair], config: DpoSettings, out_dir: Path | str,
              **hooks: Unpack[TrainHooks]) -> TrainResult:  # fmt: skip
    """Train a DPO LoRA adapter on `pairs`; writes `out_dir/adapter`, checkpoints in `out_dir/checkpoints`.

    Raises Cancelled when `stop` is set (after saving a checkpoint to resume from)."""
    from trl import DPOConfig, DPOTrainer

    if not pairs:
        raise InputError("no preference pairs to train on; build some with `apc dpo pairs` or label pairs in the TUI")
    if config.weighted and config.batch_size != 1:
        raise ConfigError(f"weighted DPO needs batch size 1 (got {config.batch_size}); use --batch-size 1 with grad accumulation")
    loaded = load_for_training(base_spec, config, sequences=2)
    weights = _normalised_weights(pairs) if config.weighted else None
    rows = []
    for i, p in enumerate(pairs):
        row = {
            "prompt": to_chat(p.prompt, loaded.system_ok),
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        if weights is not None:
            row["weight"] = weights[i]
        rows.append(row)
    out = Path(out_dir)
    args = DPOConfig(**trainer_args(config, out, loaded.device), beta=config.beta)
    trainer_cls = _weighted_trainer() if weights is not None else DPOTrainer
    return train_adapter(
        partial(trainer_cls, ref_model=None),  # peft: the base with the adapter disabled is the reference
        args, rows, loaded, config, out,
        too_long=f"every one of the {len(rows)} pairs has a prompt of {config.max_length}+ tokens; raise --max-length",
        counts=lambda kept: {"n_pairs": len(pairs), "pairs_too_long": len(rows) - kept},
        data=TrainingData("preference pairs", len(pairs), pairs_sha256(pairs)),
        **hooks,
    )  # fmt: skip


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

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.data_collator = _WeightCollator(self.data_collator)

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
    system_ok = keeps_system(tok, getattr(model, "spec", ""))

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
