"""Option definitions and output helpers shared by every CLI command (one definition each)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from ..numbers import eta_text  # noqa: F401  (shared with the TUI's job tables)

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
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", help="Seconds an OpenAI-compatible server may take per request (default 120; env APC_TIMEOUT)."),
]


def model_or_setting(ctx: typer.Context, model: str | None, *, trainable: bool = False) -> str:
    """--model when given, else APC_MODEL / the config's `model` / tiny (settings.model), checked."""
    from ..validation import check_model_spec

    if model:
        return check_model_spec(model, trainable=trainable)
    return check_model_spec(settings(ctx).model, "model (from APC_MODEL or the config)", trainable=trainable)


def services(ctx: typer.Context):
    """The Services built once per invocation by the root callback (see factory.build_services)."""
    return ctx.find_root().obj.services()


def settings(ctx: typer.Context):
    return ctx.find_root().obj.settings


def use_timeout(ctx: typer.Context, timeout: float | None) -> None:
    """--timeout: checked, then the HTTP timeout of every model this invocation (and its detached jobs) loads."""
    import os

    from ..validation import check_timeout

    if timeout is None:
        return
    seconds = check_timeout(timeout)
    root = ctx.find_root().obj
    root.settings = root.settings.with_overrides(timeout=seconds)  # before the services are built from them
    os.environ["APC_TIMEOUT"] = repr(seconds)  # a detached worker reads its settings from the environment


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `data` as JSON or through `render`; the one output path for read commands."""
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        render(data)


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide and full-width (CJK) characters take two, combining marks none."""
    import unicodedata

    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def fit(text: str, width: int) -> str:
    """`text` cut (with …) or padded with spaces to exactly `width` terminal columns."""
    if display_width(text) > width:
        out, used = [], 0
        for ch in text:
            w = display_width(ch)
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        text = "".join(out) + "…"
    return text + " " * (width - display_width(text))


def echo_table(rows: list[dict], columns: list[tuple[str, str]], *, empty: str = "(none)") -> None:
    """A plain fixed-width table: columns = [(key, header), ...]; aligned for CJK text too."""
    if not rows:
        typer.echo(empty)
        return
    cells = [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    widths = [max(display_width(h), *(display_width(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    widths = [min(w, 60) for w in widths]

    def line(values: list[str]) -> str:
        return "  ".join(fit(v, w) for v, w in zip(values, widths, strict=True)).rstrip()

    typer.echo(line([h for _, h in columns]))
    typer.echo(line(["-" * w for w in widths]))
    for c in cells:
        typer.echo(line(c))


class Progress:
    """Progress of long CLI work on stderr: count, percent and ETA (callback shape: (done, total, text)).

    On a terminal one line is redrawn in place; when stderr is a file or pipe (logs, CI) a full line
    is written every `every_s` seconds, so a long foreground command is never silent.
    """

    def __init__(self, label: str, enabled: bool = True, *, stream=None, clock=time.monotonic, every_s: float = 10.0):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.clock, self.every_s = clock, every_s
        self.started: float | None = None
        self.start_fraction = 0.0
        self.last_line_at: float | None = None
        self.finished = False

    def __call__(self, done: int, total: int, text: str = "") -> None:
        self.update(done / total if total else 1.0, f"{done}/{total}", text)

    def eta(self, fraction: float) -> float | None:
        """Seconds left at the rate seen since the first update (None until there is progress)."""
        if self.started is None:
            return None
        elapsed, gained = self.clock() - self.started, fraction - self.start_fraction
        if gained <= 0 or elapsed <= 0:
            return None
        return (1.0 - fraction) * elapsed / gained

    def line(self, fraction: float, count: str, text: str = "") -> str:
        eta = "done" if fraction >= 1 else eta_text(self.eta(fraction))
        return f"{self.label}: {count} ({100.0 * fraction:5.1f}%) · {eta} {text[:50]}".rstrip()

    def update(self, fraction: float, count: str = "", text: str = "") -> None:
        if not self.enabled or self.finished:
            return
        now = self.clock()
        fraction = max(0.0, min(1.0, fraction))
        if self.started is None:
            self.started, self.start_fraction, self.last_line_at = now, fraction, now
        count = count or f"{100.0 * fraction:.0f}%"
        if self.tty:
            self.stream.write(f"\r{self.line(fraction, count, text):<100.100}")
            if fraction >= 1:
                self.stream.write("\n")
                self.finished = True
        elif now - self.last_line_at >= self.every_s:
            self.stream.write(self.line(fraction, count, text) + "\n")
            self.last_line_at = now
        self.stream.flush()
