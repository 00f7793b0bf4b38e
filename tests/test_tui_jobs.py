"""Train and Evaluate screens on stored jobs and runs (no training here: see test_tui_flow)."""

from __future__ import annotations

import pytest

from tests.fixtures_tui import SIZE, seed_conversation, settle

pytestmark = pytest.mark.anyio


def cli_job(services, kind: str = "dpo", finish: bool = False) -> int:
    """A job as `apc dpo train` would leave it: running in another process, with metrics and a log."""
    from apc_tui.storage.jobs import JobRepo

    repo = JobRepo(services.store)
    job = repo.create(kind, {"character": "Kaito Renn"}, character_id=services.characters.repo.row("Kaito Renn")["id"])
    repo.claim(job, __import__("os").getpid())  # a live pid: the job is not declared dead
    repo.metrics_add(job, 1, {"loss": 0.69, "rewards/margins": 0.0})
    repo.metrics_add(job, 2, {"loss": 0.61, "rewards/margins": 0.2})
    repo.log(job, "started from the CLI")
    repo.heartbeat(job, 0.4, "step 2/5")
    if finish:
        repo.finish(job, "done")
    return job


async def test_train_shows_cli_jobs_with_log_plot_and_cancel(tui_services, make_tui):
    job = cli_job(tui_services)
    app = make_tui(tui_services, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = app.screen
        table = screen.query_one("#train-jobs")
        cells = [str(c) for c in table.get_row(str(job))]
        assert cells[:3] == [str(job), "dpo", "running"] and cells[3].startswith("40% · ETA ")  # count and ETA
        assert screen.query_one("#train-log").job_id == job and screen.query_one("#train-log").line_count == 1
        assert "step 2/5" in screen.query_one("#train-plot").title_text  # the plot follows the job
        table.focus()
        await pilot.press("c")
        await settle(pilot, app)
        assert tui_services.jobs.show(job)["cancel_requested"]
        # new log lines arrive with the next poll
        from apc_tui.storage.jobs import JobRepo

        JobRepo(tui_services.store).log(job, "stopping cleanly")
        screen.poll_jobs()
        await settle(pilot, app)
        assert screen.query_one("#train-log").line_count == 2


async def test_dpo_without_pairs_is_refused_before_queueing(tui_services, make_tui):
    app = make_tui(tui_services, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("s")
        await settle(pilot, app)
        assert any("no DPO pairs yet" in n.message for n in app._notifications if n.severity == "error")
        assert tui_services.jobs.list() == []


async def test_train_form_checks_settings_and_switches_to_eu(tui_services, make_tui):
    seed_conversation(tui_services)
    app = make_tui(tui_services, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = app.screen
        assert "2 DPO pairs (apc 2)" in str(screen.query_one("#pairs-summary").render())
        assert screen.query_one("#train-name").value == "kaito-renn-dpo-1"
        screen.query_one("#form-dpo #set-epochs").value = "lots"
        await pilot.press("s")
        await settle(pilot, app)
        assert any("epochs = 'lots'" in n.message for n in app._notifications if n.severity == "error")
        screen.query_one("#train-model").value = "openai:gpt-4o"
        screen.query_one("#form-dpo #set-epochs").value = "1"
        await pilot.press("s", "y")
        await settle(pilot, app)
        assert any("cannot be fine-tuned" in n.message for n in app._notifications)
        assert tui_services.jobs.list() == []
        await pilot.press("k")
        await pilot.pause()
        assert screen.query_one("#form-eu").display and not screen.query_one("#form-dpo").display
        assert screen.query_one("#train-name").value == "kaito-renn-eu-1"


async def test_evaluate_shows_results_agreement_and_refuses_bad_input(tui_services, make_tui):
    from tests.test_tui_snapshots import seed_eval

    seeded = seed_conversation(tui_services)
    a, b = seeded["turns"][0]["candidates"]
    tui_services.training.record_preference(a, b, "a", annotator="tester")
    seed_eval(tui_services)
    app = make_tui(tui_services, start_mode="evaluate")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = app.screen
        rows = screen.query_one("#eval-results")
        assert [str(rows.get_row_at(i)[0]) + "/" + str(rows.get_row_at(i)[1]) for i in range(rows.row_count)] == [
            "none/base", "none/adapter", "lcm/base", "lcm/adapter", "rag/base", "rag/adapter"]  # fmt: skip
        assert "APC agrees on 100% of 1" in str(screen.query_one("#eval-agreement").render())
        for m in ("none", "lcm", "rag", "eu"):
            screen.query_one(f"#eval-m-{m}").value = False
        await pilot.press("s", "y")
        await settle(pilot, app)
        assert any("--methods" in n.message for n in app._notifications if n.severity == "error")
        assert tui_services.jobs.list(kind="eval") == []
