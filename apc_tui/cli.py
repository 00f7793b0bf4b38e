"""The `apc` command. No argument opens the TUI; subcommands script every use case.

Nothing heavy is imported here: torch and friends load inside the commands that need them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .commands import characters as characters_cmd
from .commands import doctor as doctor_cmd
from .commands import statements as statements_cmd

app = typer.Typer(
    name="apc",
    help="APC Workbench: make role-playing characters faithful to their persona (APC score + DPO).",
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class Root:
    """Per-invocation state: settings now, services on first use."""

    def __init__(self, settings):
        self.settings = settings
        self._services = None

    def services(self):
        if self._services is None:
            from .factory import build_services

            self._services = build_services(self.settings)
        return self._services


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    db: Annotated[Path | None, typer.Option("--db", help="Database file (default: user data dir; env APC_DB).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Config TOML (env APC_CONFIG).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show library warnings and logs (hidden by default; env APC_VERBOSE=1).")] = False,
) -> None:
    from .config import load_settings
    from .verbosity import quiet_libraries

    quiet_libraries(verbose)
    settings = load_settings(config).with_overrides(db_path=db)
    ctx.obj = Root(settings)
    if ctx.invoked_subcommand is None:
        from .tui import run_tui

        run_tui(ctx.obj.services())


app.add_typer(characters_cmd.app, name="characters", help="Import, list, show, export and delete characters.")
app.add_typer(statements_cmd.app, name="statements", help="Add, edit, enable and disable persona statements.")
app.command("doctor", help="Report what this machine can do, with the fix for anything missing.")(doctor_cmd.doctor)


def _register_optional() -> None:
    """Command groups added by later modules; each registers itself through `register(app)`."""
    from .commands import REGISTRY

    for register in REGISTRY:
        register(app)


_register_optional()


_COMMAND = None


def command():
    """The Click tree of `apc`, built once, with the boundary checks of `validation` attached."""
    global _COMMAND
    if _COMMAND is None:
        from .validation import install

        _COMMAND = typer.main.get_command(app)
        install(_COMMAND)
    return _COMMAND


def run(args: list[str]) -> int:
    """Run `apc ARGS`; every refusal prints one line `error: <input>: <problem>; <fix>` on stderr."""
    from typer import _click as click

    from engine.errors import ApcError

    from .errors import report

    try:
        code = command().main(args=args, prog_name="apc", standalone_mode=False)
    except (ApcError, click.ClickException, typer.Abort) as exc:
        return report(exc)
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
