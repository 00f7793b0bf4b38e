"""Train: the DPO set (pairs by source), building APC pairs, DPO / EU as jobs with a settings form,
a live loss / reward-margin plot, cancel, and every job in the database with its log."""

from __future__ import annotations

from collections import Counter

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from ..widgets.jobs import JobLog, JobsTable, MetricsPlot
from ..widgets.settings_form import SettingsForm
from .base import WorkbenchScreen
from .dialogs import Confirm

MAIN_SETTINGS = {
    "dpo": ("epochs", "learning_rate", "beta", "lora_r", "grad_accum", "max_steps", "weighted", "device"),
    "eu": ("epochs", "learning_rate", "lora_r", "grad_accum", "max_steps", "device"),
}
POLL_S = 1.0
"""While a job is queued or running: refresh every second."""
IDLE_POLL_S = 30.0
"""While nothing runs: one cheap look every 30 s (a job started from the CLI shows up); ~0 CPU."""
ACTIVE = ("queued", "running")


class AdaptivePoll:
    """A poll that runs every POLL_S while work is active and every IDLE_POLL_S otherwise; the
    screens call `poll_now()` on their own events (resume, a job started, a row chosen)."""

    def start_poll(self, poll) -> None:
        self._poll = poll
        self._fast = self.set_interval(POLL_S, poll, pause=True)
        self._slow = self.set_interval(IDLE_POLL_S, poll)
        self.active_work = False
        poll()

    def set_active(self, active: bool) -> None:
        """Called with each poll result: any job queued or running?"""
        if active != self.active_work:
            self.active_work = active
            (self._fast.resume if active else self._fast.pause)()


class JobsPolled(Message):
    """The latest job rows (and, for the selected job, its metrics and new log lines)."""

    def __init__(self, jobs: list[dict], names: dict, job_id: int | None, metrics: list[dict], logs: list[dict], extra: dict) -> None:
        super().__init__()
        self.jobs, self.names, self.job_id, self.metrics, self.logs, self.extra = jobs, names, job_id, metrics, logs, extra


class JobStarted(Message):
    def __init__(self, job_id: int, kind: str) -> None:
        super().__init__()
        self.job_id, self.kind = job_id, kind


class JobsScreenMixin(AdaptivePoll):
    """Polls jobs from a thread (every POLL_S while one runs, rarely when idle); the screen shows
    them in `on_jobs_polled`, and redraws only what changed."""

    job_kinds: tuple[str, ...] | None = None
    shown_signature = None

    def start_polling(self) -> None:
        self.start_poll(self.poll_jobs)

    def poll_jobs(self) -> None:
        if self.is_current and not self._polling():
            table = self.query_one(JobsTable)
            log = self.query_one(JobLog)
            job_id = table.selected_job()
            self._poll_worker(job_id, log.last_id if log.job_id == job_id else 0)

    def _polling(self) -> bool:
        return any(w.node is self and w.group == "jobs-poll" and not w.is_finished for w in self.workers)

    @work(thread=True, exclusive=True, group="jobs-poll", exit_on_error=False, description="Jobs")
    def _poll_worker(self, job_id: int | None, after_id: int) -> None:
        svc = self.services.jobs
        jobs = [j for j in svc.list(limit=50) if self.job_kinds is None or j["kind"] in self.job_kinds]
        names = {c["id"]: c["name"] for c in self.services.characters.list()}
        if job_id is None and jobs:
            job_id = jobs[0]["id"]
        metrics = svc.metrics(job_id) if job_id else []
        logs = svc.logs(job_id, after_id=after_id) if job_id else []
        self.post_message(JobsPolled(jobs, names, job_id, metrics, logs, self.poll_extra()))

    def poll_extra(self) -> dict:
        return {}

    def show_jobs(self, message: JobsPolled) -> dict | None:
        self.set_active(any(j["status"] in ACTIVE for j in message.jobs))
        table = self.query_one(JobsTable)
        table.show(message.jobs, message.names)
        job = next((j for j in message.jobs if j["id"] == message.job_id), None)
        log = self.query_one(JobLog)
        log.feed(message.job_id, message.logs if log.job_id in (None, message.job_id) else [])
        return job

    def action_cancel_job(self) -> None:
        job_id = self.query_one(JobsTable).selected_job()
        if job_id is not None:
            self._cancel_worker(job_id)

    @work(thread=True, group="jobs-cancel", exit_on_error=False, description="Cancel")
    def _cancel_worker(self, job_id: int) -> None:
        status = self.services.jobs.cancel(job_id)
        self.app.call_from_thread(self.notify, f"job {job_id}: cancel requested ({status})", title="Cancel")

    def action_resume_job(self) -> None:
        job_id = self.query_one(JobsTable).selected_job()
        if job_id is not None:
            self._resume_worker(job_id)

    @work(thread=True, group="jobs-cancel", exit_on_error=False, description="Resume")
    def _resume_worker(self, job_id: int) -> None:
        row = self.services.jobs.resume(job_id, detach=True)
        self.post_message(JobStarted(row["id"], row["kind"]))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, JobsTable):
            self.poll_jobs()


