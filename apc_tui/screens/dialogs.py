"""Small modal dialogs: a text prompt (one line or many), a confirmation, a choice, a text viewer."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TextArea


class TextPrompt(ModalScreen[str | None]):
    """Ask for a text. One line: Enter saves. Several lines: Ctrl+S saves. Esc cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    def __init__(self, title: str, value: str = "", *, multiline: bool = False, placeholder: str = "", hint: str = "",
                 select_all: bool = False):  # fmt: skip
        super().__init__(classes="dialog-screen")
        self.title_text, self.value, self.multiline = title, value, multiline
        self.placeholder, self.hint, self.select_all = placeholder, hint, select_all

    def on_mount(self) -> None:
        if self.multiline:
            area = self.query_one("#prompt-text", TextArea)
            area.focus()
            if self.select_all:  # the first key typed replaces the whole text (no 600 Deletes)
                area.select_all()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="text-prompt"):
            yield Label(self.title_text, classes="dialog-title")
            if self.hint:
                yield Static(self.hint, classes="dialog-hint")
            if self.multiline:
                yield TextArea(self.value, id="prompt-text", soft_wrap=True)
            else:
                yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="save", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save() if event.button.id == "save" else self.action_cancel()

    def action_save(self) -> None:
        if self.multiline:
            text = self.query_one("#prompt-text", TextArea).text
        else:
            text = self.query_one("#prompt-input", Input).value
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    """A yes/no question; y confirms, n or Esc declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str):
        super().__init__(classes="dialog-screen")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (y)", variant="error", id="yes", compact=True)
                yield Button("No (n)", id="no", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ExportDialog(ModalScreen[tuple[str, str] | None]):
    """Choose an export format and an output path."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    EXT = {"statements": ".json", "card": ".json", "card-png": ".png"}

    def __init__(self, name: str, formats: tuple[str, ...], default_path: str):
        super().__init__(classes="dialog-screen")
        self.name_, self.formats, self.default_path = name, formats, default_path

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export"):
            yield Label(f"Export {self.name_}", classes="dialog-title")
            yield Select([(f, f) for f in self.formats], value=self.formats[0], allow_blank=False, id="export-format")
            yield Input(self.default_path, id="export-path")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", variant="primary", id="export-go", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_select_changed(self, event: Select.Changed) -> None:
        path = self.query_one("#export-path", Input)
        stem = path.value.rsplit(".", 1)[0] if "." in path.value.rsplit("/", 1)[-1] else path.value
        path.value = stem + self.EXT.get(str(event.value), ".json")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._go()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._go() if event.button.id == "export-go" else self.dismiss(None)

    def _go(self) -> None:
        fmt = str(self.query_one("#export-format", Select).value)
        self.dismiss((fmt, self.query_one("#export-path", Input).value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextViewer(ModalScreen[None]):
    """Read-only text (the exact prompt of a candidate, a job log)."""

    BINDINGS = [Binding("escape,q,p", "close", "Close")]

    def __init__(self, title: str, body: str):
        super().__init__(classes="dialog-screen")
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="text-viewer"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(id="viewer-scroll"):
                yield Static(self.body, id="viewer-body", markup=False)
            yield Label("esc closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
