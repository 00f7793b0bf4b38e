"""Pick a file to import: a directory tree and a path input that stay in step."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, Static


class ImportableTree(DirectoryTree):
    """Hidden files out of the way; everything else is shown (formats are detected by content)."""

    def filter_paths(self, paths):
        return [p for p in paths if not p.name.startswith(".")]


class FilePicker(ModalScreen[Path | None]):
    """Returns the chosen file's path, or None. Typing a directory in the input re-roots the tree."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+u", "parent", "Parent folder"),
        Binding("backspace", "parent_from_tree", "Parent folder", show=False),
    ]

    def __init__(self, start: Path, title: str = "Import a character file"):
        super().__init__(classes="dialog-screen")
        self.start = start.expanduser().resolve()
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="file-picker"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static("wiki text, statements JSON or a Character Card (JSON/PNG) · enter on a file imports it\n"
                         "type a path: tab to the box, type, enter (a folder opens it) · go up: backspace or ctrl+u",
                         classes="dialog-hint")  # fmt: skip
            yield Input(str(self.start) + "/", id="picker-path", placeholder="/path/to/file", compact=True)
            yield ImportableTree(self.start, id="picker-tree")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Import", variant="primary", id="picker-ok", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#picker-tree").focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.query_one("#picker-path", Input).value = str(event.path)
        self.dismiss(Path(event.path))

    def on_tree_node_highlighted(self, event) -> None:
        data = getattr(event.node, "data", None)
        if data is not None and getattr(data, "path", None) is not None:
            self.query_one("#picker-path", Input).value = str(data.path)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._accept(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "picker-ok":
            self._accept(self.query_one("#picker-path", Input).value)
        else:
            self.dismiss(None)

    def _accept(self, text: str) -> None:
        path = Path(text.strip() or ".").expanduser()
        if path.is_dir():
            self.query_one("#picker-tree", DirectoryTree).path = path
            self.query_one("#picker-path", Input).value = str(path.resolve()) + "/"
            return
        if not path.exists():
            self.notify(f"{path}: no such file; pick one in the tree or type its path", severity="warning")
            return
        self.dismiss(path)

    def action_parent_from_tree(self) -> None:
        """Backspace goes up a folder from the tree (in the path box it deletes a character)."""
        if isinstance(self.focused, DirectoryTree):
            self.action_parent()

    def action_parent(self) -> None:
        tree = self.query_one("#picker-tree", DirectoryTree)
        parent = Path(tree.path).resolve().parent
        tree.path = parent
        self.query_one("#picker-path", Input).value = str(parent) + "/"

    def action_cancel(self) -> None:
        self.dismiss(None)
