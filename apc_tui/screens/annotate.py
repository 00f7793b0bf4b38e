"""Annotate screen (being built)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from .base import WorkbenchScreen


class AnnotateScreen(WorkbenchScreen):
    MODE = "annotate"
    LABEL = "Annotate"

    def compose_body(self) -> ComposeResult:
        yield Static("coming soon", classes="placeholder")
