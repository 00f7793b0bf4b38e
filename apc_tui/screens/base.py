"""The base of every workbench screen: header, navigation tabs, footer, one failure handler."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Label
from textual.worker import Worker, WorkerState

from ..widgets.nav import NavTabs


class WorkbenchScreen(Screen):
    """Subclasses set MODE and LABEL and implement `compose_body`.

    Screens receive the `Services` object; they never construct services or touch SQL.
    Every worker started by a screen reports failure through `on_worker_state_changed`.
    """

    MODE = ""
    LABEL = ""
    HOME = ""
    """Selector of the widget Escape returns to from a text field (none: nothing focused)."""

    def __init__(self, services):
        super().__init__(id=f"screen-{self.MODE}")
        self.services = services

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield NavTabs(self.MODE)
            yield Label("", id="context")
        yield from self.compose_body()
        yield Footer(compact=True)  # every key is also in the command palette (ctrl+p) and help (F1)

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < 100, "narrow")

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.watch(self.app, "character", self._character_changed)

    def on_key(self, event) -> None:
        """Escape leaves any text field (and a closed dropdown), so letters are shortcuts again."""
        from textual.widgets import Input, Select, TextArea

        if event.key == "escape" and isinstance(self.focused, Input | TextArea | Select):
            event.stop()
            self.leave_field()

    def leave_field(self) -> None:
        home = self.query(self.HOME).first() if self.HOME else None
        if home is not None and home.focusable and home.display:
            home.focus()
        else:
            self.set_focus(None)

    def _character_changed(self, name: str | None) -> None:
        self.query_one("#context", Label).update(name or "no character")
        self.sub_title = f"{self.LABEL} · {name}" if name else self.LABEL

    @property
    def character(self) -> str | None:
        return self.app.character

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where a failed worker becomes a notification (with its fix)."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.worker_failed(event.worker)
            self.app.report_failure(event.worker.error, event.worker.description or event.worker.name)
        elif event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED, WorkerState.ERROR):
            self.worker_finished(event.worker)

    def worker_failed(self, worker: Worker) -> None:
        """Hook: undo busy indicators for this worker (the notification is already handled)."""
        self.worker_finished(worker)

    def worker_finished(self, worker: Worker) -> None:
        """Hook: a worker ended (success, cancel or failure)."""


def statement_width(table, screen) -> int:
    """Room for the statement column of a WHY table: its width less the fixed columns."""
    width = table.size.width or screen.size.width
    return max(16, width - 56)
