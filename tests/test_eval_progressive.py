"""An evaluation stores each (method, variant) row as soon as it is done, so the Evaluate screen
fills its table while the run goes on."""

from __future__ import annotations

from tests.fixtures_dpo import CHARACTER


def test_each_variant_row_is_stored_when_it_finishes(scripted_services):
    svc = scripted_services
    seen = []  # result rows stored when each reply is asked for
    generate = svc.scripted.generate

    def counting(messages, n=1, params=None):
        runs = svc.evaluation.runs(CHARACTER)
        seen.append(len(svc.evaluation.evals.results(runs[0]["id"])) if runs else 0)
        return generate(messages, n, params)

    svc.scripted.generate = counting
    config, cid = svc.evaluation.eval_config(CHARACTER, "scripted", ["none", "lcm", "rag"], k=2)
    row = svc.jobs.start("eval", config, character_id=cid)
    assert row["status"] == "done", row["error"]
    assert sorted(set(seen)) == [0, 1, 2]  # lcm ran with none's row stored, rag with two rows
    assert len(svc.evaluation.report(row["artifacts"]["run_id"])["results"]) == 3