class TrainScreen(JobsScreenMixin, WorkbenchScreen):
    MODE = "train"
    LABEL = "Train"
    HOME = "#train-jobs"
    BINDINGS = [
        Binding("s", "start", "Start training"),
        Binding("b", "build_pairs", "Build APC pairs"),
        Binding("c", "cancel_job", "Cancel job"),
        Binding("R", "resume_job", "Resume job", show=False),
        Binding("k", "kind", "DPO/EU", show=False),
    ]

    def __init__(self, services):
        super().__init__(services)
        self.finished_seen: set[int] = set()

    def compose_body(self) -> ComposeResult:
        from engine.dpo_train import DpoSettings
        from engine.eu_train import EuSettings

        model = self.services.settings.model
        with Horizontal(id="train-top"):
            with VerticalScroll(id="train-form", classes="pane"):
                yield Static("", id="pairs-summary")
                yield Static("", id="train-trust", markup=False)
                with Horizontal(classes="form-row"):
                    yield Label("train", classes="form-label")
                    yield Select([("DPO (preference pairs)", "dpo"), ("EU (persona dialogues)", "eu")], value="dpo",
                                 allow_blank=False, id="train-kind", compact=True)  # fmt: skip
                with Horizontal(classes="form-row"):
                    yield Label("base model", classes="form-label")
                    yield Input(model, id="train-model", compact=True, tooltip="tiny | hf:ID_OR_PATH (an API model cannot be fine-tuned)")
                with Horizontal(classes="form-row"):
                    yield Label("adapter name", classes="form-label")
                    yield Input("", id="train-name", compact=True)
                yield SettingsForm(DpoSettings, MAIN_SETTINGS["dpo"], id="form-dpo")
                yield SettingsForm(EuSettings, MAIN_SETTINGS["eu"], id="form-eu")
                yield Button("Start training (s)", id="train-start", variant="primary", compact=True)
            yield JobsTable(id="train-jobs")
        with Horizontal(id="train-bottom"):
            yield MetricsPlot(id="train-plot")
            yield JobLog(id="train-log")

    def on_mount(self) -> None:
        self.query_one("#train-form").border_title = "new training job"
        self.query_one("#train-form").border_subtitle = "pairs: vote on F3/F4 or b"
        self.query_one("#form-eu").display = False
        self.refresh_pairs()
        self.start_polling()
        self.query_one("#train-jobs").focus()

    def on_screen_resume(self) -> None:
        self.refresh_pairs()
        self.poll_jobs()

    # -- the DPO set ----------------------------------------------------------------------
    def refresh_pairs(self) -> None:
        name = self.character
        summary = self.query_one("#pairs-summary", Static)
        if not name:
            summary.update("no character: pick one on the Characters screen (F2)")
            return
        pairs = self.services.training.list_pairs(name)
        trust = self.trust()
        line = self.query_one("#train-trust", Static)
        line.update(f"APC: {trust.line}")
        line.tooltip = trust.caveat or None
        by = Counter(p["source"] for p in pairs)
        parts = " · ".join(f"{src} {by[src]}" for src in ("human", "edited", "apc") if by[src]) or "none yet"
        summary.update(f"[b]{len(pairs)} DPO pairs[/b] ({parts})")
        kind = str(self.query_one("#train-kind", Select).value)
        name_input = self.query_one("#train-name", Input)
        if not name_input.value:
            slug = "-".join(name.lower().split())
            n = len(self.services.finetune.list_adapters(name)) + 1
            name_input.value = f"{slug}-{kind}-{n}" if slug.isascii() else f"adapter-{kind}-{n}"

    def trust(self):
        from ..trust import trust_for

        language = self.services.characters.repo.row(self.character)["language"] if self.character else "en"
        return trust_for(self.services.settings.profile, language)

    @on(Select.Changed, "#train-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        kind = str(event.value)
        self.query_one("#form-dpo").display = kind == "dpo"
        self.query_one("#form-eu").display = kind == "eu"
        name = self.query_one("#train-name", Input)
        for other in ("dpo", "eu"):
            name.value = name.value.replace(f"-{other}-", f"-{kind}-")

    def action_kind(self) -> None:
        select = self.query_one("#train-kind", Select)
        select.value = "eu" if select.value == "dpo" else "dpo"

    # -- starting jobs --------------------------------------------------------------------
    @on(Button.Pressed, "#train-start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        if not self.character:
            return
        kind = str(self.query_one("#train-kind", Select).value)
        try:
            settings = self.query_one(f"#form-{kind}", SettingsForm).values()
        except Exception as exc:
            self.app.report_failure(exc, "Training form")
            return
        model = self.query_one("#train-model", Input).value.strip()
        name = self.query_one("#train-name", Input).value.strip()
        character = self.character
        pairs = self.services.training.list_pairs(character)
        if kind == "dpo" and not pairs:
            from engine.errors import InputError

            self.app.report_failure(InputError(f"{character} has no DPO pairs yet; vote on Chat (F3) or Annotate (F4), or build APC pairs (b)"), "Start training")
            return
        apc = sum(p["source"] == "apc" for p in pairs)
        what = f"{len(pairs)} DPO pairs ({apc} ranked by APC)" if kind == "dpo" else "persona dialogues built from the statements"
        limit = f", at most {settings['max_steps']} steps" if settings.get("max_steps") else ""
        question = (f"Train {kind.upper()} adapter {name!r} for {character} on {model}: {what}, {settings.get('epochs')} epochs{limit}, "
                    f"device {settings.get('device') or self.services.settings.device}. It runs as a job (minutes on tiny, hours for a 7B on CPU).")  # fmt: skip
        trust = self.trust()
        if kind == "dpo" and apc and trust.warn_training:
            question += "\n\n" + trust.warning("training")

        def answered(yes: bool | None) -> None:
            if yes:
                self._start_worker(kind, character, model, name, settings)

        self.app.push_screen(Confirm(question + "\n\nStart?"), answered)

    @work(thread=True, group="train-start", exit_on_error=False, description="Start training")
    def _start_worker(self, kind: str, character: str, model: str, name: str, settings: dict) -> None:
        from engine.errors import InputError

        config, cid = self.services.finetune.train_config(kind, character, model, name, settings)
        if kind == "dpo" and not self.services.training.list_pairs(character):
            raise InputError(f"{character} has no DPO pairs yet; vote on Chat (F3) or Annotate (F4), or build APC pairs (b)")
        row = self.services.jobs.start(kind, config, character_id=cid, detach=True)
        self.post_message(JobStarted(row["id"], kind))

    def action_build_pairs(self) -> None:
        character = self.character
        if not character:
            return
        model = self.query_one("#train-model", Input).value.strip()
        s = self.services.settings
        cid = self.services.characters.repo.row(character)["id"]
        queries = len(self.services.training.pairs.queries(cid, "train")) or len(self.services.characters.get(character).enabled_statements)
        trust = self.trust()
        question = (f"Build APC pairs for {character}: up to 100 pairs from {queries} train queries, 2 replies each from {model} "
                    f"({2 * queries} replies to generate and score with {trust.badge}). It runs as a job; "
                    f"{self.services.jobs.estimate('pairs', model or s.model, 2 * queries)}.")  # fmt: skip
        if trust.warn_training:
            question += "\n\n" + trust.warning("building DPO pairs")

        def answered(yes: bool | None) -> None:
            if yes:
                self._pairs_worker(character, model)

        self.app.push_screen(Confirm(question + "\n\nStart?"), answered)

    @work(thread=True, group="train-start", exit_on_error=False, description="Build pairs")
    def _pairs_worker(self, character: str, model: str) -> None:
        s = self.services.settings
        config, cid = self.services.training.pairs_config(character, model, method=s.method if s.method != "eu" else "rag", k=s.k)
        row = self.services.jobs.start("pairs", config, character_id=cid, detach=True)
        self.post_message(JobStarted(row["id"], "pairs"))

    def on_job_started(self, message: JobStarted) -> None:
        self.notify(f"{message.kind} job {message.job_id} started; it keeps running if you quit (apc jobs list)", title="Job")
        if message.kind in ("dpo", "eu"):
            self.query_one("#train-name", Input).value = ""
        self.poll_jobs()
        self.set_timer(0.3, lambda: self.query_one(JobsTable).select_job(message.job_id))

    # -- polling --------------------------------------------------------------------------
    def on_jobs_polled(self, message: JobsPolled) -> None:
        signature = (repr(message.jobs), message.job_id, len(message.metrics), len(message.logs), repr(message.extra))
        if signature == self.shown_signature and not message.logs:
            return  # nothing changed: no redraw
        self.shown_signature = signature
        job = self.show_jobs(message)
        title = f"job {job['id']} {job['kind']} · {job['status']} · {job.get('progress_text') or ''}" if job else ""
        self.query_one(MetricsPlot).show(message.metrics, title)
        if job and job["status"] in ("done", "failed", "cancelled", "dead") and job["id"] not in self.finished_seen:
            self.finished_seen.add(job["id"])
            if job["kind"] in ("pairs", "dpo", "eu"):
                self.refresh_pairs()
