"""`apc score`: the APC of one or more responses, with the statements that decided it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.errors import InputError

from .common import CharacterOpt, DeviceOpt, JsonOpt, ProfileOpt, Progress, TimeoutOpt, emit, services, use_timeout

StatementsFileOpt = Annotated[
    Path | None, typer.Option("--statements", help='Statements JSON {"name", "language", "statements": [...]}.')
]
QueryOpt = Annotated[str, typer.Option("--query", "-q", help="The user's utterance.")]
ResponseOpt = Annotated[list[str], typer.Option("--response", "-r", help="A response to score (repeat for several).")]
DECIDING = 5  # statements shown per response in the table


def score(
    ctx: typer.Context,
    query: QueryOpt,
    responses: ResponseOpt,
    character: CharacterOpt = None,
    statements: StatementsFileOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score responses with APC (raw and ΔAPC) against a character's statements."""
    use_timeout(ctx, timeout)
    if (character is None) == (statements is None):
        raise InputError("give exactly one of --character NAME or --statements FILE")
    svc = services(ctx).scoring
    progress = Progress("scoring", enabled=not as_json)
    if statements is not None:
        name, texts = svc.read_statements_file(statements)
        result = svc.score(texts, query, responses, name=name, profile=profile, device=device, progress=progress)
    else:
        result = svc.score(character, query, responses, profile=profile, device=device, progress=progress)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    emit(result.to_dict(), as_json, lambda _: render(result))


def render(result) -> None:
    typer.echo(f"{result.character}: {len(result.statements)} statements, profile {result.profile}")
    typer.echo(f"query: {result.query}")
    for i, s in enumerate(result.scores, start=1):
        typer.echo("")
        typer.echo(f"[{i}] {s.response}")
        typer.echo(
            f"    APC {s.apc:.3f} of {s.n_statements}   ΔAPC {s.delta_apc:+.3f}   active {s.active:.3f}   passive {s.passive:.3f}"
        )
        typer.echo("    deciding statements (largest |Δterm| first):")
        typer.echo(f"    {'Δterm':>7}  {'P(yes)':>6}  {'P(ent)':>6}  {'P(con)':>6}  statement")
        for t in s.deciding_terms(DECIDING):
            typer.echo(f"    {t.delta_term:+7.3f}  {t.p_yes:6.3f}  {t.p_entailed:6.3f}  {t.p_contradicted:6.3f}  {t.statement}")


def register(app: typer.Typer) -> None:
    app.command("score", help="Score responses with APC (raw, ΔAPC, active, passive) and show the deciding statements.")(
        score
    )
