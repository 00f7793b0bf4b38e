"""Evaluate: run an evaluation as a job (methods none/lcm/rag/eu, base vs a DPO adapter), then the
ΔAPC table and bar chart per method, and how often APC agrees with the human labels."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, DataTable, Input, Label, ProgressBar, Select, Static
from textual_plotext import PlotextPlot

from ..numbers import ci_text, fixed, signed
from .base import WorkbenchScreen
from .dialogs import Confirm
from .train import ACTIVE, AdaptivePoll, JobStarted

METHODS = ("none", "lcm", "rag", "eu")
MIN_Y_SPAN = 0.5
"""The chart's y-axis spans at least this much ΔAPC: a −0.0007..0 axis would magnify noise."""


class EvalPolled(Message):
    def __init__(self, runs: list[dict], jobs: dict[int, dict], report: dict | None, agreement: dict | None) -> None:
        super().__init__()
        self.runs, self.jobs, self.report, self.agreement = runs, jobs, report, agreement


def agreement_text(a: dict | None) -> str:
    if not a or not a.get("preferences"):
        return "human–APC agreement: no human labels yet (vote on Chat or Annotate)"
    parts = [f"{a['preferences']} labels on {a['items']} pairs by {', '.join(a['annotators']) or '?'}"]
    if a.get("apc_agreement") is not None:
        parts.append(f"APC agrees on {a['apc_agreement']:.0%} of {a['apc_compared']}")
        if a.get("apc_cohen_kappa") is not None:
            parts.append(f"κ {a['apc_cohen_kappa']:.2f}")
    for key, label in (("cohen_kappa", "inter-annotator κ"), ("fleiss_kappa", "Fleiss κ")):
        if a.get(key) is not None:
            parts.append(f"{label} {a[key]:.2f} ({a.get('kappa_items', 0)} items)")
    return "human–APC agreement: " + " · ".join(parts)


def y_limits(values: list[float], min_span: float = MIN_Y_SPAN) -> tuple[float, float]:
    """An axis that holds 0 and every value, at least `min_span` tall, centred on the data."""
    lo, hi = min([0.0, *values]), max([0.0, *values])
    pad = max(0.0, min_span - (hi - lo)) / 2
    lo, hi = lo - pad, hi + pad
    margin = 0.1 * (hi - lo)
    return lo - (margin if lo < 0 else 0.0), hi + (margin if hi > 0 else 0.0)


