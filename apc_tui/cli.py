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
        _report_interrupts(_COMMAND)
    return _COMMAND


def _report_interrupts(command) -> None:
    """Typer turns a Ctrl-C inside a command into a silent exit 130; re-raise it as Abort (chained to
    the KeyboardInterrupt) so `run` prints the one `interrupted` line."""
    import functools

    def wrap(callback):
        @functools.wraps(callback)
        def run_callback(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except KeyboardInterrupt as exc:
                raise typer.Abort() from exc

        return run_callback

    if command.callback is not None:
        command.callback = wrap(command.callback)
    for sub in (getattr(command, "commands", None) or {}).values():
        _report_interrupts(sub)


def run(args: list[str]) -> int:
    """Run `apc ARGS`; every refusal prints one line `error: <input>: <problem>; <fix>` on stderr."""
    from typer import _click as click

    from engine.errors import ApcError

    from .errors import report

    try:
        code = command().main(args=args, prog_name="apc", standalone_mode=False)
    except KeyboardInterrupt:
        interrupted()
    except (ApcError, click.ClickException, typer.Abort) as exc:
        if _from_interrupt(exc):  # Click turns Ctrl-C into Abort
            interrupted()
        return report(exc)
    except SystemExit as exc:
        if _from_interrupt(exc):
            interrupted()
        if exc.code == 130:  # a foreground job stopped by Ctrl-C (it said so): leave at once
            _exit_now(130)
        raise
    if code == 130:
        _exit_now(130)
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


def _from_interrupt(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def interrupted() -> None:
    """Ctrl-C: one line, exit 130 at once. Work in flight on other threads is abandoned, not awaited.

    Every write is one SQLite transaction (and files are written to a temporary name, then
    renamed), so what was not finished is simply not there; rerunning continues.
    """
    if sys.stderr.isatty():
        sys.stderr.write("\n")  # past a progress line
    sys.stderr.write("error: interrupted (Ctrl-C); nothing half-written is kept, rerun the command to continue\n")
    _exit_now(130)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's shutdown: no joining of worker threads (a library's download or
    executor threads would hold the exit until they finish) and no slow teardown of torch & co.
    Everything stored is committed already; only the standard streams need flushing."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
