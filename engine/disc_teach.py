"""Teach a discriminator: fine-tune a copy of a current relevance or NLI cross-encoder on a
character's human labels, mixed with a replay sample of general teacher rows so general skill
is kept.

The result is always a plain LoRA adapter (+ its classification heads) over the same base, so
the numpy runtime serves a BERT one on the CPU (fast start):
- the current discriminator is itself a LoRA adapter (the embedded MiniLM ones, or an earlier
  taught version): training continues from that adapter, over its base;
- it is a full checkpoint (paper / multilingual / a local directory): a fresh LoRA goes on top of
  it, its trained head kept and tuned (modules_to_save); on CPU this works for small models, the
  paper-size ones want a GPU.

Held-back labels are scored before and after, so a version reports whether it helped.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.discriminators.base import Progress, check_stop, task_labels
from engine.discriminators.data import LabelledItem
from engine.discriminators.meta import DiscriminatorMeta, read_meta, resolve_source, write_meta
from engine.errors import ConfigError, ModelError


@dataclass(frozen=True)
class TeachConfig:
    task: str  # relevance | nli
    source: str  # the current discriminator: a directory (with apc_discriminator.json) or a hub id
    out: Path  # where the new adapter goes (created; rewritten after every epoch)
    format: str | None = None  # input format; None = the source's meta (hub checkpoints: paper)
    epochs: int = 2  # passes over the human training labels
    replay_ratio: float = 0.5  # replay rows per human training row, drawn afresh each epoch
    learning_rate: float = 1e-3  # AdamW, LoRA parameters and heads
    batch_size: int = 16
    max_steps: int | None = None  # stop after this many optimizer steps in total (tests, quick tries)
    lora_r: int = 16  # rank of a fresh LoRA (an existing adapter keeps its own)
    max_length: int = 256
    seed: int = 0
    device: str = "auto"

    def recipe(self) -> dict:
        keys = ("epochs", "replay_ratio", "learning_rate", "batch_size", "max_steps", "lora_r", "max_length", "seed")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class TeachReport:
    out: Path
    n_train: int
    n_heldout: int
    n_replay: int  # replay rows seen over all epochs
    heldout_before: float | None
    heldout_after: float | None
    train_before: float | None
    train_after: float | None
    steps: int
    losses: list[float] = field(default_factory=list)
    meta: DiscriminatorMeta | None = None

    def metrics(self) -> dict:
        return {
            "n_labels": self.n_train + self.n_heldout, "n_train": self.n_train, "n_heldout": self.n_heldout,
            "n_replay": self.n_replay, "heldout_before": self.heldout_before, "heldout_after": self.heldout_after,
            "train_before": self.train_before, "train_after": self.train_after, "steps": self.steps, "losses": self.losses,
        }  # fmt: skip


def split_labels(rows: Sequence[LabelledItem], fraction: float, seed: int, min_rows: int = 5) -> tuple[list, list]:
    """(train, held back): a seeded share of the labels, none when there are fewer than `min_rows`."""
    rows = list(rows)
    if len(rows) < min_rows or fraction <= 0:
        return rows, []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(fraction * len(rows)))
    held = set(order[:n_held])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def teach_discriminator(
    config: TeachConfig,
    train: Sequence[LabelledItem],
    held: Sequence[LabelledItem],
    replay: Sequence[LabelledItem],
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    start_epoch: int = 0,
    on_epoch: Callable[[int], None] | None = None,
    meta_extra: dict | None = None,
) -> TeachReport:
    """Train, save to `config.out`, report. `start_epoch` > 0 resumes from the adapter already in
    `config.out` (saved by an earlier run after that many epochs; `on_epoch(epochs_done)` is called
    after each save)."""
    import torch

    from engine.device import resolve_device
    from engine.disc_train import _seed_everything, length_bucketed_batches, optimizer_step
    from engine.discriminators.cross_encoder import CrossEncoderDiscriminator, collate

    labels = task_labels(config.task)
    if not train:
        raise ConfigError(f"no {config.task} labels to learn from")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError("epochs and batch size must be at least 1")
    device = resolve_device(config.device)
    before = CrossEncoderDiscriminator.load(config.source, config.task, format=config.format, device=device, runtime="torch")
    fmt = before.format
    held_before = _accuracy(before, held)
    train_before = _accuracy(before, train)
    source_meta = before.meta
    del before
    _seed_everything(config.seed + start_epoch)
    model, tokenizer, base_name, model_labels = _trainable(config, source_meta, device, resume=start_epoch > 0)
    disc = CrossEncoderDiscriminator(model, tokenizer, task=config.task, format=fmt, labels=model_labels, device=device,
                                     source=config.source, meta=source_meta)  # fmt: skip
    disc.max_length = min(disc.max_length, config.max_length)
    to_model = [model_labels.index(label) for label in labels]  # task label index -> model output index
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    n_replay_epoch = min(len(replay), round(config.replay_ratio * len(train)))
    per_epoch = math.ceil((len(train) + n_replay_epoch) / config.batch_size)
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min((s + 1) / warmup, max(0.05, (total - s) / max(1, total - warmup))))
    step = start_epoch * per_epoch
    for _ in range(min(step, total)):
        sched.step()  # a resumed run continues the schedule where it stopped
    losses: list[float] = []
    n_replay = 0
    gen = torch.Generator().manual_seed(config.seed)
    for epoch in range(start_epoch, config.epochs):
        if step >= total:
            break
        sample = random.Random(config.seed * 1000 + epoch).sample(list(replay), n_replay_epoch) if n_replay_epoch else []
        rows = list(train) + sample
        enc = disc.encode([r.item for r in rows])
        targets = torch.tensor([to_model[r.label] for r in rows])
        model.train()
        epoch_loss, seen = 0.0, 0
        for idx in length_bucketed_batches(enc["input_ids"], config.batch_size, gen):
            if step >= total:
                break
            check_stop(stop)
            batch = collate(enc, idx, tokenizer.pad_token_id or 0, device)
            loss = torch.nn.functional.cross_entropy(model(**batch).logits.float(), targets[idx].to(device))
            optimizer_step(loss, params, optim, sched)
            epoch_loss += loss.item() * len(idx)
            seen += len(idx)
            step += 1
            if progress is not None:
                progress(step, total, f"{config.task} epoch {epoch + 1}/{config.epochs} loss {loss.item():.4f}")
        n_replay += len(sample)
        losses.append(epoch_loss / max(1, seen))
        _save_adapter(model, tokenizer, config.out)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    model.eval()
    held_after = _accuracy(disc, held)
    train_after = _accuracy(disc, train)
    report = TeachReport(config.out, len(train), len(held), n_replay, held_before, held_after, train_before, train_after,
                         step, losses)  # fmt: skip
    meta = DiscriminatorMeta(
        task=config.task, labels=tuple(model_labels), format=fmt, base_model=base_name, adapter=True,
        metrics={**report.metrics(), "recipe": config.recipe(), "taught_from": config.source, **(meta_extra or {})},
        temperature=source_meta.temperature if source_meta else 1.0,
    )  # fmt: skip
    _save_adapter(model, tokenizer, config.out)
    write_meta(config.out, meta)
    return replace(report, meta=meta)


def _accuracy(disc, rows: Sequence[LabelledItem]) -> float | None:
    if not rows:
        return None
    from engine.metrics import evaluate_discriminator

    return round(float(evaluate_discriminator(disc, list(rows))["accuracy"]), 4)


def _trainable(config: TeachConfig, meta: DiscriminatorMeta | None, device: str, *, resume: bool):
    """(peft model in train mode, tokenizer, base model name for the new meta, model label order)."""
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from engine.discriminators.cross_encoder import quiet_transformers

    labels = tuple(meta.labels) if meta else task_labels(config.task)
    source = resolve_source(config.source)
    if meta is not None and meta.adapter:  # continue the adapter over its own base
        base_name, start = meta.base_model, str(config.out) if resume else source
    else:  # a full checkpoint: a fresh LoRA over it (or the one saved by an interrupted run)
        base_name, start = config.source, str(config.out) if resume else None
    base_src = resolve_source(base_name)
    try:
        with quiet_transformers():  # an adapter's base has a fresh head: the adapter carries the trained one
            model = AutoModelForSequenceClassification.from_pretrained(base_src, num_labels=len(labels), use_safetensors=True)
    except OSError as exc:
        raise ModelError(f"{base_name}: cannot load the base to teach ({str(exc).splitlines()[0][:160]}); it must be on this machine") from exc
    tok_dir = source if Path(source, "tokenizer.json").is_file() or Path(source, "tokenizer_config.json").is_file() else base_src
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    with quiet_transformers():
        if start is not None:
            model = PeftModel.from_pretrained(model, start, is_trainable=True)
        else:
            heads = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n.endswith(("classifier", "pooler"))})
            lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.1,
                              modules_to_save=heads)  # fmt: skip
            try:
                model = get_peft_model(model, lora)
            except ValueError as exc:
                raise ConfigError(f"LoRA cannot target {config.source} ({str(exc).splitlines()[0][:160]})") from exc
    model.to(device)
    return model, tokenizer, base_name, labels


def _save_adapter(model, tokenizer, out: Path) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)  # peft's model-card template: not ours to ship
    tokenizer.save_pretrained(out)