class EvaluateScreen(AdaptivePoll, WorkbenchScreen):
    MODE = "evaluate"
    LABEL = "Evaluate"
    HOME = "#eval-runs"
    BINDINGS = [
        Binding("s", "start", "Run evaluation"),
        Binding("c", "cancel", "Cancel run"),
        Binding("g", "toggle_chart", "Table/chart", show=False),
    ]

    def __init__(self, services):
        super().__init__(services)
        self.adapters_for: str | None = None
        self.job_id: int | None = None  # the evaluation job started here (its row and progress are shown)
        self.shown_signature = None

    def compose_body(self) -> ComposeResult:
        s = self.services.settings
        with Horizontal(id="eval-top"):
            with VerticalScroll(id="eval-form", classes="pane"):
                with Horizontal(classes="form-row"):
                    yield Label("model", classes="form-label")
                    yield Input(s.model, id="eval-model", compact=True)
                with Horizontal(classes="form-row", id="eval-methods"):
                    for m in METHODS:
                        yield Checkbox(m, m in ("none", "rag"), id=f"eval-m-{m}", compact=True)
                with Horizontal(classes="form-row"):
                    yield Label("DPO adapter", classes="form-label")
                    yield Select([], prompt="base only", id="eval-adapter", compact=True)
                with Horizontal(classes="form-row"):
                    yield Label("queries", classes="form-label")
                    yield Input("", id="eval-queries", placeholder="all eval queries", type="integer", compact=True)
                with Horizontal(classes="form-row"):
                    yield Label("k", classes="form-label")
                    yield Input(str(s.k), id="eval-k", type="integer", compact=True)
                with Horizontal(classes="form-row"):
                    yield Label("max tokens", classes="form-label")
                    yield Input("160", id="eval-tokens", type="integer", compact=True, tooltip="upper bound on each reply's length")
                yield Button("Run evaluation (s)", id="eval-start", variant="primary", compact=True)
                yield Static("", id="eval-job")
                yield ProgressBar(total=1.0, id="eval-progress", show_eta=False)
            yield DataTable(id="eval-runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="eval-agreement")
        yield Static("", id="eval-trust", markup=False)
        with Horizontal(id="eval-bottom"):
            yield DataTable(id="eval-results", cursor_type="row")
            yield PlotextPlot(id="eval-plot")

    def on_mount(self) -> None:
        self.query_one("#eval-form").border_title = "new evaluation (a job)"
        runs = self.query_one("#eval-runs", DataTable)
        runs.border_title = "runs"
        for label in ("run", "status", "model", "adapter"):  # status before the long names (80 columns)
            runs.add_column(label, key=label)
        results = self.query_one("#eval-results", DataTable)
        results.border_title = "ΔAPC per method (95% CI)"
        # fixed widths: the table looks the same however its rows arrive (and fits 80 columns)
        for label, width in (("method", 6), ("variant", 7), ("n", 4), ("ΔAPC", 7), ("CI", 17), ("active", 6), ("passive", 7)):
            results.add_column(label, key=label, width=width)
        self.query_one("#eval-plot", PlotextPlot).border_title = "ΔAPC: base vs adapter"
        self.load_adapters()
        self.start_poll(self.poll)
        runs.focus()

    def on_screen_resume(self) -> None:
        self.load_adapters()
        self.poll()

    def load_adapters(self) -> None:
        name = self.character
        if name == self.adapters_for:
            return
        self.adapters_for = name
        adapters = self.services.finetune.list_adapters(name) if name else []
        options = [(f"{a['name']} ({a['kind']})", a["name"]) for a in adapters if a["kind"] == "dpo"]
        self.query_one("#eval-adapter", Select).set_options(options)

    # -- polling --------------------------------------------------------------------------
    def poll(self) -> None:
        if not self.is_current or any(w.node is self and w.group == "eval-poll" and not w.is_finished for w in self.workers):
            return
        runs = self.query_one("#eval-runs", DataTable)
        selected = runs.coordinate_to_cell_key(runs.cursor_coordinate).row_key.value if runs.row_count else None
        self._poll_worker(self.character, int(selected) if selected else None)

    @work(thread=True, exclusive=True, group="eval-poll", exit_on_error=False, description="Evaluation runs")
    def _poll_worker(self, character: str | None, run_id: int | None) -> None:
        ev = self.services.evaluation
        runs = ev.runs(character) if character else []
        cid = self.services.characters.repo.row(character)["id"] if character else None
        jobs = {j["id"]: j for j in self.services.jobs.list(kind="eval", limit=50) if j.get("character_id") == cid}
        if run_id is None and runs:
            run_id = runs[0]["id"]
        report = ev.report(run_id) if run_id else None
        agreement = ev.agreement(character) if character else None
        self.post_message(EvalPolled(runs, jobs, report, agreement))

    def on_eval_polled(self, message: EvalPolled) -> None:
        self.set_active(any(j["status"] in ACTIVE for j in message.jobs.values()))
        signature = (repr(message.runs), repr(message.jobs), repr(message.report), repr(message.agreement), self.job_id)
        if signature == self.shown_signature:
            return  # nothing changed: no redraw
        self.shown_signature = signature
        table = self.query_one("#eval-runs", DataTable)
        keep = table.cursor_row
        table.clear()
        for r in message.runs:
            job = message.jobs.get(r["job_id"]) if r.get("job_id") else None
            status = f"{job['status']} {100 * job['progress']:.0f}%" if job and job["status"] == "running" else (job["status"] if job else "–")
            adapter = (r.get("config_json") or "").count("adapter") and _adapter_name(r) or "–"
            table.add_row(str(r["id"]), status, r["model_spec"], adapter, key=str(r["id"]))
        if message.runs:
            table.move_cursor(row=min(keep, len(message.runs) - 1), animate=False)
        self.show_report(message.report)
        self.query_one("#eval-agreement", Static).update(agreement_text(message.agreement))
        # the job started here; else this character's latest evaluation job (never another character's)
        own = message.jobs.get(self.job_id) if self.job_id is not None else None
        self.show_job(own or max(message.jobs.values(), key=lambda j: j["id"], default=None))

    def show_job(self, job: dict | None) -> None:
        line = self.query_one("#eval-job", Static)
        bar = self.query_one("#eval-progress", ProgressBar)
        if job is None:
            line.update("no evaluation job yet")
            bar.update(progress=0)
            return
        from ..numbers import job_eta

        text = f"job {job['id']} {job['status']}" + (f" · {job['progress_text']}" if job.get("progress_text") else "")
        text += f" · {job_eta(job)}" if job_eta(job) else ""
        if job.get("error"):
            text += f"\n{job['error']}"
        line.update(Text(text, style="red" if job["status"] in ("failed", "dead") else ""))
        bar.update(progress=job.get("progress") or 0)

    def show_trust(self, profile: str) -> None:
        from ..trust import trust_for

        language = self.services.characters.repo.row(self.character)["language"] if self.character else "en"
        trust = trust_for(profile, language)
        results = self.query_one("#eval-results", DataTable)
        results.border_title = f"ΔAPC per method (95% CI) · {trust.badge}"
        results.border_subtitle = "g: chart" if self.has_class("narrow") else ""
        line = self.query_one("#eval-trust", Static)
        line.update(trust.short)
        line.tooltip = trust.caveat or None
        line.display = bool(trust.short)

    def show_report(self, report: dict | None) -> None:
        self.show_trust(report["profile"] if report else self.services.settings.profile)
        table = self.query_one("#eval-results", DataTable)
        table.clear()
        plot = self.query_one("#eval-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        order = {m: i for i, m in enumerate(METHODS)}
        results = sorted(report["results"] if report else [], key=lambda r: (order.get(r["method"], 9), r["variant"] != "base"))
        for r in results:
            table.add_row(r["method"], r["variant"], str(r["n"]), signed(r["delta_apc_mean"], 3),
                          ci_text(r["ci_low"], r["ci_high"], r["n"]), fixed(r["active_mean"]), fixed(r["passive_mean"]))  # fmt: skip
        if not results:
            plt.title("no results yet: s runs an evaluation" if not report else f"run {report['run_id']}: waiting for results")
            plot.refresh()
            return
        methods = list(dict.fromkeys(r["method"] for r in results))
        by = {(r["method"], r["variant"]): r["delta_apc_mean"] for r in results}
        variants = [v for v in ("base", "adapter") if any((m, v) in by for m in methods)]
        series = [[by.get((m, v), 0.0) for m in methods] for v in variants]
        if len(series) > 1:
            plt.multiple_bar(methods, series, labels=variants)
        else:
            plt.bar(methods, series[0], label=variants[0])
        plt.ylim(*y_limits([v for row in series for v in row]))
        plt.title(f"run {report['run_id']} · {report['model']}")
        plot.refresh()

    @on(DataTable.RowHighlighted, "#eval-runs")
    def _run_highlighted(self) -> None:
        self.poll()

    # -- actions --------------------------------------------------------------------------
    @on(Button.Pressed, "#eval-start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        if not self.character:
            return
        methods = [m for m in METHODS if self.query_one(f"#eval-m-{m}", Checkbox).value]
        adapter = self.query_one("#eval-adapter", Select).value
        queries = self.query_one("#eval-queries", Input).value.strip()
        k = self.query_one("#eval-k", Input).value.strip()
        tokens = self.query_one("#eval-tokens", Input).value.strip()
        options = {
            "adapter": adapter if isinstance(adapter, str) else None,
            "queries": int(queries) if queries.isdigit() else None,
            "k": int(k) if k.isdigit() else self.services.settings.k,
            "max_new_tokens": int(tokens) if tokens.isdigit() and int(tokens) > 0 else 160,
        }
        character, model = self.character, self.query_one("#eval-model", Input).value.strip()
        queries_all, origin = self.services.evaluation.queries_for(self.services.characters.get(character))
        n = min(len(queries_all), options["queries"] or len(queries_all))
        variants = 2 if options["adapter"] else 1
        replies = n * len(methods) * variants
        from ..trust import trust_for

        trust = trust_for(self.services.settings.profile, self.services.characters.repo.row(character)["language"])
        question = (f"Evaluate {character} with {model}: methods {', '.join(methods) or 'none chosen'}, {n} {origin} queries"
                    f"{' × base and adapter' if variants == 2 else ''} = {replies} replies to generate and score "
                    f"({trust.badge}). It runs as a job; "
                    f"{self.services.jobs.estimate('eval', model or self.services.settings.model, replies)}.\n\nStart?")  # fmt: skip

        def answered(yes: bool | None) -> None:
            if yes:
                self._start_worker(character, model, methods, options)

        self.app.push_screen(Confirm(question), answered)

    @work(thread=True, group="eval-start", exit_on_error=False, description="Run evaluation")
    def _start_worker(self, character: str, model: str, methods: list[str], options: dict) -> None:
        config, cid = self.services.evaluation.eval_config(character, model, methods, **options)
        row = self.services.jobs.start("eval", config, character_id=cid, detach=True)
        self.post_message(JobStarted(row["id"], "eval"))

    def on_job_started(self, message: JobStarted) -> None:
        self.job_id = message.job_id
        self.notify(f"evaluation job {message.job_id} started; it keeps running if you quit", title="Job")
        self.set_active(True)
        self.poll()

    def action_toggle_chart(self) -> None:
        """Below 100 columns the table and the chart share one place: g shows the other."""
        self.toggle_class("chart")

    def action_cancel(self) -> None:
        self._cancel_worker(self.job_id, self.character)

    @work(thread=True, group="eval-cancel", exit_on_error=False, description="Cancel")
    def _cancel_worker(self, job_id: int | None, character: str | None) -> None:
        """Cancel the job started here; else this character's running evaluation."""
        jobs = self.services.jobs
        if job_id is None or jobs.repo.get(job_id)["status"] not in ACTIVE:
            cid = self.services.characters.repo.row(character)["id"] if character else None
            active = [j for j in jobs.list(kind="eval", limit=50) if j["status"] in ACTIVE and j.get("character_id") == cid]
            job_id = active[0]["id"] if active else None
        if job_id is None:
            self.app.call_from_thread(self.notify, "no evaluation is running", severity="warning")
            return
        status = jobs.cancel(job_id)
        self.app.call_from_thread(self.notify, f"job {job_id}: cancel requested ({status})")


def _adapter_name(run: dict) -> str:
    import json

    return json.loads(run["config_json"]).get("adapter") or "–"
