"""`apc labels ...`: human verdicts on the discriminators (relevance, NLI) per character."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import CharacterOpt, DetachOpt, DeviceOpt, JsonOpt, ProfileOpt, echo_table, emit, services

app = typer.Typer(no_args_is_help=True)

TaskOpt = Annotated[str, typer.Option("--task", help="relevance | nli.")]


@app.command("add")
def add(
    ctx: typer.Context,
    character: CharacterOpt,
    task: TaskOpt,
    statement: Annotated[str, typer.Option("--statement", help="Statement text, or its id (see `apc characters show`).")],
    query: Annotated[str, typer.Option("--query", help="The user's utterance.")],
    label: Annotated[str, typer.Option("--label", help="relevance: yes | no; nli: entailed | neutral | contradicted.")],
    response: Annotated[str | None, typer.Option("--response", help="The reply judged (nli only).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record one human verdict on a statement for a query (and a response, for NLI)."""
    from ..services.teach import LabelInput

    out = services(ctx).teach.add_label(character, LabelInput(task, statement, query, label, response or ""))
    emit(out, as_json, lambda r: typer.echo(f"{r['character']}: {r['task']} label {r['label']!r} stored for {r['statement']!r}"))


@app.command("import")
def import_(
    ctx: typer.Context,
    character: CharacterOpt,
    path: Annotated[Path, typer.Argument(help="JSONL rows: statement, query, [response,] label (as `apc disc eval`).")],
    as_json: JsonOpt = False,
) -> None:
    """Import labels from a JSON-lines file; any bad row (reported by line) stops the whole import."""
    out = services(ctx).teach.import_labels(character, path)
    emit(out, as_json, lambda r: typer.echo(f"{r['character']}: {r['imported']} labels imported ({r['relevance']} relevance, {r['nli']} nli)"))


@app.command("list")
def list_(
    ctx: typer.Context,
    character: CharacterOpt,
    task: Annotated[str | None, typer.Option("--task", help="Only relevance or nli.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The character's human labels, oldest first."""
    rows = services(ctx).teach.list_labels(character, task)
    columns = [("id", "id"), ("task", "task"), ("label", "label"), ("statement", "statement"), ("query", "query"),
               ("response", "response"), ("annotator", "by"), ("source", "source")]  # fmt: skip
    emit(rows, as_json, lambda r: echo_table(r, columns, empty="(no labels yet: `apc labels add` or mark verdicts in the why panel)"))


@app.command("export")
def export(
    ctx: typer.Context,
    character: CharacterOpt,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Labels as JSON lines in the `apc disc eval` row format (re-importable); --json: one JSON array."""
    rows = services(ctx).teach.export_rows(character)
    text = json.dumps(rows, ensure_ascii=False, indent=2) + "\n" if as_json else "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in rows
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"{len(rows)} labels written to {out}", err=True)


def rescore(
    ctx: typer.Context,
    character: CharacterOpt,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rescore a character's stored candidates with its active discriminators, rebuild its pairs, show the agreement change."""
    from ..services.teach_train import rescore_config

    svc = services(ctx)
    config, cid = rescore_config(svc, character, profile=profile, device=device)
    row = svc.jobs.start("rescore", config, character_id=cid, detach=detach)

    def render(r: dict) -> None:
        if r["status"] != "done":
            typer.echo(f"job {r['id']} {r['status']}" + (f": {r['error']}" if r.get("error") else "") + f" (apc jobs logs {r['id']})")
            return
        a = r["artifacts"]
        moved = a["agreement"]["apc_agreement"]
        fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
        typer.echo(f"{config['character']}: {a['turns']} turns rescored with {a['profile']}; pairs rebuilt")
        typer.echo(f"APC-human agreement {fmt(moved['before'])} -> {fmt(moved['after'])} "
                   f"(over {a['agreement']['apc_compared']['after']} labelled pairs)")  # fmt: skip

    emit(row, as_json, render)
    if not detach and row["status"] != "done":
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="labels", help="Human labels that teach a character's discriminators.")
    root.command("rescore")(rescore)
