"""Checked values for engine settings: numbers that are finite, of the right type and in range.

One function, `number`, used by the settings dataclasses' `__post_init__` (LoraSettings,
GenerationParams) and by the app's boundary validation (`apc_tui/validation.py`), so a value is
refused with the same one-line message whether it came from a CLI flag, a TUI form or a config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.errors import InputError


@dataclass(frozen=True)
class Bounds:
    """The range of one numeric setting: lo/hi inclusive unless lo_open; `none_ok` lets None through."""

    kind: type = float  # int | float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    none_ok: bool = False
    special: tuple = ()  # values allowed outside the range, e.g. max_steps -1 ("no cap")
    example: str = ""  # a good value, named in the fix

    def describe(self) -> str:
        kind = "a whole number" if self.kind is int else "a finite number"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_fmt(self.lo)}")
        if self.hi is not None:
            parts.append(f"<= {_fmt(self.hi)}")
        text = f"{kind} {' and '.join(parts)}".strip()
        if self.special:
            text += " (or " + " / ".join(_fmt(s) for s in self.special) + ")"
        return text


def _fmt(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def number(name: str, value, bounds: Bounds):
    """`value` checked against `bounds` (ints given as floats like 3.0 are accepted as ints);
    raises InputError('<name> <value>: must be ...; e.g. ...')."""
    if value is None:
        if bounds.none_ok:
            return None
        raise InputError(f"{name}: a value is required; give {bounds.describe()}" + _eg(bounds))
    if value in bounds.special and not isinstance(value, bool):
        return value
    bad = f"{name} {value!r}: must be {bounds.describe()}; " + (f"e.g. {bounds.example}" if bounds.example else "pick a value in range")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(bad)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(bad)
    if bounds.kind is int:
        if isinstance(value, float):
            if value != int(value):
                raise InputError(bad)
            value = int(value)
    else:
        value = float(value)
    if bounds.lo is not None and (value < bounds.lo or (bounds.lo_open and value == bounds.lo)):
        raise InputError(bad)
    if bounds.hi is not None and value > bounds.hi:
        raise InputError(bad)
    return value


def _eg(bounds: Bounds) -> str:
    return f", e.g. {bounds.example}" if bounds.example else ""


def check_fields(obj, prefix: str = "") -> None:
    """Check every dataclass field of `obj` that declares `bounds` in its metadata."""
    from dataclasses import fields

    for f in fields(obj):
        bounds = f.metadata.get("bounds")
        if bounds is not None:
            object.__setattr__(obj, f.name, number(prefix + f.name, getattr(obj, f.name), bounds))
