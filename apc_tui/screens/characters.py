"""Characters: the list (statements, language, last ΔAPC), import, export and the statement editor."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Label, Static

from engine.types import Character

from ..widgets.format import fmt_signed
from .base import WorkbenchScreen
from .dialogs import Confirm, ExportDialog, TextPrompt
from .file_picker import FilePicker


class CharactersScreen(WorkbenchScreen):
    MODE = "characters"
    LABEL = "Characters"
    HOME = "#character-table"
    BINDINGS = [
        Binding("enter", "chat", "Chat", show=True),
        Binding("i", "import", "Import"),
        Binding("x", "export", "Export"),
        Binding("a", "add_statement", "Add", tooltip="Add statement"),
        Binding("e", "edit_statement", "Edit", tooltip="Edit statement"),
        Binding("space", "toggle_statement", "On/off", tooltip="Enable/disable statement"),
        Binding("D", "delete", "Delete character", show=False),
        Binding("R", "restore", "Restore a deleted character", show=False),
        Binding("left", "focus_pane('character-table')", "Characters pane", show=False, priority=True),
        Binding("right", "focus_pane('statement-table')", "Statements pane", show=False, priority=True),
    ]

    class Imported(Message):
        def __init__(self, results: list) -> None:
            super().__init__()
            self.results = results

    class Changed(Message):
        """Statements or characters were written; reload and keep the cursor on `statement_id`."""

        def __init__(self, name: str | None, statement_id: int | None = None, note: str = "") -> None:
            super().__init__()
            self.name, self.statement_id, self.note = name, statement_id, note

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="characters-body"):
            with Vertical(id="character-pane", classes="pane"):
                yield Label("Characters · enter chats", classes="pane-title")
                yield DataTable(id="character-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="statement-pane", classes="pane"):
                yield Label("Statements", id="statement-title", classes="pane-title")
                yield DataTable(id="statement-table", cursor_type="row")
                with VerticalScroll(id="statement-detail-box"):
                    yield Static(id="statement-detail")

    def on_mount(self) -> None:
        self.columns_for: bool | None = None  # narrow layout the character columns were made for
        self.query_one("#statement-table", DataTable).add_columns("#", "On", "Origin", "Statement")
        self.shown: Character | None = None
        self.width_used = 0
        self.query_one("#character-table", DataTable).focus()

    def on_screen_resume(self) -> None:
        self.reload(self.character)

    def on_resize(self, event) -> None:
        if self.columns_for is not None and self.columns_for != (event.size.width < 100):
            self.reload(self.character)  # the character columns collapse below 100 columns
        self.call_after_refresh(self._refit)

    def _refit(self) -> None:
        """Re-truncate the statements once the table knows its width (after a resize or the first layout)."""
        width = self.query_one("#statement-table", DataTable).size.width
        if self.shown is not None and width and width != self.width_used:
            s = self._selected_statement()
            self._show_statements(self.shown.name, s.id if s else None)

    # -- data -----------------------------------------------------------------------------
    def reload(self, name: str | None = None, statement_id: int | None = None) -> None:
        table = self.query_one("#character-table", DataTable)
        rows = self.services.characters.list()
        narrow = (self.size.width or self.app.size.width) < 100
        if narrow != self.columns_for:  # 80 columns: name and ΔAPC only (the statements pane says the rest)
            table.clear(columns=True)
            table.add_columns(*(("Name", "ΔAPC") if narrow else ("Name", "Lang", "Stmts", "ΔAPC")))
            self.columns_for = narrow
            self.query_one("#character-pane .pane-title", Label).update("Characters" if narrow else "Characters · enter chats")
        table.clear()
        for r in rows:
            delta = fmt_signed(r["last_delta_apc"]) if r["last_delta_apc"] is not None else "–"
            stmts = f"{r['enabled']}/{r['statements']}" if r["enabled"] != r["statements"] else str(r["statements"])
            cells = (r["name"], delta) if narrow else (r["name"], r["language"], stmts, delta)
            table.add_row(*cells, key=r["name"])
        if not rows:
            self._show_statements(None)
            self.query_one("#statement-detail", Static).update("No characters yet: press i to import a file.")
            return
        names = [r["name"] for r in rows]
        target = name if name in names else names[0]
        table.move_cursor(row=names.index(target))
        self._show_statements(target, statement_id)

    def _show_statements(self, name: str | None, statement_id: int | None = None) -> None:
        table = self.query_one("#statement-table", DataTable)
        table.clear()
        if name is None:
            self.shown = None
            self.query_one("#statement-title", Label).update("Statements")
            return
        if self.app.character != name:
            self.app.character = name
        c = self.shown = self.services.characters.get(name)
        self.width_used = table.size.width
        self.query_one("#statement-title", Label).update(f"{c.name} · {len(c.statements)} statements · {c.language}")
        room = max(12, (table.size.width or self.app.size.width - 42) - 20)
        short = _short_name(c.name)
        for i, s in enumerate(c.statements, 1):
            text = s.text
            if len(text) > room and short != c.name:  # abbreviate the repeated name before cutting
                text = text.replace(c.name, short)
            text = text if len(text) <= room else text[: room - 1] + "…"
            origin = "draft ⚠" if s.origin == "split" else s.origin  # drafted from the text: to review
            table.add_row(str(i), "✓" if s.enabled else "·", origin, text, key=str(s.id))
        ids = [s.id for s in c.statements]
        if statement_id in ids:
            table.move_cursor(row=ids.index(statement_id))
        self._show_detail()
        if not table.size.width:
            self.call_after_refresh(self._refit)

    def _selected_statement(self):
        table = self.query_one("#statement-table", DataTable)
        if self.shown is None or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((s for s in self.shown.statements if str(s.id) == key), None)

    def _show_detail(self) -> None:
        s = self._selected_statement()
        detail = self.query_one("#statement-detail", Static)
        if s is None:
            detail.update("")
            return
        state = "enabled" if s.enabled else "disabled (not scored, not retrieved)"
        passage = s.source_passage or "(no source passage: added by hand or from a statements file)"
        review = " · drafted from the text: check it (e edits)" if s.origin == "split" else ""
        detail.update(f"{_escape(s.text)}\n[b]origin[/b] {s.origin}{review} · {state}\n[b]source passage[/b]\n{_escape(passage)}")

    @on(DataTable.RowHighlighted, "#character-table")
    def _character_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != event.data_table.cursor_row:
            return  # a stale event from refilling the table (it starts on row 1): the cursor has moved on
        if event.row_key.value and event.row_key.value != self.app.character:
            if event.row_key.value not in self.services.characters.repo.names():
                return  # a row of a character deleted a moment ago: the reload that follows redraws the list
            self._show_statements(event.row_key.value)

    @on(DataTable.RowHighlighted, "#statement-table")
    def _statement_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    @on(DataTable.RowSelected, "#character-table")
    def _character_selected(self, event: DataTable.RowSelected) -> None:
        self.action_chat()

    @on(DataTable.RowSelected, "#statement-table")
    def _statement_selected(self, event: DataTable.RowSelected) -> None:
        self.action_edit_statement()

    # -- actions --------------------------------------------------------------------------
    def action_focus_pane(self, table_id: str) -> None:
        self.query_one(f"#{table_id}", DataTable).focus()

    def action_chat(self) -> None:
        if self.character:
            self.app.open_chat(self.character)

    def action_import(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self.app.last_import_folder = path.expanduser().resolve().parent  # the next import starts there
                self.import_file(path)

        start = getattr(self.app, "last_import_folder", None)
        self.app.push_screen(FilePicker(start if start is not None and start.is_dir() else Path.cwd()), chosen)

    @work(thread=True, exclusive=True, group="characters-import", exit_on_error=False, description="Import")
    def import_file(self, path: Path) -> None:
        self.post_message(self.Imported(self.services.characters.import_files([path])))

    def on_characters_screen_imported(self, message: Imported) -> None:
        for r in message.results:
            verb = "imported" if r.created else "updated"
            drafted = f", {r.drafted} drafted from the text (edit them)" if r.drafted else ""
            self.notify(f"{verb} {r.name}: {r.statements} statements{drafted}", title="Import")
        self.reload(message.results[-1].name if message.results else self.character)

    def action_export(self) -> None:
        if not self.character:
            return
        from ..exporters import FORMATS

        slug = "_".join(self.character.lower().split())
        default = str(Path.cwd() / f"{slug}.json")

        def chosen(answer: tuple[str, str] | None) -> None:
            if answer:
                self.export(self.character, *answer)

        self.app.push_screen(ExportDialog(self.character, FORMATS, default), chosen)

    @work(thread=True, exclusive=True, group="characters-export", exit_on_error=False, description="Export")
    def export(self, name: str, fmt: str, out: str) -> None:
        path = self.services.characters.export(name, fmt, Path(out).expanduser())
        self.app.call_from_thread(self.notify, f"{name} → {path} ({fmt})", title="Exported")

    def action_add_statement(self) -> None:
        name = self.character
        if not name:
            return

        def done(text: str | None) -> None:
            if text is not None:
                self.write("add", name, text)

        hint = f"One short fact that names the character, e.g. “{name} lives in …”."
        self.app.push_screen(TextPrompt(f"New statement for {name}", hint=hint), done)

    def action_edit_statement(self) -> None:
        s = self._selected_statement()
        if s is None:
            return

        def done(text: str | None) -> None:
            if text is not None and text != s.text:
                self.write("edit", self.character, text, s.id)

        self.app.push_screen(TextPrompt("Edit statement", s.text), done)

    def action_toggle_statement(self) -> None:
        s = self._selected_statement()
        if s is not None:
            self.write("enable" if not s.enabled else "disable", self.character, "", s.id)

    def action_delete(self) -> None:
        if self.character:
            self._confirm_delete(self.character)

    @work(thread=True, group="characters-write", exit_on_error=False, description="Count what a delete takes")
    def _confirm_delete(self, name: str) -> None:
        from ..services.characters import deletion_summary

        summary = deletion_summary(self.services.characters.deletion_counts(name))

        def done(yes: bool | None) -> None:
            if yes:
                self.write("delete", name, "")

        question = f"Delete {name}? It has {summary}. (Restorable: R on this screen, or `apc characters restore`.)"
        self.app.call_from_thread(self.app.push_screen, Confirm(question), done)

    def action_restore(self) -> None:
        self._ask_restore()

    @work(thread=True, group="characters-write", exit_on_error=False, description="List deleted characters")
    def _ask_restore(self) -> None:
        names = [r["name"] for r in self.services.characters.deleted()]
        if not names:
            self.app.call_from_thread(self.notify, "no deleted characters", title="Restore")
            return

        def done(text: str | None) -> None:
            if text:
                self.write("restore", text.strip(), "")

        hint = "Deleted: " + ", ".join(names[:10])
        self.app.call_from_thread(self.app.push_screen, TextPrompt("Restore which character?", names[0], hint=hint), done)

    @work(thread=True, group="characters-write", exit_on_error=False, description="Save")
    def write(self, op: str, name: str, text: str, statement_id: int | None = None) -> None:
        svc = self.services.characters
        if op == "add":
            statement_id = svc.add_statement(name, text)
        elif op == "edit":
            svc.edit_statement(statement_id, text)
        elif op in ("enable", "disable"):
            svc.set_enabled(statement_id, op == "enable")
        elif op == "delete":
            svc.delete(name)
            self.app.call_from_thread(setattr, self.app, "character", None)
            name = None
        elif op == "restore":
            svc.restore(name)
        self.post_message(self.Changed(name, statement_id))

    def on_characters_screen_changed(self, message: Changed) -> None:
        self.reload(message.name, message.statement_id)


def _short_name(name: str) -> str:
    """'Kaito Renn' -> 'Kaito' (the statements repeat the full name); single names stay whole."""
    parts = name.split()
    return parts[0] if len(parts) > 1 and len(parts[0]) >= 3 else name


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
