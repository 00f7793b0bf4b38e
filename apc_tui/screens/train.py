"""Train screen (being built)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from .base import WorkbenchScreen


class TrainScreen(WorkbenchScreen):
    MODE = "train"
    LABEL = "Train"

    def compose_body(self) -> ComposeResult:
        yield Static("coming soon", classes="placeholder")
