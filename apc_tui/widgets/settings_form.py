"""A form generated from an engine settings dataclass (DpoSettings, EuSettings): one row per field,
default values and the field's help line as tooltip, so the TUI and the engine never drift apart."""

from __future__ import annotations

from dataclasses import MISSING, fields

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Checkbox, Input, Label

from engine.errors import InputError


def _kind(f) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return t.replace(" ", "")


class SettingsForm(Vertical):
    """Rows for `names` (in that order) of the dataclass `cls`; `values()` parses and checks them."""

    def __init__(self, cls, names: tuple[str, ...], *, id: str | None = None, overrides: dict | None = None):
        super().__init__(id=id, classes="settings-form")
        known = {f.name: f for f in fields(cls)}
        self.cls = cls
        self.fields = [known[n] for n in names if n in known]
        self.overrides = overrides or {}

    def compose(self) -> ComposeResult:
        for f in self.fields:
            default = self.overrides.get(f.name, f.default if f.default is not MISSING else "")
            help_text = f.metadata.get("help", "")
            with Horizontal(classes="form-row"):
                if _kind(f) == "bool":
                    yield Checkbox(f.name, bool(default), id=f"set-{f.name}", compact=True, tooltip=help_text)
                else:
                    yield Label(f.name, classes="form-label")
                    value = "" if default is None else str(default)
                    yield Input(value, id=f"set-{f.name}", compact=True, tooltip=help_text, placeholder=help_text[:40])

    def values(self) -> dict:
        out = {}
        for f in self.fields:
            widget = self.query_one(f"#set-{f.name}")
            kind = _kind(f)
            if kind == "bool":
                out[f.name] = bool(widget.value)
                continue
            text = widget.value.strip()
            if text == "" and "None" in kind:
                out[f.name] = None
                continue
            try:
                if kind.startswith("int"):
                    out[f.name] = int(text)
                elif kind.startswith("float"):
                    out[f.name] = float(text)
                else:
                    out[f.name] = text
            except ValueError:
                raise InputError(f"{f.name} = {text!r}: expected {kind.split('|')[0]} ({f.metadata.get('help', '')})") from None
        return out
