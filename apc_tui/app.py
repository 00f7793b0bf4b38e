"""The Textual application (placeholder until the TUI issue lands)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static


class WorkbenchApp(App):
    TITLE = "APC Workbench"
    BINDINGS = [("q", "quit", "Quit")]

    def __init__(self, services):
        super().__init__()
        self.services = services

    def compose(self) -> ComposeResult:
        yield Header()
        names = ", ".join(self.services.characters.repo.names()) or "no characters"
        yield Static(f"Characters: {names}")
        yield Footer()


def make_app(services) -> WorkbenchApp:
    return WorkbenchApp(services)
