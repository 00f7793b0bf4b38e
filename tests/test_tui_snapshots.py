"""The look of the main screens at fixed sizes, on deterministic data (no model, no timestamps).

Update after an intended change: .venv/bin/python -m pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from tests.fixtures_tui import seed_conversation

SMALL, LARGE = (80, 24), (120, 36)


async def settled(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def seed_job(services) -> int:
    """A finished DPO job with metrics and a log at fixed times."""
    from apc_tui.storage.jobs import JobRepo

    repo = JobRepo(services.store)
    cid = services.characters.repo.row("Kaito Renn")["id"]
    job = repo.create("dpo", {"character": "Kaito Renn", "model": "tiny", "name": "kaito-renn-dpo-1"}, character_id=cid)
    repo.claim(job, 1)
    for step in range(1, 21):
        repo.metrics_add(job, step, {"loss": 0.69 * 0.93**step, "rewards/margins": 0.05 * step})
    for message in ("started dpo job", "DPO on 12 pairs, base tiny, beta 0.1, lr 0.0002", "adapter 'kaito-renn-dpo-1' registered", "done"):
        repo.log(job, message)
    repo.heartbeat(job, 1.0, "step 20/20")
    repo.finish(job, "done")
    with services.store.transaction() as db:
        db.execute("UPDATE job_logs SET ts = '2025-01-01T12:00:00.000+00:00'")
    return job


def seed_eval(services) -> None:
    from apc_tui.storage.evals import EvalRepo

    repo = EvalRepo(services.store)
    cid = services.characters.repo.row("Kaito Renn")["id"]
    run = repo.create_run(character_id=cid, model_spec="tiny", adapter_id=None, profile="test", config={"adapter": "kaito-renn-dpo-1"}, job_id=None)
    rows = []
    for method, base, tuned in (("none", -0.42, -0.10), ("lcm", 0.35, 0.61), ("rag", 0.52, 0.88)):
        for variant, value in (("base", base), ("adapter", tuned)):
            rows.append(dict(method=method, variant=variant, n=20, delta_apc_mean=value, ci_low=value - 0.2, ci_high=value + 0.2,
                             active_mean=value + 1.0, passive_mean=1.0, apc_mean=12.0 + value))  # fmt: skip
    repo.save_results(run, rows)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x36"])
def test_characters(snap_compare, tui_services, make_tui, size):
    assert snap_compare(make_tui(tui_services), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x36"])
def test_chat(snap_compare, tui_services, make_tui, size):
    seed_conversation(tui_services)
    assert snap_compare(make_tui(tui_services, start_mode="chat"), terminal_size=size, run_before=settled)


def test_chat_after_vote(snap_compare, tui_services, make_tui):
    seed_conversation(tui_services)
    assert snap_compare(make_tui(tui_services, start_mode="chat"), terminal_size=LARGE, press=["2"], run_before=settled)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x36"])
def test_annotate_blind(snap_compare, tui_services, make_tui, size):
    seed_conversation(tui_services)
    assert snap_compare(make_tui(tui_services, start_mode="annotate", seed=0), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x36"])
def test_train(snap_compare, tui_services, make_tui, size):
    seed_conversation(tui_services)
    tui_services.training.sync(tui_services.characters.repo.row("Kaito Renn")["id"])
    seed_job(tui_services)
    assert snap_compare(make_tui(tui_services, start_mode="train"), terminal_size=size, run_before=settled)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x36"])
def test_evaluate(snap_compare, tui_services, make_tui, size):
    seed_eval(tui_services)
    assert snap_compare(make_tui(tui_services, start_mode="evaluate"), terminal_size=size, run_before=settled)


def test_evaluate_chart_at_80x24(snap_compare, tui_services, make_tui):
    seed_eval(tui_services)
    assert snap_compare(make_tui(tui_services, start_mode="evaluate"), terminal_size=SMALL, press=["g"], run_before=settled)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x36"])
def test_help(snap_compare, tui_services, make_tui, size):
    assert snap_compare(make_tui(tui_services), terminal_size=size, press=["f1"], run_before=settled)


def test_confirm_build_pairs_at_80x24(snap_compare, tui_services, make_tui):
    assert snap_compare(make_tui(tui_services, start_mode="train"), terminal_size=SMALL, press=["b"], run_before=settled)
