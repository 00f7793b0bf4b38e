"""Teach the scorer from the TUI: mark a statement's verdicts on a pair of candidates (relevance,
and the NLI verdict of each reply) as human labels, and the teach queue of the verdicts worth a
look first. Opened from the why panel (`v` on a statement row) and from Annotate (`T`)."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from ..widgets.format import printable

NLI_KEYS = {"e": "entailed", "u": "neutral", "c": "contradicted"}


def _verdict_line(term: dict) -> str:
    return f"yes {term['p_yes']:.2f} · ent {term['p_entailed']:.2f} · neu {term['p_neutral']:.2f} · con {term['p_contradicted']:.2f}"


class VerdictDialog(ModalScreen[int]):
    """One statement, replies A and B to the same query with the scorer's verdicts; keys store human labels
    at once (y/n relevance; e/u/c the NLI verdict of the selected reply, a/b select it). Dismisses
    with the number of labels stored."""

    BINDINGS = [
        Binding("y", "relevance('yes')", "Relevant"),
        Binding("n", "relevance('no')", "Not relevant"),
        Binding("a", "side('a')", "Reply A"),
        Binding("b", "side('b')", "Reply B"),
        Binding("e", "nli('e')", "Entailed"),
        Binding("u", "nli('u')", "Neutral"),
        Binding("c", "nli('c')", "Contradicted"),
        Binding("escape,q", "close", "Close"),
    ]

    class Stored(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, services, statement: str, a: dict, b: dict):
        """`a`, `b`: {"message_id", "text", "term": the statement's term dict (p_yes, p_entailed, ...)}."""
        super().__init__(classes="dialog-screen")
        self.services, self.statement, self.replies = services, statement, {"a": a, "b": b}
        self.side = "a"
        self.stored = 0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="verdict-dialog"):
            yield Label("Teach the scorer: your verdict on this statement", classes="dialog-title")
            yield Static(Text(printable(self.statement), style="bold"), id="verdict-statement")
            with VerticalScroll(id="verdict-replies"):
                for side in ("a", "b"):
                    yield Static(id=f"verdict-{side}")
            yield Static("y/n relevant · a/b pick reply · e/u/c entailed/neutral/contradicted · esc close", classes="dialog-hint")
            yield Label("", id="verdict-status")

    def on_mount(self) -> None:
        self._render_sides()

    def _render_sides(self) -> None:
        for side, reply in self.replies.items():
            mark = "▶" if side == self.side else " "
            text = Text.assemble((f"{mark} {side.upper()}  ", "bold"), printable(reply["text"])[:400], "\n   ",
                                 (f"scorer: {_verdict_line(reply['term'])}", "dim"))  # fmt: skip
            self.query_one(f"#verdict-{side}", Static).update(text)

    def action_side(self, side: str) -> None:
        self.side = side
        self._render_sides()

    def action_relevance(self, label: str) -> None:
        self._store(self.replies["a"]["message_id"], "relevance", label)

    def action_nli(self, key: str) -> None:
        self._store(self.replies[self.side]["message_id"], "nli", NLI_KEYS[key])

    @work(thread=True, group="verdict", exit_on_error=False, description="Store verdict")
    def _store(self, message_id: int, task: str, label: str) -> None:
        out = self.services.teach.label_message(message_id, self.statement, task, label, annotator=self.app.annotator or None)
        where = "" if task == "relevance" else f" for reply {self.side.upper()}"
        self.post_message(self.Stored(f"stored: {out['task']} {out['label']}{where}"))

    def on_verdict_dialog_stored(self, message: Stored) -> None:
        self.stored += 1
        self.query_one("#verdict-status", Label).update(message.text)

    def on_worker_state_changed(self, event) -> None:
        from textual.worker import WorkerState

        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.app.report_failure(event.worker.error, event.worker.description or event.worker.name)

    def action_close(self) -> None:
        self.dismiss(self.stored)


class TeachQueueScreen(ModalScreen[None]):
    """The character's per-statement verdicts ordered by uncertainty x influence on the pair's APC
    gap (pairs where APC and the human disagree first); Enter opens the verdict dialog."""

    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("r", "reload", "Reload"),
        Binding("t", "train", "Train on my labels"),
        Binding("R", "rescore", "Rescore"),
    ]

    class Loaded(Message):
        def __init__(self, items: list[dict]) -> None:
            super().__init__()
            self.items = items

    def __init__(self, services, character: str):
        super().__init__(classes="dialog-screen")
        self.services, self.character = services, character
        self.items: list[dict] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="teach-queue"):
            yield Label(f"Teach queue · {self.character}", classes="dialog-title")
            yield DataTable(id="teach-table", cursor_type="row", zebra_stripes=True)
            yield Static("enter: give your verdict · t train this character's discriminators on the labels (a job) · "
                         "R rescore its candidates with the active version · r reload · esc close", classes="dialog-hint")  # fmt: skip

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in ("priority", "≠", "statement", "query", "yes", "A ent/con", "B ent/con"):
            table.add_column(label, key=label)
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, group="teach-queue", exclusive=True, exit_on_error=False, description="Teach queue")
    def _load(self) -> None:
        self.post_message(self.Loaded(self.services.teach.queue(self.character, annotator=self.app.annotator)))

    def on_teach_queue_screen_loaded(self, message: Loaded) -> None:
        self.items = message.items
        table = self.query_one(DataTable)
        table.clear()
        for it in self.items:
            ta, tb = it["a"]["term"], it["b"]["term"]
            table.add_row(
                f"{it['priority']:.3f}", "≠" if it["disagree"] else "", printable(it["statement"])[:48], printable(it["query"])[:32],
                f"{ta['p_yes']:.2f}", f"{ta['p_entailed']:.2f}/{ta['p_contradicted']:.2f}", f"{tb['p_entailed']:.2f}/{tb['p_contradicted']:.2f}",
            )  # fmt: skip
        table.border_subtitle = f"{len(self.items)} verdicts to look at" if self.items else "nothing to look at: score some pairs first"

    def action_train(self) -> None:
        self._start("disc_teach")

    def action_rescore(self) -> None:
        self._start("rescore")

    @work(thread=True, group="teach-job", exit_on_error=False, description="Start job")
    def _start(self, kind: str) -> None:
        """A detached job (it survives the TUI); progress shows on the Train screen and in `apc jobs`."""
        from ..services.teach_train import rescore_config

        if kind == "disc_teach":
            config, cid = self.services.teach_train.config(self.character)
        else:
            config, cid = rescore_config(self.services, self.character)
        row = self.services.jobs.start(kind, config, character_id=cid, detach=True)
        what = f"training version {config['name']}" if kind == "disc_teach" else "rescoring"
        self.app.call_from_thread(self.app.notify, f"job {row['id']}: {what} for {self.character} (see Train / `apc jobs`)")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.items):
            it = self.items[event.cursor_row]
            self.app.push_screen(VerdictDialog(self.services, it["statement"], it["a"], it["b"]), lambda _: self.action_reload())

    def on_worker_state_changed(self, event) -> None:
        from textual.worker import WorkerState

        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.app.report_failure(event.worker.error, event.worker.description or event.worker.name)

    def action_close(self) -> None:
        self.dismiss(None)
