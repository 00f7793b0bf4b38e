"""`apc synth statements|queries|relevance|nli|all|status|export`: teacher dataset synthesis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import CharacterOpt, JsonOpt, Progress, TeacherOpt, TimeoutOpt, echo_table, emit, services, use_timeout

app = typer.Typer(no_args_is_help=True)
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", help="Teacher calls in flight at once.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="At most this many items per stage in this run.")]
RequiredCharacter = Annotated[str, typer.Option("--character", "-c", help="Character name (see `apc characters list`).")]

HELP = {
    "statements": "Stage 1: each source passage -> persona statements (one teacher call per passage).",
    "queries": "Stage 2: each statement -> about 3 user utterances (train/eval split by hash).",
    "relevance": "Stage 3: relevance labels: each statement with its own and 5 other utterances.",
    "nli": "Stage 4: NLI: entailed/neutral/contradicted responses written, then re-labelled.",
    "all": "Stages 1-4 in order (each resumes where it stopped).",
}


def _run(stage: str):
    def command(
        ctx: typer.Context,
        character: RequiredCharacter,
        teacher: TeacherOpt = None,
        concurrency: ConcurrencyOpt = 8,
        limit: LimitOpt = None,
        timeout: TimeoutOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        use_timeout(ctx, timeout)
        progress = Progress(f"synth {stage}", enabled=not as_json)
        result = services(ctx).synthesis.run_stage(character, stage, teacher, concurrency, limit, progress)
        emit(result, as_json, render_run)
        failure = all_failed(result)
        if failure:
            typer.echo(f"error: {failure}", err=True)
            raise typer.Exit(1)

    command.__doc__ = HELP[stage]
    return command


def all_failed(result: dict) -> str | None:
    """Why the run did nothing, when every teacher call it made failed or did not parse; else None."""
    stages = result["stages"]
    attempted = sum(r["attempted"] for r in stages)
    if not attempted or any(r["ok"] for r in stages):
        return None
    failed, unparsed = sum(r["failed"] for r in stages), sum(r["unparsed"] for r in stages)
    example = next((e for r in stages for e in r["errors"]), "")
    return (f"teacher {result['teacher']}: every item failed ({failed} failed, {unparsed} unparsed){', e.g. ' + example if example else ''}; "
            f"fix the teacher (see `apc synth status -c {result['character']!r}`) and rerun")  # fmt: skip


def render_run(result: dict) -> None:
    typer.echo(f"{result['character']}: teacher {result['teacher']}")
    for r in result["stages"]:
        tokens = r["prompt_tokens"] + r["completion_tokens"]
        typer.echo(
            f"  {r['stage']:<11} {r['ok']} ok, {r['failed']} failed, {r['unparsed']} unparsed, +{r['added']} rows, "
            f"{r['already_done']} done before, {r['remaining']} left, {tokens} tokens, {r['seconds']:.1f}s"
        )
        for e in r["errors"]:
            typer.echo(f"      e.g. {e}")
        if r["total"] == 0 and r["stage"] == "statements":
            typer.echo("      no passages: import the character's source text first (`apc characters import FILE`)")
    if any(r["failed"] or r["unparsed"] for r in result["stages"]):
        typer.echo("failed items are recorded (`apc synth status`); rerun the same command to retry them")


@app.command("status")
def status(ctx: typer.Context, character: RequiredCharacter, as_json: JsonOpt = False) -> None:
    """Counts per stage, pending items, teacher calls and recent failures."""
    emit(services(ctx).synthesis.status(character), as_json, render_status)


def render_status(s: dict) -> None:
    c = s["counts"]
    agreement = f"{c['nli_agreement']:.0%}" if c["nli_agreement"] is not None else "-"
    typer.echo(f"{s['character']}: {c['passages']} passages, {c['statements']} statements ({c['teacher_statements']} by the teacher)")
    typer.echo(f"  utterances {c['queries']} ({c['queries_eval']} eval); relevance labels {c['relevance_labels']} ({c['relevance_yes']} yes)")
    typer.echo(f"  nli responses {c['nli_responses']}, re-labelled {c['nli_labelled']}, teacher agrees with itself {agreement}")
    typer.echo("  pending: " + ", ".join(f"{k} {v}" for k, v in s["pending"].items()))
    rows = [{"stage": k, **v} for k, v in s["calls"].items()]
    echo_table(rows, [("stage", "stage"), ("ok", "ok"), ("failed", "failed"), ("unparsed", "unparsed"),
                      ("prompt_tokens", "prompt tok"), ("completion_tokens", "completion tok")], empty="  (no teacher calls yet)")  # fmt: skip
    for f in s["recent_failures"]:
        typer.echo(f"  #{f['id']} {f['stage']} {f['status']}: {f['error']}")


@app.command("export")
def export(
    ctx: typer.Context,
    character: RequiredCharacter,
    task: Annotated[str, typer.Option("--task", help="relevance | nli")],
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write (the `apc disc eval` format).")],
    as_json: JsonOpt = False,
) -> None:
    """Labelled rows as JSONL: {character, statement, query, label} (+ response for nli)."""
    result = services(ctx).synthesis.export(character, task, out)
    emit(result, as_json, lambda r: typer.echo(f"wrote {r['rows']} {r['task']} rows to {r['out']}"))


for _stage in ("statements", "queries", "relevance", "nli", "all"):
    app.command(_stage, help=HELP[_stage])(_run(_stage))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="synth", help="Synthesise statements, utterances and labels with a teacher model.")
