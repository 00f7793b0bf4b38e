"""Numbers as people read them, shared by the CLI and the TUI (plain text, no UI imports).

No "-0.00" (a value that rounds to zero prints as +0.00), probabilities print as ".42" or "1.00"
(never ".00" for 1), and a confidence interval from too few samples says so instead of printing
a degenerate "[-0.00, -0.00]".
"""

from __future__ import annotations

MIN_CI_N = 5
"""Fewer samples than this: the bootstrap interval says nothing useful; print `n too small`."""


def signed(value: float | None, digits: int = 2) -> str:
    """'+0.42', '-1.30', never '-0.00'; a dash for None."""
    if value is None:
        return "–"
    rounded = round(float(value), digits)
    if rounded == 0:
        rounded = 0.0  # drops the sign of -0.0 and of tiny negatives
    return f"{rounded:+.{digits}f}"


def fixed(value: float | None, digits: int = 2) -> str:
    """'0.42', '12.00', never '-0.00'; a dash for None."""
    if value is None:
        return "–"
    rounded = round(float(value), digits)
    return f"{0.0 if rounded == 0 else rounded:.{digits}f}"


def prob(value: float) -> str:
    """A probability in 3-4 characters: '.42', '.05', '1.00' (rounds to one), '.00'."""
    text = fixed(max(0.0, min(1.0, value)), 2)
    return text[1:] if text.startswith("0") else text


def ci_text(low: float, high: float, n: int, digits: int = 2) -> str:
    """'[-0.12, +0.40]', or 'n too small' below MIN_CI_N samples."""
    if n < MIN_CI_N:
        return f"n too small (n={n})"
    return f"[{signed(low, digits)}, {signed(high, digits)}]"


def margin_digits(a: float, b: float, digits: int = 2, most: int = 6) -> int:
    """Enough decimals to tell two different values apart (22.061 vs 22.058 -> 3)."""
    while digits < most and a != b and round(a, digits) == round(b, digits):
        digits += 1
    return digits
