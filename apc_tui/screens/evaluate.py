"""Evaluate screen (being built)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from .base import WorkbenchScreen


class EvaluateScreen(WorkbenchScreen):
    MODE = "evaluate"
    LABEL = "Evaluate"

    def compose_body(self) -> ComposeResult:
        yield Static("coming soon", classes="placeholder")
