"""The one error format of the CLI: `error: <input>: <problem>; <fix>` on stderr, one line.

Our own refusals (ApcError) already read that way; Click's usage errors (missing option, bad
type, unknown option, extra argument) are rewritten into it here, so no Rich box and no
traceback reaches the terminal. Every line passes through `redact` first.
"""

from __future__ import annotations

import sys

import typer
from typer import _click as click  # Typer >= 0.29 vendors Click: its exceptions live here

from engine.errors import ApcError
from engine.secrets import redact


def one_line(text: str) -> str:
    return " ".join(redact(str(text)).split())


def _flag(param) -> str:
    if param is None:
        return ""
    if getattr(param, "param_type_name", "") == "argument":
        return (param.name or "argument").upper()
    opts = [o for o in param.opts if o.startswith("--")] or list(param.opts)
    return opts[0] if opts else param.name


def _help(ctx) -> str:
    return f"see `{ctx.command_path} --help`" if ctx is not None else "see `apc --help`"


def usage_message(exc: click.ClickException) -> str:
    """A Click exception as '<input>: <problem>; <fix>'."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "apc"
    raw = exc.format_message().strip().rstrip(".")
    if isinstance(exc, click.exceptions.MissingParameter):
        flag = _flag(exc.param)
        value = "" if getattr(exc.param, "param_type_name", "") == "argument" else " VALUE"
        return f"{where} {flag}: missing; pass {flag}{value} ({_help(ctx)})"
    if isinstance(exc, click.exceptions.NoSuchOption):
        hint = f"did you mean {', '.join(sorted(exc.possibilities)[:3])}?" if exc.possibilities else _help(ctx)
        return f"{where} {exc.option_name}: no such option; {hint}"
    if isinstance(exc, click.exceptions.BadOptionUsage):
        return f"{where} {exc.option_name}: {raw}; {_help(ctx)}"
    if isinstance(exc, click.exceptions.BadParameter):
        flag = _flag(exc.param)
        problem = raw.split(": ", 1)[-1] if raw.lower().startswith("invalid value") else raw
        if "valid integer" in problem:
            problem = "not a whole number"
        elif "valid number" in problem or "valid float" in problem:
            problem = "not a number"
        return f"{where} {flag}: {problem}; {_help(ctx)}"
    if isinstance(exc, click.exceptions.FileError):
        return f"{exc.ui_filename}: cannot open ({exc.message}); check the path"
    return f"{where}: {raw}; {_help(ctx)}"


def report(exc: BaseException) -> int:
    """Print `exc` as one `error:` line (or a group's help) and return the exit code."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):  # `apc dpo`: the group's help, as Click does
        sys.stderr.write(exc.ctx.get_help() + "\n")
        return 2
    if isinstance(exc, ApcError):
        message = str(exc)
        code = 2
    elif isinstance(exc, typer.Abort):
        message, code = "aborted: nothing was changed; run the command again to retry", 1
    elif isinstance(exc, click.ClickException):
        message, code = usage_message(exc), exc.exit_code or 2
    else:
        raise exc
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()
    return code
