"""Job widgets shared by the Train and Evaluate screens: the jobs table, a metrics plot fed from
`job_metrics`, and a log view that appends new `job_logs` lines."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, Log
from textual_plotext import PlotextPlot

from ..numbers import job_eta
from .format import printable

STATUS_STYLE = {"running": "bold cyan", "queued": "yellow", "done": "green", "failed": "bold red", "cancelled": "dim", "dead": "red"}


class JobsTable(DataTable):
    """Every job in the database (started here, from the CLI or an earlier session); newest first."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.border_title = "Jobs"

    def on_mount(self) -> None:
        for label in ("id", "kind", "status", "progress", "character"):
            self.add_column(label, key=label)

    def show(self, jobs: list[dict], names: dict[int, str]) -> None:
        keep = self.selected_job()
        self.clear()
        for j in jobs:
            status = Text(j["status"], style=STATUS_STYLE.get(j["status"], ""))
            pct = " · ".join(x for x in (f"{100 * (j.get('progress') or 0):.0f}%", job_eta(j)) if x)
            self.add_row(str(j["id"]), j["kind"], status, pct, names.get(j.get("character_id"), "–"), key=str(j["id"]))
        ids = [j["id"] for j in jobs]
        if keep in ids:
            self.move_cursor(row=ids.index(keep), animate=False)

    def selected_job(self) -> int | None:
        if self.row_count == 0:
            return None
        return int(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def select_job(self, job_id: int) -> None:
        for i in range(self.row_count):
            if self.coordinate_to_cell_key((i, 0)).row_key.value == str(job_id):
                self.move_cursor(row=i, animate=False)
                return


class MetricsPlot(PlotextPlot):
    """Loss and reward margin per step of one job."""

    SERIES = (("loss", "loss"), ("rewards/margins", "reward margin"))

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.border_title = "loss · reward margin"

    def show(self, metrics: list[dict], title: str = "") -> None:
        self.title_text = title
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        plt.xlabel("step")
        plotted = 0
        for name, label in self.SERIES:
            points = [(m["step"], m["value"]) for m in metrics if m["name"] == name]
            if points:
                plt.plot([p[0] for p in points], [p[1] for p in points], label=label, marker="braille")
                plotted += 1
        if not plotted:
            plt.title(title or "no metrics yet (they arrive every logging step)")
        self.refresh()


class JobLog(Log):
    """The log lines of one job; `feed` appends only lines it has not shown."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id, highlight=False, max_lines=2000)
        self.border_title = "log"
        self.job_id: int | None = None
        self.last_id = 0

    def feed(self, job_id: int | None, lines: list[dict]) -> None:
        if job_id != self.job_id:
            self.clear()
            self.job_id, self.last_id = job_id, 0
            self.border_title = f"log of job {job_id}" if job_id else "log"
        new = [line for line in lines if line["id"] > self.last_id]
        if new:
            self.last_id = new[-1]["id"]
            self.write("".join(f"{line['ts'][11:19]} {line['level'][:4]:4} {printable(line['message'])}\n" for line in new))
