"""Teach the scorer: human labels (CLI), discriminator versions per character, scores recording
their version, training from labels (embedded LoRA, a tiny full checkpoint, judge few-shot)."""

from __future__ import annotations

import json

import pytest

from engine.errors import InputError

MAELLE, KAITO = "Maelle Kervran", "Kaito Renn"
AGE = "Maelle Kervran is 78 years old."


def invoke(*args: str):
    from typer.testing import CliRunner

    from apc_tui.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def demo(services):
    services.characters.import_demo([p for p in services.characters.demo_files() if p.stem in ("maelle_kervran", "kaito_renn")])
    return services


def _statement_id(services, name: str, text: str) -> int:
    return next(s.id for s in services.characters.repo.get(name).statements if s.text == text)


def _teacher_rows(character: str, task: str, n: int) -> list[dict]:
    from engine.resources import data_path

    rows = []
    with open(data_path("teacher", f"{task}.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["character"] == character:
                rows.append(row)
                if len(rows) == n:
                    break
    return rows


def _write(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8")


# -- labels -----------------------------------------------------------------------------------------
def test_labels_add_list_export_import(demo, tmp_path):
    sid = _statement_id(demo, MAELLE, AGE)
    r = invoke("labels", "add", "-c", MAELLE, "--task", "relevance", "--statement", AGE, "--query", "How old are you?", "--label", "yes", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["statement_id"] == sid
    r = invoke("labels", "add", "-c", MAELLE, "--task", "nli", "--statement", str(sid), "--query", "How old are you?",
               "--response", "I'm eighty-seven.", "--label", "contradict")  # fmt: skip
    assert r.exit_code == 0, r.output
    listed = json.loads(invoke("labels", "list", "-c", MAELLE, "--json").output)
    assert [(x["task"], x["label"], x["statement"], x["source"]) for x in listed] == [
        ("relevance", "yes", AGE, "cli"), ("nli", "contradicted", AGE, "cli")]  # fmt: skip
    assert listed[1]["response"] == "I'm eighty-seven." and listed[0]["response"] == ""
    out = tmp_path / "labels.jsonl"
    assert invoke("labels", "export", "-c", MAELLE, "--out", str(out)).exit_code == 0
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert exported[1] == {"task": "nli", "character": MAELLE, "statement": AGE, "query": "How old are you?",
                           "response": "I'm eighty-seven.", "label": "contradicted"}  # fmt: skip
    assert "response" not in exported[0]
    # re-importing the export changes nothing (same label, same annotator: replaced, not duplicated)
    r = invoke("labels", "import", "-c", MAELLE, str(out), "--json")
    assert json.loads(r.output)["imported"] == 2
    assert len(json.loads(invoke("labels", "list", "-c", MAELLE, "--json").output)) == 2
    # a relabel replaces the earlier verdict
    invoke("labels", "add", "-c", MAELLE, "--task", "relevance", "--statement", AGE, "--query", "How old are you?", "--label", "no")
    assert [x["label"] for x in json.loads(invoke("labels", "list", "-c", MAELLE, "--task", "relevance", "--json").output)] == ["no"]
    assert json.loads(invoke("labels", "list", "-c", KAITO, "--json").output) == []


def test_labels_import_refuses_bad_rows_with_line_numbers(demo, tmp_path):
    good = {"statement": AGE, "query": "How old are you?", "label": "yes"}
    path = tmp_path / "bad.jsonl"
    _write(path, [good, {**good, "label": "maybe"}, "", "{not json", {"statement": AGE, "label": "yes"},
                  {**good, "response": "Seventy-eight.", "label": "entailed"}, {**good, "character": KAITO}])  # fmt: skip
    with pytest.raises(InputError) as err:
        invoke("labels", "import", "-c", MAELLE, str(path))
    msg = str(err.value)
    assert "4 bad row(s), nothing imported" in msg
    for line in (2, 4, 5, 7):
        assert f"bad.jsonl:{line}:" in msg
    assert "bad.jsonl:6:" not in msg and "bad.jsonl:1:" not in msg
    assert demo.teach.list_labels(MAELLE) == []
    with pytest.raises(InputError, match="needs the response"):
        invoke("labels", "add", "-c", MAELLE, "--task", "nli", "--statement", AGE, "--query", "q", "--label", "neutral")
    with pytest.raises(InputError, match="not one of this character's"):
        invoke("labels", "add", "-c", MAELLE, "--task", "relevance", "--statement", "999999", "--query", "q", "--label", "yes")


def test_labels_import_error_is_one_line_and_exit_2(cli, tmp_path):
    path = tmp_path / "bad.jsonl"
    _write(path, [{"statement": "x", "query": "q", "label": "perhaps"}])
    assert cli("characters", "demo", "maelle_kervran").code == 0
    r = cli("labels", "import", "-c", MAELLE, str(path))
    assert r.code == 2
    assert r.err.startswith("error: 1 bad row(s), nothing imported: ") and "bad.jsonl:1: label 'perhaps'" in r.err
    assert r.err.count("\n") == 1


# -- versions -----------------------------------------------------------------------------------------
def _register(services, character: str, name: str, rel, nli, profile: str) -> int:
    cid = services.characters.repo.row(character)["id"]
    return services.teach.versions.add(cid, name, profile=profile, parent="default", kind="lora", rel_path=str(rel),
                                       nli_path=str(nli), labels_hash="h", n_labels=0, recipe={}, metrics={})  # fmt: skip


def test_versions_use_and_scores_record_their_version(db_path, monkeypatch, tiny_models, tiny_profile):
    from apc_tui.config import load_settings
    from apc_tui.factory import build_services

    monkeypatch.setenv("APC_PROFILE", tiny_profile)
    monkeypatch.setenv("APC_DEVICE", "cpu")
    services = build_services(load_settings())
    services.characters.import_demo([p for p in services.characters.demo_files() if p.stem in ("maelle_kervran", "kaito_renn")])
    other = (tiny_models.path("bert", "relevance", seed=3), tiny_models.path("bert", "nli", seed=3))
    _register(services, MAELLE, "v1", *other, profile=tiny_profile)
    query, reply = "How old are you?", "Seventy-eight this year."

    def score(name):
        r = services.scoring.score(name, query, [reply], persist=True)
        row = services.scoring.scores.row(r.score_ids[0])
        return r.profile, row["disc_version"], r.scores[0].apc

    label0, version0, apc0 = score(MAELLE)
    assert (label0, version0) == (tiny_profile, "default")
    r = invoke("disc", "use", "-c", MAELLE, "v1", "--json")
    assert json.loads(r.output)["scoring_label"] == f"{tiny_profile}@v1"
    label1, version1, apc1 = score(MAELLE)
    assert (label1, version1) == (f"{tiny_profile}@v1", "v1") and apc1 != pytest.approx(apc0)
    assert score(KAITO)[:2] == (tiny_profile, "default")  # other characters keep theirs
    listed = json.loads(invoke("disc", "list", "-c", MAELLE, "--json").output)
    assert [(v["name"], v["active"]) for v in listed] == [("default", False), ("v1", True)]
    assert [v["character"] for v in json.loads(invoke("disc", "list", "--json").output)] == [MAELLE]
    # an explicit other profile does not pick up a version of this one
    assert services.scoring.active(MAELLE, "embedded").version == "default"
    invoke("disc", "use", "-c", MAELLE, "default")
    assert score(MAELLE)[:2] == (tiny_profile, "default")
    with pytest.raises(InputError, match="no discriminator version 'v9'"):
        invoke("disc", "use", "-c", MAELLE, "v9")


# -- training ----------------------------------------------------------------------------------------
def _labels_from_teacher(services, character: str, n_per_task: int) -> None:
    for task in ("relevance", "nli"):
        rows = _teacher_rows(character, task, n_per_task)
        services.teach.labels.add_many(services.characters.repo.row(character)["id"],
                                       [{**r, "task": task} for r in rows], annotator="tester", source="import")  # fmt: skip


@pytest.mark.slow
def test_from_labels_embedded_changes_only_that_character(demo, monkeypatch):
    """A real (small) run on the shipped embedded discriminators: a new active version for Maelle,
    served by the numpy runtime; Kaito's scores stay what they were."""
    query, replies = "How long did you keep the lighthouse?", ["Twenty-one years, child.", "Only two summers."]
    before_m = demo.scoring.score(MAELLE, query, replies)
    before_k = demo.scoring.score(KAITO, query, replies)
    _labels_from_teacher(demo, MAELLE, 6)
    r = invoke("disc", "train", "--from-labels", "-c", MAELLE, "--epochs", "2", "--max-steps", "2", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["version"] == "v1" and out["kind"] == "lora" and out["rescore_command"] == "apc rescore -c 'Maelle Kervran'"
    for task in ("relevance", "nli"):
        m = out["metrics"]["tasks"][task]
        assert (m["n_labels"], m["n_heldout"], m["steps"]) == (6, 1, 2)
        assert m["heldout_before"] is not None and m["heldout_after"] is not None
    after_m = demo.scoring.score(MAELLE, query, replies)
    after_k = demo.scoring.score(KAITO, query, replies)
    assert after_m.profile == "embedded@v1" and after_k.profile == "embedded"
    assert [s.apc for s in after_m.scores] != pytest.approx([s.apc for s in before_m.scores])
    assert [s.apc for s in after_k.scores] == pytest.approx([s.apc for s in before_k.scores])
    pair = demo.scoring.scorer(character=MAELLE).pair
    assert pair.nli.describe()["runtime"] == "numpy" and pair.relevance.describe()["runtime"] == "numpy"
    cid = demo.characters.repo.row(MAELLE)["id"]
    row = demo.teach.versions.find(cid, "v1")
    assert row["rel_path"] == f"discriminators/{cid}/v1/relevance" and len(row["labels_hash"]) == 64
    assert json.loads(row["recipe_json"])["replay_ratio"] == 0.5
    with pytest.raises(InputError, match="no human labels"):
        demo.teach_train.config(KAITO)


@pytest.mark.slow
def test_from_labels_full_checkpoint_cancel_and_resume(db_path, monkeypatch, tiny_profile, tiny_pair_paths):
    """A full (tiny BERT) checkpoint gets a fresh LoRA over it; a cancelled job resumes to the end."""
    import threading

    from apc_tui.config import load_settings
    from apc_tui.factory import build_services
    from apc_tui.jobs import resume_job, run_job
    from engine.discriminators.meta import read_meta

    monkeypatch.setenv("APC_PROFILE", tiny_profile)
    monkeypatch.setenv("APC_DEVICE", "cpu")
    services = build_services(load_settings())
    services.characters.import_demo([p for p in services.characters.demo_files() if p.stem == "maelle_kervran"])
    _labels_from_teacher(services, MAELLE, 5)
    config, cid = services.teach_train.config(MAELLE, name="tiny-1", recipe={"epochs": 2, "max_steps": 4, "batch_size": 4})
    job_id = services.jobs.create("disc_teach", config, character_id=cid)
    stop = threading.Event()
    stop.set()  # cancelled before the first step
    assert run_job(services, job_id, stop=stop)["status"] == "cancelled"
    assert services.teach.versions.find(cid, "tiny-1") is None
    assert resume_job(services, job_id)["status"] == "done"
    row = services.teach.versions.find(cid, "tiny-1")
    meta = read_meta(services.scoring.data_folder() / row["nli_path"])
    assert meta.adapter and meta.base_model == str(tiny_pair_paths[1]) and meta.format == "paper"
    assert services.scoring.score(MAELLE, "How old are you?", ["Seventy-eight."]).profile == f"{tiny_profile}@tiny-1"


def test_judge_few_shot_examples_in_prompt(fake_chat_model):
    from engine.discriminators import NliItem, with_judge_model
    from engine.discriminators.profiles import with_judge_examples

    pair = with_judge_model(fake_chat_model({"entailed": -0.1}), "judge:fake")
    example = NliItem(MAELLE, AGE, "How old are you?", "I'm eighty-seven.")
    taught = with_judge_examples(pair, {"nli": [(example, 0)]}, "judge:fake@v1")
    asked = NliItem(MAELLE, AGE, "Your age?", "Seventy-eight.")
    turns = taught.nli.messages(asked)
    assert [t.role for t in turns] == ["system", "user", "assistant", "user"]
    assert "I'm eighty-seven." in turns[1].content and turns[2].content == "contradict"
    assert "Seventy-eight." in turns[3].content
    assert pair.nli.messages(asked)[1:] == [turns[3]]
    assert taught.nli.identity != pair.nli.identity and taught.relevance.identity == pair.relevance.identity
    assert taught.profile == "judge:fake@v1"


@pytest.mark.slow
def test_from_labels_judge_profile_makes_a_few_shot_version(db_path, monkeypatch):
    """`judge:tiny` (a real local model): the labels become few-shot examples of a new version."""
    from apc_tui.config import load_settings
    from apc_tui.factory import build_services

    monkeypatch.setenv("APC_PROFILE", "judge:tiny")
    monkeypatch.setenv("APC_DEVICE", "cpu")
    services = build_services(load_settings())
    services.characters.import_demo([p for p in services.characters.demo_files() if p.stem == "maelle_kervran"])
    _labels_from_teacher(services, MAELLE, 3)
    config, cid = services.teach_train.config(MAELLE)
    assert services.jobs.start("disc_teach", config, character_id=cid)["status"] == "done"
    summary = services.teach.list_versions(MAELLE)[1]
    assert (summary["kind"], summary["active"], summary["metrics"]["tasks"]["nli"]["n_examples"]) == ("few-shot", True, 3)
    nli = services.scoring.scorer(character=MAELLE).pair.nli
    assert len(nli.examples) == 3
    assert len(nli.messages(nli.examples[0][0])) == 2 + 2 * 3


# -- TUI: verdicts from the why panel, the teach queue --------------------------------------------------
@pytest.mark.anyio
async def test_why_panel_marks_a_verdict_as_a_human_label(tui_services, make_tui):
    from apc_tui.screens.teach import VerdictDialog
    from tests.fixtures_tui import SIZE, seed_conversation, settle

    seeded = seed_conversation(tui_services)
    a, b = seeded["turns"][-1]["candidates"]
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await settle(pilot, app)
        why = app.screen.query_one("#why")
        why.focus()
        await pilot.press("down")
        statement = why.terms_[1][1]["statement"]
        await pilot.press("v")
        await settle(pilot, app)
        assert isinstance(app.screen, VerdictDialog)
        await pilot.press("n")  # not relevant to "What is your job?"
        await settle(pilot, app)
        await pilot.press("b", "c")  # reply B contradicts it
        await settle(pilot, app)
        assert "contradicted for reply B" in str(app.screen.query_one("#verdict-status").render())
        await pilot.press("escape")
        await settle(pilot, app)
        assert not isinstance(app.screen, VerdictDialog)
    labels = tui_services.teach.list_labels("Kaito Renn")
    assert [(x["task"], x["label"], x["statement"], x["query"], x["message_id"], x["annotator"], x["source"]) for x in labels] == [
        ("relevance", "no", statement, "What is your job?", a, "tester", "why"),
        ("nli", "contradicted", statement, "What is your job?", b, "tester", "why"),
    ]
    assert labels[1]["response"] == "I am a banker and I love my office." and labels[0]["response"] == ""
    assert labels[0]["statement_id"] is not None


def test_teach_queue_orders_by_uncertainty_times_influence_disagreements_first(tui_services):
    from apc_tui.services.teach import teach_queue
    from tests.fixtures_tui import seed_conversation

    seeded = seed_conversation(tui_services)
    first, second = (t["candidates"] for t in seeded["turns"])
    items = teach_queue(tui_services, "Kaito Renn", annotator="tester")
    assert items and all(not it["disagree"] for it in items)
    assert [it["priority"] for it in items] == sorted((it["priority"] for it in items), reverse=True)
    top = items[0]
    assert top["priority"] == pytest.approx(top["uncertainty"] * top["influence"]) and top["influence"] > 0
    # a human prefers the reply APC ranks lower on the second turn: its verdicts come first
    tui_services.training.record_preference(second[0], second[1], "b", annotator="tester")
    items = teach_queue(tui_services, "Kaito Renn", annotator="tester")
    n_disagree = sum(it["disagree"] for it in items)
    assert n_disagree > 0 and all(it["disagree"] for it in items[:n_disagree]) and items[0]["query"] == "What is your job?"
    assert [it["priority"] for it in items[:n_disagree]] == sorted((it["priority"] for it in items[:n_disagree]), reverse=True)
    # once every verdict of a statement is given, it leaves the queue
    from apc_tui.services.teach import label_message

    s = items[0]["statement"]
    label_message(tui_services, items[0]["a"]["message_id"], s, "relevance", "yes", annotator="tester")
    label_message(tui_services, items[0]["a"]["message_id"], s, "nli", "entailed", annotator="tester")
    label_message(tui_services, items[0]["b"]["message_id"], s, "nli", "neutral", annotator="tester")
    assert all(it["statement"] != s or it["query"] != "What is your job?" for it in teach_queue(tui_services, "Kaito Renn", annotator="tester"))
    assert first  # the first turn's pair is in the queue too


def test_rescore_uses_the_active_version_rebuilds_pairs_and_reports_agreement(db_path, monkeypatch, tiny_models, tiny_profile):
    from apc_tui.config import load_settings
    from apc_tui.factory import build_services
    from tests.fixtures_tui import seed_conversation

    monkeypatch.setenv("APC_PROFILE", tiny_profile)
    monkeypatch.setenv("APC_DEVICE", "cpu")
    monkeypatch.setenv("APC_ANNOTATOR", "tester")
    services = build_services(load_settings())
    services.characters.import_demo([p for p in services.characters.demo_files() if p.stem == "kaito_renn"])
    seeded = seed_conversation(services)
    a, b = seeded["turns"][-1]["candidates"]
    services.training.record_preference(a, b, "b")
    _register(services, KAITO, "v1", tiny_models.path("bert", "relevance", seed=3), tiny_models.path("bert", "nli", seed=3), tiny_profile)
    invoke("disc", "use", "-c", KAITO, "v1")
    r = invoke("rescore", "-c", KAITO, "--json")
    assert r.exit_code == 0, r.output
    job = json.loads(r.output)
    assert job["status"] == "done" and job["artifacts"]["profile"] == f"{tiny_profile}@v1" and job["artifacts"]["turns"] == 2
    moved = job["artifacts"]["agreement"]["apc_agreement"]
    assert moved["before"] == 0.0 and moved["after"] in (0.0, 1.0)  # the fake scores ranked a first; the human chose b
    latest = services.scoring.scores.latest_for_messages([m for t in seeded["turns"] for m in t["candidates"]])
    assert {s.profile for s in latest.values()} == {f"{tiny_profile}@v1"}
    versions = {r["disc_version"] for r in services.store.db.query("SELECT disc_version FROM apc_scores")}
    assert versions == {"default", "v1"}  # the seeded scores were made before any version
    assert [p["source"] for p in services.training.list_pairs(KAITO, "human")] == ["human"]
    # the character's active discriminators, measured on its own labels
    invoke("labels", "add", "-c", KAITO, "--task", "relevance", "--statement", latest[a].terms[0].statement,
           "--query", "Where do you live?", "--label", "yes")  # fmt: skip
    report = json.loads(invoke("disc", "eval", "-c", KAITO, "--task", "relevance", "--json").output)
    assert (report["profile"], report["n"]) == (f"{tiny_profile}@v1", 1)


@pytest.mark.anyio
async def test_teach_queue_screen_opens_from_annotate_and_leads_to_the_verdict_dialog(tui_services, make_tui):
    from apc_tui.screens.teach import TeachQueueScreen, VerdictDialog
    from tests.fixtures_tui import SIZE, seed_conversation, settle

    seed_conversation(tui_services)
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        app.character = "Kaito Renn"
        await pilot.press("f4")
        await settle(pilot, app)
        await pilot.press("T")
        await settle(pilot, app)
        assert isinstance(app.screen, TeachQueueScreen)
        table = app.screen.query_one("#teach-table")
        assert table.row_count == len(app.screen.items) > 0
        first = app.screen.items[0]
        await pilot.press("enter")
        await settle(pilot, app)
        assert isinstance(app.screen, VerdictDialog) and app.screen.statement == first["statement"]
        await pilot.press("y", "escape")
        await settle(pilot, app)
        assert isinstance(app.screen, TeachQueueScreen)
    assert [(x["task"], x["label"], x["statement"]) for x in tui_services.teach.list_labels("Kaito Renn")] == [
        ("relevance", "yes", first["statement"])]
