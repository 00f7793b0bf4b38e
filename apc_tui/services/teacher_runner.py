"""Runs units of teacher work concurrently (bounded), records every call, reports progress.

Each item's `save` parses the reply and stores its results with an 'ok' call record in one
transaction; a failed call (API error) or an unparsable reply is recorded with its raw text and
counted, never dropped. Each worker thread gets its own SQLite connection (the Store is per-thread).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine.backends import complete
from engine.concurrency import imap_unordered
from engine.errors import ApcError, Cancelled, ModelError
from engine.secrets import redact
from engine.synthesis import ReplyError
from engine.types import GenerationParams, Turn

from ..storage.teacher import CallRecord, TeacherRepo

MAX_CONSECUTIVE_FAILURES = 8  # a teacher that keeps failing stops the stage instead of burning every item


@dataclass(frozen=True)
class WorkItem:
    key: str
    messages: list[Turn]
    # (reply text, call record with status 'ok') -> number of rows added; raises ReplyError
    save: Callable[[str, CallRecord], int]
    label: str = ""
    schema: dict | None = None  # JSON schema of the reply: asked as structured output where the server supports it


@dataclass
class StageReport:
    stage: str
    total: int = 0  # items this stage has in all
    already_done: int = 0  # done by earlier runs (skipped)
    attempted: int = 0
    ok: int = 0
    failed: int = 0
    unparsed: int = 0
    added: int = 0  # rows stored (statements, utterances, labels)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    stopped: bool = False
    errors: list[str] = field(default_factory=list)  # a few distinct messages, for the summary

    @property
    def remaining(self) -> int:
        return self.total - self.already_done - self.ok

    def to_dict(self) -> dict:
        return {**self.__dict__, "remaining": self.remaining}


def _eta(started: float, done: int, todo: int) -> str:
    if not done:
        return "ETA ?"
    left = (time.monotonic() - started) / done * (todo - done)
    return f"ETA {int(left) // 60}:{int(left) % 60:02d}"


def run_items(
    repo: TeacherRepo,
    character_id: int,
    stage: str,
    teacher,
    items: Sequence[WorkItem],
    *,
    params: GenerationParams,
    already_done: int = 0,
    total: int | None = None,
    concurrency: int = 8,
    progress: Callable[[int, int, str], None] | None = None,
    stop: threading.Event | None = None,
) -> StageReport:
    # total: every item of the stage, when `items` is only this run's share (--limit)
    report = StageReport(stage, total=total if total is not None else len(items) + already_done, already_done=already_done)
    lock = threading.Lock()
    halt = threading.Event()  # set by `stop` or by too many failures in a row
    abandon = threading.Event()  # set by `stop` or Ctrl-C: calls still in flight record and save nothing
    streak = [0]
    fatal: list[Exception] = []  # the error that halted the stage
    started = time.monotonic()

    def record_problem(item: WorkItem, status: str, error: str, raw: str | None, comp=None) -> None:
        error = redact(error)  # a server may echo the key back; the summary and the stored row both show this
        call = CallRecord(stage, item.key, teacher.spec, status, raw, error[:2000],
                          getattr(comp, "prompt_tokens", 0), getattr(comp, "completion_tokens", 0))  # fmt: skip
        repo.record(character_id, call)
        with lock:
            setattr(report, status, getattr(report, status) + 1)
            if len(report.errors) < 5 and error not in report.errors:
                report.errors.append(error[:300])

    def work(item: WorkItem) -> None:
        if halt.is_set() or (stop is not None and stop.is_set()):
            return
        with lock:
            report.attempted += 1
        try:
            comp = complete(teacher, item.messages, 1, params, schema=item.schema)
        except ApcError as exc:
            if abandon.is_set():  # stopped (Ctrl-C, cancel) while this call was in flight: nothing to record
                return
            record_problem(item, "failed", str(exc), None)
            with lock:
                streak[0] += 1
                if streak[0] >= MAX_CONSECUTIVE_FAILURES or getattr(exc, "fatal", False):
                    fatal.append(exc)
                    halt.set()
            return
        with lock:
            streak[0] = 0
            report.prompt_tokens += comp.prompt_tokens
            report.completion_tokens += comp.completion_tokens
        if abandon.is_set():  # stopped (Ctrl-C, cancel) while the reply was on its way: dropped, retried next run
            return
        reply = comp.texts[0] if comp.texts else ""
        call = CallRecord(stage, item.key, teacher.spec, "ok", reply, None, comp.prompt_tokens, comp.completion_tokens)
        try:
            added = item.save(reply, call)
        except ReplyError as exc:
            record_problem(item, "unparsed", str(exc), reply, comp)
            return
        with lock:
            report.ok += 1
            report.added += added

    todo = len(items)
    if progress:
        progress(0, todo, f"{stage}: {todo} to do, {already_done} done before")
    # daemon workers: a stop (or Ctrl-C) returns at once, abandoning calls in flight (each item is one transaction)
    results = imap_unordered(_own_connection(repo, work), items, concurrency, stop=stop, name=f"teacher-{stage}")
    try:
        for finished, _ in enumerate(results, 1):  # a bug (not an ApcError) in `work` is re-raised here
            if progress:
                tokens = report.prompt_tokens + report.completion_tokens
                progress(finished, todo, f"{stage}: ok {report.ok}, failed {report.failed}, unparsed {report.unparsed}, "
                         f"{tokens} tokens, {_eta(started, finished, todo)}")  # fmt: skip
    except BaseException:  # KeyboardInterrupt or a bug: the calls still in flight must not save
        abandon.set()
        halt.set()
        raise
    finally:
        results.close()
    if stop is not None and stop.is_set():
        abandon.set()
        halt.set()
    report.seconds = round(time.monotonic() - started, 3)
    report.stopped = halt.is_set()
    if stop is not None and stop.is_set():
        exc: ApcError = Cancelled(f"synthesis stage {stage} stopped after {report.ok} new items ({report.remaining} left); rerun to continue")
    elif halt.is_set():
        last = str(fatal[0]) if fatal else "?"
        why = "stopped the stage" if getattr(fatal[0] if fatal else None, "fatal", False) else f"failed {MAX_CONSECUTIVE_FAILURES} times in a row"
        exc = ModelError(f"teacher {why} in stage {stage}: {last} ({report.ok} items stored; fix it and rerun to continue)")
    else:
        return report
    exc.report = report  # type: ignore[attr-defined]  (callers may show what was done)
    raise exc


def _own_connection(repo: TeacherRepo, fn):
    """Run `fn` on a pool thread, then close that thread's SQLite connection (each thread has its own)."""

    def run(item):
        try:
            return fn(item)
        finally:
            if threading.current_thread() is not threading.main_thread():
                repo.store.close()

    return run
