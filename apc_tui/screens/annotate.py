"""Annotate: a blind queue of sibling-reply pairs in random left/right order (APC hidden until the
vote), and a review queue of the pairs where APC and the human disagree most."""

from __future__ import annotations

import random

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label

from ..widgets.candidate import CandidatePanel
from ..widgets.conversation import HistoryView
from ..widgets.why import WhyTable
from .base import WorkbenchScreen, statement_width

QUEUES = {"blind": "blind", "disagree": "APC≠human"}
MARKS = {"left": ("✓ preferred", "✗"), "right": ("✗", "✓ preferred"), "tie": ("= tie", "= tie"), "both_bad": ("✗ both bad", "✗ both bad")}


class AnnotateScreen(WorkbenchScreen):
    MODE = "annotate"
    LABEL = "Annotate"
    HOME = "#ann-left"
    BINDINGS = [
        Binding("1", "vote('left')", "Left", tooltip="Left better"),
        Binding("2", "vote('right')", "Right", tooltip="Right better"),
        Binding("equals_sign", "vote('tie')", "Tie", key_display="="),
        Binding("0", "vote('both_bad')", "Both bad"),
        Binding("n,space", "next", "Next"),
        Binding("u", "undo", "Undo"),
        Binding("d", "toggle_queue", "Disagree", tooltip="Disagreements queue (APC ≠ human)"),
        Binding("a", "focus_annotator", "Annotator", show=False),
        Binding("T", "teach_queue", "Teach queue", show=False),
    ]

    class Labelled(Message):
        def __init__(self, index: int, side: str | None, preference_id: int | None, undo: bool = False) -> None:
            super().__init__()
            self.index, self.side, self.preference_id, self.undo = index, side, preference_id, undo

    def __init__(self, services, seed: int | None = None):
        super().__init__(services)
        self.rng = random.Random(seed)
        self.queue_name = "blind"
        self.items: list[dict] = []
        self.index = 0
        self.orders: dict[int, str] = {}  # item index -> "ab" | "ba" (A shown left / right)
        self.labels: dict[int, tuple[str, int]] = {}  # item index -> (side, preference id)
        self.undo_stack: list[int] = []
        self.loaded_for: tuple | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="annotate-options"):
            yield Label("annotator", classes="opt-label")
            yield Input(self.app.annotator, id="annotator", compact=True)
            yield Label("", id="annotate-progress")
        with Vertical(id="annotate-main"):
            with VerticalScroll(id="annotate-history-box"):
                yield HistoryView(id="annotate-history")
            with Horizontal(id="annotate-candidates"):
                yield CandidatePanel("Left", id="ann-left")
                yield CandidatePanel("Right", id="ann-right")
            yield WhyTable(id="annotate-why", sides=("L", "R"))

    def on_mount(self) -> None:
        self.reload()
        self.query_one("#ann-left").focus()

    @property
    def annotator(self) -> str:
        return self.app.annotator

    def on_screen_resume(self) -> None:
        if self.loaded_for != (self.character, self.annotator, self.queue_name):
            self.reload()
        else:
            self.render_item()

    # -- queue ----------------------------------------------------------------------------
    def reload(self) -> None:
        name = self.character
        self.loaded_for = (name, self.annotator, self.queue_name)
        svc = self.services.annotation
        if not name:
            self.items = []
        elif self.queue_name == "blind":
            self.items = svc.queue(name, self.annotator)
        else:
            self.items = svc.disagreements(name)
        self.index, self.labels, self.undo_stack = 0, {}, []
        self.orders = {i: self.rng.choice(("ab", "ba")) for i in range(len(self.items))}
        self.render_item()

    def current(self) -> dict | None:
        return self.items[self.index] if 0 <= self.index < len(self.items) else None

    def sides(self) -> tuple[dict, dict] | None:
        item = self.current()
        if item is None:
            return None
        return (item["a"], item["b"]) if self.orders.get(self.index, "ab") == "ab" else (item["b"], item["a"])

    def render_item(self) -> None:
        item = self.current()
        left, right = self.query_one("#ann-left", CandidatePanel), self.query_one("#ann-right", CandidatePanel)
        why = self.query_one("#annotate-why", WhyTable)
        self._progress()
        if item is None:
            left.show(None)
            right.show(None)
            why.show(None, None)
            empty = "No pairs to label: sample replies on the Chat screen (F3), each turn makes a pair." if self.queue_name == "blind" \
                else "No disagreements: APC agrees with every human label so far."  # fmt: skip
            self.query_one(HistoryView).update(empty)
            return
        self.query_one(HistoryView).show(item["history"], self.character or "")
        shown_left, shown_right = self.sides()
        label = self.labels.get(self.index)
        revealed = label is not None or self.queue_name == "disagree"
        marks = MARKS.get(label[0], ("", "")) if label else ("", "")
        if self.queue_name == "disagree" and not label:
            human_left = (item["human"] == "a") == (shown_left is item["a"])
            marks = ("human ✓", "APC ✓") if human_left else ("APC ✓", "human ✓")
        left.show(shown_left, hide_scores=not revealed, mark=marks[0])
        right.show(shown_right, hide_scores=not revealed, mark=marks[1])
        if revealed:
            from ..trust import trust_for

            why.show(shown_left.get("score"), shown_right.get("score"), statement_width=statement_width(why, self), name=self.character or "")
            profile = (shown_left.get("score") or {}).get("profile") or self.services.settings.profile
            language = self.services.characters.repo.row(self.character)["language"] if self.character else "en"
            trust = trust_for(profile, language)
            why.border_title = f"WHY L vs R · {trust.badge}"
            why.tooltip = trust.caveat or None
        else:
            why.show(None, None)
            why.border_title = "WHY L vs R"
            why.border_subtitle = "revealed after your vote"

    def _progress(self) -> None:
        text = f"{QUEUES[self.queue_name]} · pair {min(self.index + 1, len(self.items))} of {len(self.items)}"
        if self.character and self.queue_name == "blind":
            done, total = self.services.annotation.progress(self.character, self.annotator)
            text += f" · {done}/{total} labelled by {self.annotator}"
        self.query_one("#annotate-progress", Label).update(text)

    # -- actions --------------------------------------------------------------------------
    def action_vote(self, side: str) -> None:
        item = self.current()
        if item is None:
            return
        order = self.orders.get(self.index, "ab")
        if side in ("left", "right"):
            a_shown_left = order == "ab"
            choice = "a" if (side == "left") == a_shown_left else "b"
        else:
            choice = side
        self._label_worker(self.index, side, item["a"]["id"], item["b"]["id"], choice, order, self.queue_name == "disagree")

    @work(thread=True, group="annotate-label", exit_on_error=False, description="Label")
    def _label_worker(self, index: int, side: str, a: int, b: int, choice: str, order: str, apc_visible: bool) -> None:
        pid = self.services.training.record_preference(a, b, choice, annotator=self.annotator, shown_order=order, apc_visible=apc_visible)
        self.post_message(self.Labelled(index, side, pid))

    def on_annotate_screen_labelled(self, message: Labelled) -> None:
        if message.undo:
            self.index = message.index
            if message.side is None:
                self.labels.pop(message.index, None)
            else:  # the vote this one replaced is current again
                self.labels[message.index] = (message.side, message.preference_id)
        elif message.side is None:
            self.labels.pop(message.index, None)
            self.index = message.index
        else:
            self.labels[message.index] = (message.side, message.preference_id)
            self.undo_stack.append(message.index)
        self.render_item()

    def action_next(self) -> None:
        if self.index < len(self.items):
            self.index += 1
            self.render_item()

    def action_undo(self) -> None:
        if not self.undo_stack:
            self.notify("nothing to undo in this session", severity="warning")
            return
        index = self.undo_stack.pop()
        self._undo_worker(index, self.labels[index][1])

    @work(thread=True, group="annotate-label", exit_on_error=False, description="Undo")
    def _undo_worker(self, index: int, preference_id: int) -> None:
        restored = self.services.training.undo_preference(preference_id)  # the vote it replaced, if any
        side = pid = None
        if restored is not None:
            item = self.items[index]
            winner = {"a": restored["message_a_id"], "b": restored["message_b_id"]}.get(restored["choice"])
            if winner is None:
                side = restored["choice"]
            else:
                shown_left = item["a"]["id"] if self.orders.get(index, "ab") == "ab" else item["b"]["id"]
                side = "left" if winner == shown_left else "right"
            pid = restored["id"]
        self.post_message(self.Labelled(index, side, pid, undo=True))

    def action_toggle_queue(self) -> None:
        self.queue_name = "disagree" if self.queue_name == "blind" else "blind"
        self.reload()

    def action_teach_queue(self) -> None:
        """Teach the scorer: the verdicts worth a look first (screens/teach.py)."""
        from .teach import TeachQueueScreen

        if self.character:
            self.app.push_screen(TeachQueueScreen(self.services, self.character))

    def action_focus_annotator(self) -> None:
        self.query_one("#annotator").focus()

    @on(Input.Submitted, "#annotator")
    def _annotator_set(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        if not name:
            self.notify("the annotator name cannot be empty; type who is labelling", severity="warning")
            return
        self.app.annotator = name
        self.reload()
        self.query_one("#ann-left").focus()
