"""`apc characters ...`"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exporters import FORMAT_HELP
from .common import JsonOpt, echo_table, emit, services

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List characters with statement counts and their latest ΔAPC."""
    rows = services(ctx).characters.list()

    def render(rows):
        for r in rows:
            r["last"] = "" if r["last_delta_apc"] is None else f"{r['last_delta_apc']:+.2f}"
            r["stmts"] = f"{r['enabled']}/{r['statements']}"
        echo_table(rows, [("name", "NAME"), ("language", "LANG"), ("stmts", "STATEMENTS"), ("passages", "PASSAGES"), ("last", "LAST ΔAPC")],
                   empty="no characters yet: `apc characters import FILE` or `apc characters demo`")

    emit(rows, as_json, render)


@app.command("show")
def show(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Character name.")], as_json: JsonOpt = False) -> None:
    """Show a character's statements (with ids, origin, enabled) and source."""
    data = services(ctx).characters.show(name)

    def render(d):
        typer.echo(f"{d['name']}  [{d['language']}]  {len(d['statements'])} statements")
        for s in d["statements"]:
            state = "on " if s["enabled"] else "off"
            typer.echo(f"  {s['id']:>5} {state} {s['origin']:<7} {s['text']}")

    emit(data, as_json, render)


@app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Wiki .txt, statements .json, or V2/V3 card (.json/.png).")],
    name: Annotated[str | None, typer.Option("--name", help="Character name (default: from the file).")] = None,
    language: Annotated[str | None, typer.Option("--language", help="Language code, e.g. en, zh (default: detected).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import characters; re-importing the same file updates it instead of duplicating."""
    results = [r.to_dict() for r in services(ctx).characters.import_files(paths, name=name, language=language)]

    def render(rows):
        for r in rows:
            verb = "imported" if r["created"] else "updated"
            drafted = f" ({r['drafted']} drafted from the text: review them with `apc characters show`)" if r["drafted"] else ""
            typer.echo(f"{verb} {r['name']!r} from {Path(r['path']).name} [{r['kind']}]: {r['statements']} statements{drafted}")
            if not r["created"]:
                typer.echo(f"  statements: +{r['added']} added / −{r['disabled']} disabled (kept, off) / ={r['kept']} kept")

    emit(results, as_json, render)


@app.command("export")
def export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Character name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "statements",
) -> None:
    """Export to statements JSON or a Character Card: V2/V3 JSON, or a PNG with both (on the card's own art)."""
    path = services(ctx).characters.export(name, fmt, out)
    typer.echo(f"wrote {path}")


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Character name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    purge: Annotated[bool, typer.Option("--purge", help="Drop an already deleted character for good (no restore).")] = False,
) -> None:
    """Delete a character (restorable: `apc characters restore NAME`); shows what goes and asks first."""
    svc = services(ctx).characters
    if purge:
        if not yes and not typer.confirm(f"Drop the deleted character {name!r} for good? This cannot be undone"):
            raise typer.Exit(1)
        svc.purge(name)
        typer.echo(f"purged {name!r}")
        return
    from ..services.characters import deletion_summary

    typer.echo(f"{name!r} has {deletion_summary(svc.deletion_counts(name))}.", err=True)
    if not yes and not typer.confirm(f"Delete {name!r}? (restorable with `apc characters restore`)"):
        raise typer.Exit(1)
    svc.delete(name)
    typer.echo(f"deleted {name!r}; bring it back with `apc characters restore {name!r}`")


@app.command("restore")
def restore(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Deleted character to bring back (omit to list them).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring back a deleted character with everything it had; without NAME, list deleted characters."""
    svc = services(ctx).characters
    if name is None:
        emit(svc.deleted(), as_json, lambda rows: echo_table(
            rows, [("name", "NAME"), ("language", "LANG"), ("statements", "STATEMENTS"), ("deleted_at", "DELETED")],
            empty="no deleted characters"))  # fmt: skip
        return
    svc.restore(name)
    emit({"restored": name}, as_json, lambda d: typer.echo(f"restored {name!r}"))


@app.command("demo")
def demo(
    ctx: typer.Context,
    slugs: Annotated[list[str] | None, typer.Argument(help="Demo slugs to import (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import the bundled demo characters (all, or the named ones)."""
    svc = services(ctx).characters
    catalogue = {d["slug"]: d for d in svc.demo_catalogue()}
    chosen = slugs or list(catalogue)
    missing = [s for s in chosen if s not in catalogue]
    if missing:
        from engine.errors import InputError

        raise InputError(f"no demo character {missing[0]!r}; available: {', '.join(catalogue)}")
    results = [r.to_dict() for r in svc.import_demo([Path(catalogue[s]["path"]) for s in chosen])]
    emit(results, as_json, lambda rows: [typer.echo(f"{r['name']}: {r['statements']} statements") for r in rows])
