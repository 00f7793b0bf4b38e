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


def eta_text(seconds: float | None) -> str:
    """'ETA 42s', 'ETA 3m05s', 'ETA 1h12m'; 'ETA ?' before the rate is known."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "ETA ?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"ETA {seconds}s"
    if seconds < 3600:
        return f"ETA {seconds // 60}m{seconds % 60:02d}s"
    return f"ETA {seconds // 3600}h{seconds % 3600 // 60:02d}m"


def job_eta(job: dict, now: float | None = None) -> str:
    """A running job's ETA from its start time and progress fraction ('' when not running)."""
    from datetime import datetime, timezone

    progress = job.get("progress") or 0.0
    if job.get("status") != "running" or not job.get("started_at"):
        return ""
    if progress <= 0:
        return "ETA ?"
    started = datetime.fromisoformat(job["started_at"]).timestamp()
    elapsed = (now if now is not None else datetime.now(timezone.utc).timestamp()) - started
    return eta_text(elapsed * (1 - progress) / progress)
