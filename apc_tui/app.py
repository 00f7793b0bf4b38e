"""The Textual workbench: five screens (modes) over the services, keyboard first.

Nothing heavy is imported here: screens import their services lazily through `Services`, and the
discriminators / models load inside workers the first time a screen needs them.
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from engine.errors import ApcError

from .screens import SCREENS_BY_MODE, screen_class

MODE_KEYS = {"characters": "f2", "chat": "f3", "annotate": "f4", "train": "f5", "evaluate": "f6"}


class WorkbenchApp(App):
    """The APC Workbench. `services` is the one `Services` object; screens receive it."""

    TITLE = "APC Workbench"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        *(
            Binding(key, f"app.go('{mode}')", mode.capitalize(), key_display=key.upper(), priority=True, show=False)
            for mode, key in MODE_KEYS.items()
        ),
        Binding("f1", "app.help", "Help", key_display="F1", show=False),
        Binding("question_mark", "app.help", "Help", show=False),
        Binding("ctrl+q", "app.quit", "Quit", priority=True, show=False),
    ]

    character: reactive[str | None] = reactive(None)
    """The character every screen works on (chosen on the Characters screen)."""
    annotator: reactive[str] = reactive("")
    """Who labels (settings.annotator; editable on the Annotate screen, used by Chat votes too)."""

    def __init__(self, services, *, start_mode: str = "characters", seed: int | None = None):
        """`seed` fixes the annotation queue's left/right order (tests, snapshots)."""
        super().__init__()
        self.services = services
        self.start_mode = start_mode
        self.set_reactive(WorkbenchApp.annotator, services.settings.annotator)
        options = {"annotate": {"seed": seed}}
        for mode in SCREENS_BY_MODE:
            self.add_mode(mode, lambda mode=mode: screen_class(mode)(self.services, **options.get(mode, {})))

    def on_mount(self) -> None:
        names = self.services.characters.repo.names()
        if names and self.character is None:
            self.character = names[0]
        self.switch_mode(self.start_mode)

    # -- navigation -------------------------------------------------------------------------
    def action_go(self, mode: str) -> None:
        if mode != self.current_mode:
            self.switch_mode(mode)

    def open_chat(self, name: str) -> None:
        self.character = name
        self.action_go("chat")

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) offers every screen's real commands, each with its key: run
        from anywhere, it opens that screen first. Plus Textual's own (theme, quit, ...)."""
        yield from super().get_system_commands(screen)
        for mode in SCREENS_BY_MODE:
            cls = screen_class(mode)
            label, key = cls.LABEL, MODE_KEYS[mode].upper()
            if mode != self.current_mode:
                yield SystemCommand(f"Go to {label}", f"{key}", lambda mode=mode: self.action_go(mode))
            seen = set()
            for b in cls.BINDINGS:
                if not isinstance(b, Binding) or not b.description or b.description in seen or b.key in ("left", "right"):
                    continue
                seen.add(b.description)
                keys = b.key_display or b.key.split(",")[0]
                yield SystemCommand(f"{label}: {b.tooltip or b.description}", f"key {keys} on {label} ({key})",
                                    lambda mode=mode, action=b.action: self.run_on(mode, action))  # fmt: skip

    def run_on(self, mode: str, action: str) -> None:
        """Run a screen's action, opening its screen first when another one is shown."""
        if mode != self.current_mode:
            self.switch_mode(mode)
            self.call_after_refresh(lambda: self.run_action(action, self.screen))
        else:
            self.run_action(action, self.screen)

    # -- failures -------------------------------------------------------------------------
    def report_failure(self, error: BaseException, action: str = "") -> None:
        """Turn a failure into a notification that says what to do; never a crash."""
        self.log.error("".join(traceback.format_exception(error)))
        self.notify(failure_message(error), title=f"{action} failed" if action else "Failed", severity="error", timeout=12)


def failure_message(error: BaseException) -> str:
    """One line: what went wrong and the fix (ApcError messages already carry their fix)."""
    if isinstance(error, ApcError):
        return str(error)
    if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
        return f"the database is busy ({error}); a job may be writing: try again in a moment"
    if isinstance(error, ModuleNotFoundError):
        return f"{error}; install the app with its dependencies: `make setup` (or pip install -e .)"
    if isinstance(error, MemoryError | RuntimeError) and "memory" in str(error).lower():
        return f"out of memory ({error}); use a smaller model, device=cpu, or fewer candidates"
    return f"{type(error).__name__}: {error} (unexpected: please report it with `apc doctor --json`)"


def make_app(services, **options) -> WorkbenchApp:
    return WorkbenchApp(services, **options)
