"""`apc jobs list|show|logs|cancel|resume`, and `launch_job`, the one way long commands run."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from engine.errors import ApcError

from .common import JsonOpt, Progress, echo_table, emit, services, settings

app = typer.Typer(no_args_is_help=True)
JobIdArg = Annotated[int, typer.Argument(help="Job id (see `apc jobs list`).")]


class JobFailed(ApcError):
    """A foreground job ended failed: the CLI prints its error and exits 2."""


def launch_job(ctx: typer.Context, kind: str, config: dict, *, character_id: int | None, detach: bool, as_json: bool = False) -> dict:
    """Start a job; detached: print its id; foreground: stream its log to stderr, return the final row."""
    svc = services(ctx).jobs
    job_id = svc.create(kind, config, character_id=character_id)
    if detach:
        row = svc.launch(job_id, detach=True)
        emit({"job_id": job_id, "status": row["status"]}, as_json,
             lambda d: typer.echo(f"job {d['job_id']} started; follow it with `apc jobs logs {d['job_id']} --follow`"))
        return row
    tail = _LogTail(svc, job_id)
    tail.start()
    try:
        row = svc.launch(job_id, detach=False)
    finally:
        tail.stop()
    if row["status"] == "failed":
        raise JobFailed(f"job {row['id']} ({kind}) failed: {row['error']}; details: `apc jobs logs {row['id']}`")
    if row["status"] == "cancelled":
        typer.echo(f"job {row['id']} cancelled; continue it with `apc jobs resume {row['id']}`", err=True)
        raise typer.Exit(130)
    return row


def run_job(ctx: typer.Context, kind: str, config: dict, *, character_id: int | None, detach: bool, as_json: bool,
            render: Callable[[dict], None]) -> None:  # fmt: skip
    """`launch_job`; in the foreground, then print the job id and its artifacts (JSON or `render`)."""
    row = launch_job(ctx, kind, config, character_id=character_id, detach=detach, as_json=as_json)
    if not detach:
        emit({"job_id": row["id"], **row["artifacts"]}, as_json, render)


def k_or_setting(ctx: typer.Context, k: int | None) -> int:
    """--k when given, else the configured k (settings.k)."""
    return k if k is not None else settings(ctx).k


class _LogTail:
    """Echo a foreground job's log lines (and its stage jobs') to stderr while it runs."""

    def __init__(self, svc, job_id: int, progress: Progress | None = None):
        self.svc, self.job_id = svc, job_id
        self.progress = progress or Progress(f"job {job_id}")  # count and ETA from the job's heartbeat
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)

    def run(self) -> None:
        seen: dict[int, int] = {}
        progress = self.progress
        last = None
        while True:
            finishing = self.done.wait(0.5)
            ids = [self.job_id] + [r["id"] for r in self.svc.repo.children(self.job_id)]
            for job_id in ids:
                for line in self.svc.repo.logs(job_id, after_id=seen.get(job_id, 0)):
                    seen[job_id] = line["id"]
                    if progress.tty and last is not None:
                        sys.stderr.write("\n")  # keep the progress line apart from the log
                    sys.stderr.write(f"[job {job_id}] {line['message']}\n")
            row = self.svc.repo.get(self.job_id)
            state = (row.get("progress"), row.get("progress_text"))
            if state != last and row.get("progress") is not None and not finishing:
                last = state
                progress.update(row["progress"] or 0.0, row.get("progress_text") or "")
            if finishing:
                if progress.tty and last is not None:
                    sys.stderr.write("\n")
                return


def _job_cells(r: dict) -> dict:
    return {
        **r,
        "pct": f"{100 * (r['progress'] or 0):.0f}%",
        "char": (r["config"] or {}).get("character", ""),
        "what": (r["error"] or r["progress_text"] or "")[:60],
    }


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="queued | running | done | failed | cancelled | dead")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="synth | disc_train | pairs | dpo | eu | eval | pipeline")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest N jobs.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first; a running job whose process is gone shows as dead."""
    rows = services(ctx).jobs.list(status=status, kind=kind, limit=limit)
    emit(rows, as_json, lambda rows: echo_table(
        [_job_cells(r) for r in rows],
        [("id", "ID"), ("kind", "KIND"), ("status", "STATUS"), ("pct", "DONE"), ("char", "CHARACTER"), ("created_at", "CREATED"), ("what", "PROGRESS / ERROR")],
        empty="no jobs yet"))


@app.command("show")
def show(ctx: typer.Context, job_id: JobIdArg, as_json: JsonOpt = False) -> None:
    """A job's config, status, checkpoint, artifacts, latest metrics and last log lines."""
    data = services(ctx).jobs.show(job_id)

    def render(d: dict) -> None:
        typer.echo(f"job {d['id']}  {d['kind']}  {d['status']}  {100 * (d['progress'] or 0):.0f}%  {d['progress_text']}")
        if d["error"]:
            typer.echo(f"error: {d['error']}")
        typer.echo(f"config: {d['config']}")
        if d["checkpoint"]:
            typer.echo(f"checkpoint: {d['checkpoint']}")
        if d["artifacts"]:
            typer.echo(f"artifacts: {d['artifacts']}")
        for name, m in sorted(d["metrics_latest"].items()):
            typer.echo(f"  {name:<24} {m['value']:.4f}  (step {m['step']})")
        for c in d["children"]:
            typer.echo(f"  stage job {c['id']}: {c['kind']} {c['status']}")
        for line in d["log_tail"]:
            typer.echo(f"  {line['ts']} {line['level']:<7} {line['message']}")

    emit(data, as_json, render)


@app.command("logs")
def logs(
    ctx: typer.Context,
    job_id: JobIdArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a job's log lines (with --follow: as they are written, until the job ends)."""
    svc = services(ctx).jobs
    lines = svc.follow(job_id) if follow else svc.logs(job_id)
    if as_json and not follow:
        emit(list(lines), True, lambda _: None)
        return
    for line in lines:
        if as_json:
            emit(line, True, lambda _: None)
        else:
            typer.echo(f"{line['ts']} {line['level']:<7} {line['message']}")


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: JobIdArg) -> None:
    """Ask a job to stop; it finishes its current step, saves a checkpoint and exits."""
    status = services(ctx).jobs.cancel(job_id)
    if status == "cancelled":
        typer.echo(f"job {job_id} cancelled before it started")
    elif status == "running":
        typer.echo(f"job {job_id}: cancel requested; it stops at its next step")
    else:
        typer.echo(f"job {job_id} is already {status}")


@app.command("resume")
def resume(
    ctx: typer.Context,
    job_id: JobIdArg,
    detach: Annotated[bool, typer.Option("--detach/--wait", help="Run as a background job and return at once.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restart a dead, failed or cancelled job from its last checkpoint."""
    svc = services(ctx).jobs
    row = svc.resume(job_id, detach=detach)
    if detach:
        emit({"job_id": job_id, "status": "queued"}, as_json, lambda d: typer.echo(f"job {job_id} resumed in the background"))
        return
    if row["status"] == "failed":
        raise JobFailed(f"job {job_id} failed again: {row['error']}; details: `apc jobs logs {job_id}`")
    emit({"job_id": job_id, "status": row["status"], "artifacts": row["artifacts"]}, as_json,
         lambda d: typer.echo(f"job {job_id} {d['status']}"))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="jobs", help="Long-running work: list, show, follow logs, cancel and resume jobs.")
