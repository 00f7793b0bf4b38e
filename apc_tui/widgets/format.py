"""Number formatting shared by the screens (plain text, no markup)."""

from __future__ import annotations


from ..numbers import ci_text, fixed, prob, signed  # noqa: F401  (the screens format through these)


def fmt_signed(value: float | None, digits: int = 2) -> str:
    return signed(value, digits)


def bar(value: float, width: int = 10) -> str:
    """A horizontal bar for a probability in [0, 1] (eighth-block resolution)."""
    value = max(0.0, min(1.0, value))
    eighths = round(value * width * 8)
    full, rest = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[rest] if rest else ""
    return ("█" * full + partial).ljust(width)


def printable(text: str) -> str:
    """Text safe to draw: control, format and private-use characters become �.

    Model output (the tiny model's especially) can hold bytes that would move the cursor or
    corrupt the terminal over SSH.
    """
    import unicodedata

    return "".join(ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else "�" for ch in text)


def score_line(score: dict | None) -> str:
    """'APC 18.31/24 · ΔAPC +0.42' for a score dict (ChatService shape), or a dash."""
    if not score:
        return "not scored"
    return f"APC {fixed(score['apc'])}/{score['n_statements']} · ΔAPC {signed(score['delta_apc'])}"
