"""Option definitions and output helpers shared by every CLI command (one definition each)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
CharacterOpt = Annotated[str, typer.Option("--character", "-c", help="Character name (see `apc characters list`).")]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", help="Discriminators: embedded | paper | multilingual | judge:SPEC | rel=PATH,nli=PATH."),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model spec: tiny | hf:ID_OR_PATH[+lora:PATH] | openai:MODEL.")]
TeacherOpt = Annotated[str | None, typer.Option("--teacher", help="Teacher model spec, e.g. openai:gpt-4o.")]
MethodOpt = Annotated[str | None, typer.Option("--method", help="Prompting method: none | lcm | rag | eu.")]
ScoringWorkersOpt = Annotated[int | None, typer.Option(
    "--scoring-workers", help="Discriminator replicas scoring in parallel, one process each (default: every visible "
                              "CUDA GPU, else 1; with --device cpu, N CPU workers).")]  # fmt: skip
ConcurrencyOpt = Annotated[int, typer.Option(
    "--concurrency", help="Generation requests in flight to an openai: model server (vLLM...); local models use 1.")]  # fmt: skip
KOpt = Annotated[int | None, typer.Option("--k", help="Statements retrieved into the prompt for rag.")]
DetachOpt = Annotated[bool, typer.Option("--detach/--wait", help="Run as a background job and return at once.")]


def services(ctx: typer.Context):
    """The Services built once per invocation by the root callback (see factory.build_services)."""
    return ctx.find_root().obj.services()


def settings(ctx: typer.Context):
    return ctx.find_root().obj.settings


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `data` as JSON or through `render`; the one output path for read commands."""
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        render(data)


def echo_table(rows: list[dict], columns: list[tuple[str, str]], *, empty: str = "(none)") -> None:
    """A plain fixed-width table: columns = [(key, header), ...]."""
    if not rows:
        typer.echo(empty)
        return
    cells = [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    widths = [min(w, 60) for w in widths]
    fmt = "  ".join(f"{{:<{w}.{w}}}" for w in widths)
    typer.echo(fmt.format(*[h for _, h in columns]))
    typer.echo(fmt.format(*["-" * w for w in widths]))
    for c in cells:
        typer.echo(fmt.format(*c))


class Progress:
    """A one-line progress printer for long CLI work (callback shape: (done, total, text))."""

    def __init__(self, label: str, enabled: bool = True):
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, done: int, total: int, text: str = "") -> None:
        if not self.enabled:
            return
        pct = 100.0 * done / total if total else 100.0
        sys.stderr.write(f"\r{self.label}: {done}/{total} ({pct:5.1f}%) {text[:60]:<60}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
