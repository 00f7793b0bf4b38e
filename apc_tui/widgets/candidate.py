"""One candidate reply: its text, APC, ΔAPC and statement count in the border, vote marks; or a
reply still being generated (streamed)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from .format import printable, score_line


class CandidatePanel(VerticalScroll):
    """Shows a message dict (ChatService.show shape). `hide_scores` keeps APC out of sight (blind annotation)."""

    can_focus = True

    def __init__(self, slot: str, *, id: str | None = None):
        super().__init__(id=id, classes="candidate")
        self.slot = slot
        self.message: dict | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="candidate-text", markup=False)

    def show(self, message: dict | None, *, hide_scores: bool = False, mark: str = "") -> None:
        self.message = message
        text = self.query_one(".candidate-text", Static)
        self.remove_class("preferred", "rejected", "edited", "empty")
        if message is None:
            self.border_title = self.slot
            self.border_subtitle = ""
            text.update("—")
            self.add_class("empty")
            return
        # blind (`hide_scores`): nothing that tells where a reply came from or how APC scored it
        origin = " · your ideal reply" if message.get("origin") == "edited" and not hide_scores else ""
        scores = "APC hidden until you vote" if hide_scores else score_line(message.get("score"))
        self.border_title = f"{self.slot} · {scores}{origin}"
        warning = "⚠ tiny: meaningless" if message.get("meaningless") and not hide_scores else ""
        self.border_subtitle = " · ".join(x for x in (mark, warning) if x)
        if mark.startswith("✓"):
            self.add_class("preferred")
        elif mark.startswith("✗"):
            self.add_class("rejected")
        if message.get("origin") == "edited" and not hide_scores:
            self.add_class("edited")
        text.update(printable(message.get("content") or ""))
        self.scroll_home(animate=False)

    def stream(self, text: str, *, done: bool = False, meaningless: bool = False) -> None:
        """A reply while it is generated (`done`: complete, its APC not computed yet); keeps its end in view."""
        self.message = None
        self.loading = False
        self.remove_class("preferred", "rejected", "edited", "empty")
        self.border_title = f"{self.slot} · {'scoring…' if done else 'generating…'}"
        self.border_subtitle = "⚠ tiny: meaningless" if meaningless else ""
        self.query_one(".candidate-text", Static).update(printable(text))
        self.scroll_end(animate=False)
