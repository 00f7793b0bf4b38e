"""Long work as jobs: recorded in the DB, run in a detached process that survives the TUI and SSH.

    start_job(services, kind, config, detach=True)   -> row queued, worker spawned, id returned
    start_job(services, kind, config, detach=False)  -> the same code path in this process
    python -m apc_tui.jobs run ID                    -> the worker entry point

The worker heartbeats from a thread; that thread also reads `cancel_requested` and sets the
`threading.Event` the engine work polls, so a cancel stops training between steps, cleanly.
Each kind's handler lives with its service and is imported only when a job of that kind runs.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from engine.errors import ApcError, Cancelled, InputError

from .paths import private_dir, private_file
from .storage.jobs import JobRepo

HEARTBEAT_S = 1.0

# kind -> "module:function"; the function is handler(services, ctx) -> artifacts dict.
HANDLERS: dict[str, str] = {
    "synth": "apc_tui.services.pipeline:run_synth_job",
    "disc_train": "apc_tui.services.pipeline:run_disc_train_job",
    "pairs": "apc_tui.services.training:run_pairs_job",
    "dpo": "apc_tui.services.finetune:run_dpo_job",
    "eu": "apc_tui.services.finetune:run_eu_job",
    "eval": "apc_tui.services.evaluation:run_eval_job",
    "pipeline": "apc_tui.services.pipeline:run_pipeline_job",
    "disc_teach": "apc_tui.services.teach_train:run_teach_job",
    "rescore": "apc_tui.services.teach_train:run_rescore_job",
}


def handler_for(kind: str) -> Callable:
    if kind not in HANDLERS:
        raise InputError(f"unknown job kind {kind!r}; known: {', '.join(HANDLERS)}")
    module, _, name = HANDLERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def jobs_dir(services) -> Path:
    """Job logs and work directories live beside the database, in a folder of its own (see paths)."""
    from .paths import jobs_dir as of_settings

    return of_settings(services.settings)


class JobContext:
    """What a handler gets: its config and checkpoint, and the ways to report back."""

    def __init__(self, services, repo: JobRepo, row: dict, stop: threading.Event):
        self.services = services
        self.repo = repo
        self.job_id: int = row["id"]
        self.kind: str = row["kind"]
        self.character_id: int | None = row["character_id"]
        self.config: dict = json.loads(row["config_json"] or "{}")
        self.checkpoint: dict = json.loads(row["checkpoint_json"]) if row["checkpoint_json"] else {}
        self.stop = stop
        self.work_dir = jobs_dir(services) / str(self.job_id)
        self._progress: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def progress(self, done: int, total: int, text: str = "") -> None:
        """Engine-shaped callback; kept in memory and written by the heartbeat (no DB write per step)."""
        with self._lock:
            self._progress = (done / total if total else 0.0, text or f"{done}/{total}")

    def take_progress(self) -> tuple[float, str] | None:
        with self._lock:
            value, self._progress = self._progress, None
            return value

    def log(self, message: str, level: str = "info") -> None:
        self.repo.log(self.job_id, message, level)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self.repo.metrics_add(self.job_id, step, values)

    def save_checkpoint(self, checkpoint: dict) -> None:
        self.checkpoint = dict(checkpoint)
        self.repo.save_checkpoint(self.job_id, self.checkpoint)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Cancelled(f"job {self.job_id} cancelled")


class _Heartbeat(threading.Thread):
    """Writes liveness + progress every HEARTBEAT_S; sets `stop` when a cancel is requested."""

    def __init__(self, ctx: JobContext, parent_stop: threading.Event | None):
        super().__init__(name=f"job-{ctx.job_id}-heartbeat", daemon=True)
        self.ctx, self.parent_stop = ctx, parent_stop
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(HEARTBEAT_S):
            self.beat()

    def beat(self) -> None:
        prog = self.ctx.take_progress()
        try:
            cancel = self.ctx.repo.heartbeat(self.ctx.job_id, *(prog if prog else (None, None)))
        except sqlite3.Error as exc:  # a long lock by another writer: say so, keep beating
            sys.stderr.write(f"job {self.ctx.job_id}: heartbeat not written ({exc}); retrying\n")
            return
        if cancel or (self.parent_stop is not None and self.parent_stop.is_set()):
            self.ctx.stop.set()


def run_job(services, job_id: int, *, parent_stop: threading.Event | None = None, stop: threading.Event | None = None) -> dict:
    """Run a queued job in this process to its end; returns the final row. Never raises for job errors."""
    repo = JobRepo(services.store)
    row = repo.claim(job_id, os.getpid())
    stop = stop or threading.Event()
    ctx = JobContext(services, repo, row, stop)
    private_dir(ctx.work_dir)
    beat = _Heartbeat(ctx, parent_stop)
    beat.start()
    ctx.log(f"started {row['kind']} job in process {os.getpid()}" + (" (resuming from checkpoint)" if ctx.checkpoint else ""))
    ctx.log(settings_line(services.settings))
    try:
        artifacts = handler_for(row["kind"])(services, ctx)
    except (Cancelled, KeyboardInterrupt):
        ctx.log("cancelled; stopped cleanly", "warning")
        _finish(repo, beat, job_id, "cancelled")
    except ApcError as exc:
        ctx.log(str(exc), "error")
        _finish(repo, beat, job_id, "failed", error=str(exc))
    except Exception as exc:  # a bug or a library failure: record it in full, never lose it
        ctx.log(traceback.format_exc(), "error")
        _finish(repo, beat, job_id, "failed", error=f"{type(exc).__name__}: {exc}")
    else:
        ctx.log("done")
        _finish(repo, beat, job_id, "done", artifacts=artifacts or {})
    return repo.get(job_id)


def _finish(repo: JobRepo, beat: _Heartbeat, job_id: int, status: str, **kw) -> None:
    beat.done.set()
    beat.join()
    prog = beat.ctx.take_progress()
    if prog:  # the last progress text is the job's summary line in lists
        repo.heartbeat(job_id, *prog)
    repo.finish(job_id, status, **kw)


def spawn(services, job_id: int) -> subprocess.Popen:
    """Start the detached worker: its own session, so closing the TUI or the SSH link spares it."""
    log_path = private_file(jobs_dir(services) / f"{job_id}.log")
    from .config import settings_env

    env = {**os.environ, **settings_env(services.settings)}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apc_tui.jobs", "run", str(job_id)],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            close_fds=True,
        )
    # reap it when it ends, so a long-lived launcher (the TUI) collects no zombies
    threading.Thread(target=proc.wait, name=f"job-{job_id}-reaper", daemon=True).start()
    return proc


def start_job(services, kind: str, config: dict, *, character_id: int | None = None, detach: bool = False,
              parent_job_id: int | None = None) -> dict:
    """Record a job and run it: detached (returns the queued row) or here (returns the final row)."""
    handler_for(kind)  # refuse an unknown kind before writing anything
    repo = JobRepo(services.store)
    job_id = repo.create(kind, config, character_id=character_id, parent_job_id=parent_job_id)
    return launch(services, job_id, detach=detach)


def launch(services, job_id: int, *, detach: bool) -> dict:
    if detach:
        proc = spawn(services, job_id)
        row = JobRepo(services.store).get(job_id)
        return {**row, "spawned_pid": proc.pid}
    return run_foreground(services, job_id)


def resume_job(services, job_id: int, *, detach: bool = False) -> dict:
    JobRepo(services.store).reset_for_resume(job_id)
    return launch(services, job_id, detach=detach)


STOP_GRACE_S = 0.5  # after Ctrl-C, how long a foreground job may take to stop cleanly before it is interrupted


def run_foreground(services, job_id: int) -> dict:
    """Run here; Ctrl-C asks the job to stop cleanly, and interrupts it if it has not within STOP_GRACE_S.

    The interrupt is a KeyboardInterrupt raised in this (the main) thread by a real SIGINT, so even
    a call blocked on a server that never answers returns; the job is recorded as cancelled.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return run_job(services, job_id, stop=stop)
    previous = signal.getsignal(signal.SIGINT)
    main_ident = threading.main_thread().ident

    def interrupt_if_still_running() -> None:
        if finished.wait(STOP_GRACE_S) or main_ident is None:
            return
        if hasattr(signal, "pthread_kill"):  # a real signal also wakes a blocking socket read
            signal.pthread_kill(main_ident, signal.SIGINT)  # now handled by `previous`: KeyboardInterrupt
        else:  # Windows: raised at the main thread's next bytecode
            import _thread

            _thread.interrupt_main()

    def on_sigint(signum, frame):
        sys.stderr.write("\nstopping the job (Ctrl-C again to interrupt at once)...\n")
        stop.set()
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)
        threading.Thread(target=interrupt_if_still_running, name=f"job-{job_id}-stop", daemon=True).start()

    finished = threading.Event()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        return run_job(services, job_id, stop=stop)
    finally:
        finished.set()
        signal.signal(signal.SIGINT, previous)


def settings_line(settings) -> str:
    """The settings a job runs with, in its log (no secrets: keys never live in Settings)."""
    from .paths import adapters_dir

    return (f"settings: config {settings.config_file or '(none)'}, db {settings.db_path}, adapters {adapters_dir(settings)}, "
            f"profile {settings.profile}, model {settings.model}, device {settings.device}")  # fmt: skip


class RedactingStream:
    """A text stream that redacts keys before they reach the job log file (worker stdout/stderr)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        from engine.secrets import redact

        self.stream.write(redact(text))
        return len(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "run" or not argv[1].isdigit():
        sys.stderr.write("usage: python -m apc_tui.jobs run JOB_ID\n")
        return 2
    from .config import load_settings
    from .factory import build_services
    from .verbosity import quiet_libraries

    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    quiet_libraries()  # APC_VERBOSE=1 (set by `apc --verbose`) lets library warnings through

    services = build_services(load_settings())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())  # `kill PID` stops cleanly too
    try:
        row = run_job(services, int(argv[1]), stop=stop)
    except ApcError as exc:  # the job could not even be claimed
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(f"job {row['id']} {row['status']}\n")
    return 0 if row["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
