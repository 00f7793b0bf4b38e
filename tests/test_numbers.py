"""Numbers that do not mislead (no "-0.00", no ".00" for 1, CIs from tiny n, pairs told apart),
CLI tables aligned with CJK names, and the CLI progress line with count and ETA."""

from __future__ import annotations

import io

from apc_tui.commands.common import Progress, display_width, echo_table, eta_text
from apc_tui.commands.dpo import _apc_cell
from apc_tui.numbers import ci_text, fixed, prob, signed


def test_no_negative_zero_and_probabilities_read_right():
    assert [signed(v) for v in (-0.0004, -0.0, 0.0, 0.004, -0.42)] == ["+0.00", "+0.00", "+0.00", "+0.00", "-0.42"]
    assert fixed(-0.001) == "0.00" and signed(None) == "–"
    assert [prob(v) for v in (1.0, 0.999, 0.42, 0.05, 0.0)] == ["1.00", "1.00", ".42", ".05", ".00"]


def test_small_n_ci_says_so():
    assert ci_text(-0.0001, -0.0002, 2) == "n too small (n=2)"
    assert ci_text(-0.12, 0.4, 20) == "[-0.12, +0.40]"


def test_dpo_list_shows_enough_digits_and_the_margin():
    assert _apc_cell(22.0612, 22.0581) == "22.061 > 22.058 (+0.003)"  # not "22.06 > 22.06"
    assert _apc_cell(3.5, 1.25) == "3.50 > 1.25 (+2.25)"
    assert _apc_cell(None, None) == "" and _apc_cell(2.0, None) == "2.00"


def test_cli_table_aligns_cjk_names(capsys):
    echo_table([{"name": "顾明澜", "lang": "zh"}, {"name": "Kaito Renn", "lang": "en"}], [("name", "NAME"), ("lang", "LANG")])
    lines = capsys.readouterr().out.splitlines()
    cols = {display_width(line[: line.rindex(lang)]) for line, lang in zip(lines[2:], ("zh", "en"), strict=True)}
    assert len(cols) == 1, lines  # LANG starts at the same terminal column on both rows
    assert display_width("顾明澜") == 6


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_prints_count_and_eta_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out, clock = Tty(), _Clock()
    p = Progress("pairs", stream=out, clock=clock)
    p(0, 100, "sampling")
    clock.t += 30
    p(25, 100, "sampling")
    assert "25/100" in out.getvalue() and "ETA 1m30s" in out.getvalue()
    clock.t += 90
    p(100, 100)
    last = out.getvalue().rsplit("\r", 1)[-1]
    assert last.rstrip().endswith("done") and last.endswith("\n")


def test_progress_writes_lines_when_not_a_terminal():
    out, clock = io.StringIO(), _Clock()
    p = Progress("pairs", stream=out, clock=clock, every_s=10)
    p(1, 10)
    clock.t += 5
    p(2, 10)
    assert out.getvalue() == ""  # no line before every_s
    clock.t += 6
    p(3, 10)
    assert out.getvalue().startswith("pairs: 3/10 ( 30.0%) · ETA ") and out.getvalue().endswith("\n")
    assert eta_text(3725) == "ETA 1h02m" and eta_text(None) == "ETA ?"


def test_job_eta_from_start_time_and_progress():
    from datetime import datetime, timezone

    from apc_tui.numbers import job_eta

    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    job = {"status": "running", "progress": 0.25, "started_at": start.isoformat()}
    assert job_eta(job, now=start.timestamp() + 60) == "ETA 3m00s"
    assert job_eta({**job, "progress": 0.0}, now=start.timestamp() + 60) == "ETA ?"
    assert job_eta({**job, "status": "done"}) == ""


def test_foreground_job_tail_prints_progress_with_eta(services):
    import time as _time

    from apc_tui.commands.jobs import _LogTail
    from apc_tui.storage.jobs import JobRepo

    class Tty(io.StringIO):
        def isatty(self):
            return True

    repo = JobRepo(services.store)
    job = repo.create("pairs", {"character": "X"})
    repo.claim(job, 1)
    out = Tty()
    tail = _LogTail(services.jobs, job, Progress(f"job {job}", stream=out))
    tail.start()
    repo.heartbeat(job, 0.1, "10/100 queries")
    _time.sleep(1.2)
    repo.heartbeat(job, 0.5, "50/100 queries")
    _time.sleep(1.2)
    tail.stop()
    shown = out.getvalue()
    assert "50/100 queries" in shown and "ETA " in shown and "ETA ?" not in shown.rsplit("\r", 1)[-1], shown
