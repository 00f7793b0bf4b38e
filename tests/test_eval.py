"""Evaluation runs (ΔAPC per method and variant), agreement statistics, the pipeline."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from tests.fixtures_dpo import CHARACTER, EVAL_QUERIES, STATEMENTS, TRAIN_QUERIES, store_pairs, toy_pairs


def test_eval_numbers_equal_the_scorers(scripted_services, keyword_scorer):
    svc = scripted_services
    svc.scripted.script = {EVAL_QUERIES[0]: ["I kept the lighthouse for 31 years."], EVAL_QUERIES[1]: ["I never had a sister."]}
    config, cid = svc.evaluation.eval_config(CHARACTER, "scripted", ["none", "lcm", "rag"], k=2)
    row = svc.jobs.start("eval", config, character_id=cid)
    assert row["status"] == "done", row["error"]
    run_id = row["artifacts"]["run_id"]
    assert row["artifacts"]["query_origin"] == "eval"
    samples = svc.evaluation.evals.samples(run_id)
    assert len(samples) == 3 * len(EVAL_QUERIES)
    for s in samples:
        (score,) = keyword_scorer.score(CHARACTER, STATEMENTS, s["query"], [s["response"]])
        assert (s["apc"], s["delta_apc"], s["active"], s["passive"]) == pytest.approx(
            (score.apc, score.delta_apc, score.active, score.passive))
    report = svc.evaluation.report(run_id)
    assert [(r["method"], r["variant"]) for r in report["results"]] == [("lcm", "base"), ("none", "base"), ("rag", "base")]
    for r in report["results"]:
        mine = [s for s in samples if s["method"] == r["method"]]
        assert r["n"] == len(EVAL_QUERIES)
        assert r["delta_apc_mean"] == pytest.approx(sum(s["delta_apc"] for s in mine) / len(mine))
        assert r["apc_mean"] == pytest.approx(sum(s["apc"] for s in mine) / len(mine))
        assert r["ci_low"] <= r["delta_apc_mean"] <= r["ci_high"]
    # the faithful reply's ΔAPC is positive, the contradicting one's negative
    by_query = {s["query"]: s["delta_apc"] for s in samples if s["method"] == "none"}
    assert by_query[EVAL_QUERIES[0]] > 0 > by_query[EVAL_QUERIES[1]]


def test_eval_falls_back_to_train_then_statement_queries(scripted_services):
    svc = scripted_services
    svc.store.db.execute("DELETE FROM queries WHERE split = 'eval'")
    config, cid = svc.evaluation.eval_config(CHARACTER, "scripted", ["none"], queries=2)
    row = svc.jobs.start("eval", config, character_id=cid)
    assert row["artifacts"]["query_origin"] == "train" and row["artifacts"]["results"][0]["n"] == 2
    assert any("no eval-split queries" in line["message"] for line in svc.jobs.logs(row["id"]))
    svc.store.db.execute("DELETE FROM queries")
    row = svc.jobs.start("eval", config, character_id=cid)
    assert row["artifacts"]["query_origin"] == "statements"
    assert {s["query"] for s in svc.evaluation.evals.samples(row["artifacts"]["run_id"])} == {
        f"Is this true about you: {s}" for s in STATEMENTS[:2]}


def test_eval_config_refuses_bad_input(dpo_services):
    svc = dpo_services
    with pytest.raises(InputError, match="--methods"):
        svc.evaluation.eval_config(CHARACTER, "tiny", ["none", "cot"])
    with pytest.raises(InputError, match="EU adapter"):
        svc.evaluation.eval_config(CHARACTER, "tiny", ["eu"])
    with pytest.raises(InputError, match="no adapter named"):
        svc.evaluation.eval_config(CHARACTER, "tiny", ["none"], adapter="missing")


@pytest.mark.slow
def test_eval_base_adapter_and_eu_with_tiny_models(dpo_services, tiny_dir, one_thread_torch):
    """Real generation: base vs base+DPO adapter for rag, and eu = the none prompt on base + EU adapter."""
    svc = dpo_services
    store_pairs(svc, svc.character_id, toy_pairs(2))
    quick = {"max_steps": 1, "lora_r": 4, "grad_accum": 1, "max_length": 96, "device": "cpu"}
    for kind, name in (("dpo", "m-dpo"), ("eu", "m-eu")):
        config, cid = svc.finetune.train_config(kind, CHARACTER, "tiny", name, quick)
        row = svc.jobs.start(kind, config, character_id=cid)
        assert row["status"] == "done", row["error"]
    eu = svc.finetune.adapters.get("m-eu")
    assert eu["kind"] == "eu" and '"dialogue_origin": "statement"' in eu["metrics_json"]  # built from queries + statements
    from apc_tui.storage.adapters import adapter_to_dict
    from apc_tui.storage.pairs import PairRepo
    from engine.eu_train import EuSettings, dialogues_sha256, eu_dialogues
    from tests.fixtures_dpo import assert_model_card

    character, repo = svc.characters.get(CHARACTER), PairRepo(svc.store)
    dialogues = eu_dialogues(character, repo.entailed_replies(character.id), repo.query_statements(character.id))
    eu_lineage = adapter_to_dict(eu)["lineage"]
    assert eu_lineage["data"]["count"] == len(dialogues) and eu_lineage["data"]["kind"] == "dialogues"
    assert_model_card(eu["path"], eu_lineage, "eu", tiny_dir, dialogues_sha256(dialogues), EuSettings)
    config, cid = svc.evaluation.eval_config(CHARACTER, "tiny", ["rag", "eu"], adapter="m-dpo", k=2, max_new_tokens=6, device="cpu")
    row = svc.jobs.start("eval", config, character_id=cid)
    assert row["status"] == "done", row["error"]
    results = {(r["method"], r["variant"]): r for r in row["artifacts"]["results"]}
    assert set(results) == {("rag", "base"), ("rag", "adapter"), ("eu", "base")}
    assert all(r["n"] == len(EVAL_QUERIES) for r in results.values())
    assert any("cannot be stacked" in n for n in row["artifacts"]["notes"])
    run = svc.evaluation.evals.run(row["artifacts"]["run_id"])
    assert run["adapter_id"] == svc.finetune.adapters.get("m-dpo")["id"]


def test_kappas_match_known_values():
    from engine.evaluate import cohen_kappa, fleiss_kappa, mean_ci

    assert cohen_kappa(list("aabb"), list("aabb")) == pytest.approx(1.0)
    assert cohen_kappa(list("abab"), list("baba")) == pytest.approx(-1.0)
    # 50 items: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4 (the textbook example)
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # Fleiss (1971) style example from the literature: 10 items, 14 raters, 5 categories -> 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]  # fmt: skip
    items = [[str(c) for c, count in enumerate(row) for _ in range(count)] for row in table]
    assert fleiss_kappa(items) == pytest.approx(0.210, abs=1e-3)
    mean, low, high = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and low < mean < high and mean_ci([1.0, 2.0, 3.0, 4.0]) == (mean, low, high)  # fixed seed


def test_agreement_counts_apc_and_annotators(dpo_services, keyword_scorer, branch, cli):
    svc = dpo_services
    good, bad = "I have a sister, Anne.", "I never had a sister."
    pairs = [branch(svc, svc.character_id, [good, bad], scorer=keyword_scorer) for _ in range(3)]
    # ann1 agrees with APC on all; ann2 on the first two; ann3 disagrees on the first
    for (a, b), (c1, c2, c3) in zip(pairs, [("a", "a", "b"), ("a", "a", "a"), ("a", "b", "a")], strict=True):
        svc.training.record_preference(a, b, c1, annotator="ann1")
        svc.training.record_preference(b, a, {"a": "b", "b": "a"}[c2], annotator="ann2")  # shown swapped: same meaning
        svc.training.record_preference(a, b, c3, annotator="ann3")
    out = svc.evaluation.agreement(CHARACTER)
    assert out["items"] == 3 and out["annotators"] == ["ann1", "ann2", "ann3"] and out["apc_compared"] == 9
    assert out["apc_agreement"] == pytest.approx(7 / 9)
    assert out["kappa_items"] == 3 and out["fleiss_kappa"] is not None
    assert out["pairwise_cohen"]["ann1|ann2"] == pytest.approx(0.0)  # agreement no better than chance
    r = cli("agreement", "--character", CHARACTER, "--json")
    assert r.code == 0 and r.json()["apc_agreement"] == pytest.approx(7 / 9)


def test_agreement_two_annotators_cohen(dpo_services, keyword_scorer, branch):
    svc = dpo_services
    items = [branch(svc, svc.character_id, ["I have a sister, Anne.", "What a lovely evening."], scorer=keyword_scorer) for _ in range(4)]
    for (a, b), (x, y) in zip(items, [("a", "a"), ("b", "b"), ("a", "b"), ("tie", "tie")], strict=True):
        svc.training.record_preference(a, b, x, annotator="x")
        svc.training.record_preference(a, b, y, annotator="y")
    out = svc.evaluation.agreement()
    from engine.evaluate import cohen_kappa

    assert out["cohen_kappa"] == pytest.approx(cohen_kappa(["first", "second", "first", "tie"], ["first", "second", "second", "tie"]))
    assert out["kappa_items"] == 4


@pytest.mark.slow
def test_pipeline_runs_stages_as_jobs_and_skips_them_on_rerun(scripted_services, tiny_dir, one_thread_torch, monkeypatch):
    from apc_tui.services.pipeline import pipeline_config

    svc = scripted_services
    synth_calls = []
    monkeypatch.setattr(svc.synthesis, "run_stage", lambda character, stage, teacher, **kw: synth_calls.append((stage, teacher)) or {"stage": stage})
    config, cid = pipeline_config(svc, CHARACTER, "tiny", teacher="openai:teacher", skip_synth=False, discriminators=False, k=2,
                                  dpo={"max_steps": 1, "lora_r": 4, "grad_accum": 1, "max_length": 1024}, eval_methods=("none", "rag"),
                                  max_new_tokens=8)  # fmt: skip
    row = svc.jobs.start("pipeline", config, character_id=cid)
    assert row["status"] == "done", row["error"]
    assert synth_calls == [(s, "openai:teacher") for s in ("statements", "queries", "relevance", "nli")]
    children = svc.jobs.show(row["id"])["children"]
    assert [(c["kind"], c["status"]) for c in children] == [("synth", "done"), ("pairs", "done"), ("dpo", "done"), ("eval", "done")]
    assert all(c["parent_job_id"] == row["id"] for c in children)
    assert row["artifacts"]["pairs"]["pairs_kept"] == len(TRAIN_QUERIES)
    assert {(r["method"], r["variant"]) for r in row["artifacts"]["eval"]["results"]} == {
        ("none", "base"), ("none", "adapter"), ("rag", "base"), ("rag", "adapter")}
    again = svc.jobs.start("pipeline", config, character_id=cid)  # rerun: every stage is found done
    assert again["status"] == "done" and svc.jobs.show(again["id"])["children"] == []
    assert sum("skipped" in line["message"] for line in svc.jobs.logs(again["id"])) == 4
    assert again["artifacts"]["eval"]["run_id"] == row["artifacts"]["eval"]["run_id"] and len(synth_calls) == 4


def test_disc_train_stage_writes_the_teacher_labels_and_returns_a_profile(dpo_services, monkeypatch):
    from types import SimpleNamespace

    from apc_tui.storage import now

    svc = dpo_services
    cid = svc.character_id
    stmt = {r["text"]: r["id"] for r in svc.store.db.query("SELECT id, text FROM statements WHERE character_id = ?", [cid])}
    queries = [r["id"] for r in svc.store.db.query("SELECT id FROM queries WHERE character_id = ?", [cid])]
    with svc.store.transaction() as db:
        for i in range(12):
            s_id, q_id = list(stmt.values())[i % 3], queries[i % len(queries)]
            db["teacher_labels"].insert({"task": "relevance", "character_id": cid, "statement_id": s_id, "query_id": q_id,
                                         "response": "", "label": "yes", "teacher": "t", "created_at": now()})  # fmt: skip
            db["teacher_labels"].insert({"task": "nli", "character_id": cid, "statement_id": s_id, "query_id": q_id,
                                         "response": f"reply {i}", "intended": "entailed", "label": "entailed", "teacher": "t", "created_at": now()})  # fmt: skip
    seen = []

    def fake_train(config, progress=None, stop=None):
        rows = [line for line in config.data.read_text().splitlines() if line]
        seen.append((config.task, len(rows), '"response"' in rows[0]))
        return SimpleNamespace(out=config.out, metrics={"accuracy": 1.0})

    monkeypatch.setattr(svc.scoring, "train_discriminator", fake_train)
    row = svc.jobs.start("disc_train", {"character": CHARACTER, "device": "cpu"}, character_id=cid)
    assert row["status"] == "done", row["error"]
    assert seen == [("relevance", 12, False), ("nli", 12, True)]
    assert row["artifacts"]["profile"].startswith("rel=") and ",nli=" in row["artifacts"]["profile"]
