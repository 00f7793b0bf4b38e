"""`apc statements ...`"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import CharacterOpt, services

app = typer.Typer(no_args_is_help=True)
IdArg = Annotated[int, typer.Argument(help="Statement id (see `apc characters show NAME`).")]


@app.command("add")
def add(ctx: typer.Context, character: CharacterOpt, text: Annotated[str, typer.Argument(help="The statement, naming the character.")]) -> None:
    """Add a statement to a character."""
    sid = services(ctx).characters.add_statement(character, text)
    typer.echo(f"added statement {sid}")


@app.command("edit")
def edit(ctx: typer.Context, statement_id: IdArg, text: Annotated[str, typer.Argument(help="New text.")]) -> None:
    """Replace a statement's text."""
    services(ctx).characters.edit_statement(statement_id, text)
    typer.echo(f"edited statement {statement_id}")


@app.command("disable")
def disable(ctx: typer.Context, statement_id: IdArg) -> None:
    """Disable a statement (kept, but not used for scoring or prompts)."""
    services(ctx).characters.set_enabled(statement_id, False)
    typer.echo(f"disabled statement {statement_id}")


@app.command("enable")
def enable(ctx: typer.Context, statement_id: IdArg) -> None:
    """Enable a disabled statement."""
    services(ctx).characters.set_enabled(statement_id, True)
    typer.echo(f"enabled statement {statement_id}")
