"""Teacher synthesis: tolerant parsing, and the four stages end to end against a real local server,
interrupted and resumed with no duplicates and every failure recorded."""

from __future__ import annotations

import json

import threading

import pytest

from engine import synthesis as syn
from engine.errors import Cancelled, ModelError

NAME = "Komeiji Koishi"
PASSAGES = [
    "Komeiji Koishi lives in Chireiden. Komeiji Koishi is the younger sister of Satori. The sisters keep many pets.",
    "Koishi closed her third eye. Komeiji Koishi wanders without being noticed. People forget meeting the girl.",
]


# -- parsing -------------------------------------------------------------------------------
def test_extract_json_tolerates_fences_prose_and_trailing_text():
    assert syn.extract_json('Sure!\n```json\n["a", "b"]\n```\nMore?') == ["a", "b"]
    assert syn.extract_json('The answer is {"1": "yes"} -- hope it helps [x]') == {"1": "yes"}
    assert syn.extract_json('noise [not json] then ["ok"]') == ["ok"]
    with pytest.raises(syn.ReplyError):
        syn.extract_json("no json at all")
    with pytest.raises(syn.ReplyError):
        syn.extract_json("")


def test_statements_validated_and_bullets_fallback():
    ok, bad = syn.parse_statements('{"statements": ["Komeiji Koishi lives in Chireiden.", "She is shy.", "Koishi likes roses.", "It rains."]}', NAME)
    assert ok == ["Komeiji Koishi lives in Chireiden.", "Koishi likes roses."]
    assert dict(bad) == {"She is shy.": "starts with a pronoun", "It rains.": "starts with a pronoun"}
    assert syn.statement_problem("She is Komeiji Koishi's friend.", NAME) == "starts with a pronoun"
    assert syn.statement_problem("她住在地灵殿。", "古明地恋") is not None
    assert syn.parse_statements("- Komeiji Koishi is a satori.\n- Komeiji Koishi wears a hat.", NAME)[0] == [
        "Komeiji Koishi is a satori.", "Komeiji Koishi wears a hat."]  # fmt: skip
    assert syn.parse_statements('"Komeiji Koishi lives in Chireiden."', NAME)[0] == ["Komeiji Koishi lives in Chireiden."]


def test_relevance_and_nli_parsing():
    assert syn.parse_relevance('{"1": "Yes", "2": "no."}', 2) == ["yes", "no"]
    assert syn.parse_relevance('["yes", "no", "yes"]', 3) == ["yes", "no", "yes"]
    assert syn.parse_relevance('[{"id": 2, "label": "no"}, {"id": 1, "label": "yes"}]', 2) == ["yes", "no"]
    with pytest.raises(syn.ReplyError, match="no label"):
        syn.parse_relevance('{"1": "yes"}', 2)
    with pytest.raises(syn.ReplyError):
        syn.parse_relevance('{"1": "maybe"}', 1)
    assert syn.parse_nli_responses('```\n{"Entailed": "a", "Contradiction": "c", "Neutral": "n"}\n```') == {
        "entailed": "a", "contradicted": "c", "neutral": "n"}  # fmt: skip
    assert syn.parse_nli_label("Contradict.") == "contradicted"
    assert syn.parse_nli_label('{"label": "entailed"}') == "entailed"
    with pytest.raises(syn.ReplyError):
        syn.parse_nli_label("I cannot tell")


def test_split_and_picks_are_deterministic():
    assert syn.split_of("Where do you live?") == syn.split_of("Where do you live?")
    splits = [syn.split_of(f"utterance {i}") for i in range(400)]
    assert 0.1 < splits.count("eval") / 400 < 0.3
    assert syn.pick_others("k", list(range(30)), 5) == syn.pick_others("k", list(range(30)), 5)


def test_prompts_carry_a_worked_example_in_both_languages():
    for lang in ("en", "zh"):
        msgs = syn.statement_messages("X", lang, "passage text")
        assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
        assert "passage text" in msgs[-1].content


# -- end to end ------------------------------------------------------------------------------
@pytest.fixture
def synth(services, fake_openai):
    from apc_tui.storage.characters import CharacterRepo
    from engine.backends import load_model
    from tests.openai_server import KEY

    CharacterRepo(services.store).upsert(NAME, language="en", source_text="\n\n".join(PASSAGES), passages=PASSAGES, statements=[])
    teacher = load_model("openai:teacher", base_url=fake_openai.url, api_key=KEY, max_retries=1)
    return services.synthesis, teacher


def _table_counts(store) -> dict:
    db = store.db
    return {
        t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("statements", "queries", "teacher_labels")
    } | {"ok_calls": db.execute("SELECT COUNT(*) FROM teacher_calls WHERE status = 'ok'").fetchone()[0]}


def test_all_stages_end_to_end_and_export(synth, tmp_path):
    from engine.discriminators.data import read_labelled

    svc, teacher = synth
    result = svc.run_stage(NAME, "all", teacher, concurrency=4)
    by = {r["stage"]: r for r in result["stages"]}
    assert list(by) == ["statements", "queries", "relevance", "nli_write", "nli_label"]
    assert all(r["failed"] == 0 and r["unparsed"] == 0 and r["remaining"] == 0 for r in by.values())
    assert by["statements"]["added"] == 6 and by["queries"]["added"] == 18
    assert by["nli_write"]["added"] == 54 and by["nli_label"]["added"] == 54
    assert by["statements"]["prompt_tokens"] > 0

    status = svc.status(NAME)
    c = status["counts"]
    assert c["teacher_statements"] == 6 and c["queries"] == 18 and c["nli_labelled"] == 54
    assert c["relevance_labels"] >= 18 and c["relevance_yes"] >= 18 and c["nli_agreement"] == 1.0
    assert set(status["pending"].values()) == {0}
    # the teacher also wrote "She is mysterious.": rejected, and the rejection is visible
    errors = [r["error"] for r in svc.store.db.query("SELECT error FROM teacher_calls WHERE stage = 'statements'")]
    assert all("starts with a pronoun" in e for e in errors)

    rel = svc.export(NAME, "relevance", tmp_path / "rel.jsonl")
    nli = svc.export(NAME, "nli", tmp_path / "nli.jsonl")
    assert len(read_labelled(tmp_path / "rel.jsonl", "relevance")) == rel["rows"] == c["relevance_labels"]
    assert len(read_labelled(tmp_path / "nli.jsonl", "nli")) == nli["rows"] == 54

    before = _table_counts(svc.store)
    again = svc.run_stage(NAME, "all", teacher, concurrency=4)
    assert all(r["attempted"] == 0 for r in again["stages"])
    assert _table_counts(svc.store) == before


def test_stop_event_then_resume_without_duplicates(synth):
    svc, teacher = synth
    svc.run_stage(NAME, "statements", teacher)
    stop = threading.Event()

    def progress(done, total, text):
        if done >= 2:
            stop.set()

    with pytest.raises(Cancelled, match="rerun to continue") as info:
        svc.run_stage(NAME, "queries", teacher, concurrency=1, progress=progress, stop=stop)
    assert 2 <= info.value.report.ok < 6
    partial = svc.status(NAME)["counts"]["queries"]
    assert 6 <= partial < 18
    result = svc.run_stage(NAME, "queries", teacher, concurrency=3)
    assert result["stages"][0]["already_done"] == info.value.report.ok
    db = svc.store.db
    assert db.execute("SELECT COUNT(*) FROM queries").fetchone()[0] == 18
    dup = db.execute("SELECT COUNT(*) FROM (SELECT item_key FROM teacher_calls WHERE status='ok' GROUP BY stage, item_key HAVING COUNT(*) > 1)")
    assert dup.fetchone()[0] == 0


def test_server_failing_midway_records_failures_then_resumes(synth, fake_openai, monkeypatch):
    from apc_tui.services import teacher_runner

    svc, teacher = synth
    svc.run_stage(NAME, "statements", teacher)
    fake_openai.fail_after = fake_openai.ok_count + 2  # two more answers, then 500 for everything
    r = svc.run_stage(NAME, "queries", teacher, concurrency=1, limit=4)["stages"][0]
    assert (r["ok"], r["failed"], r["remaining"]) == (2, 2, 4) and "500" in r["errors"][0]
    monkeypatch.setattr(teacher_runner, "MAX_CONSECUTIVE_FAILURES", 2)  # a dead teacher stops the stage early
    with pytest.raises(ModelError, match="failed 2 times in a row"):
        svc.run_stage(NAME, "queries", teacher, concurrency=1)
    failed = svc.repo.failures(svc.characters.row(NAME)["id"])
    assert failed and all(f["status"] == "failed" and "500" in f["error"] for f in failed)
    fake_openai.fail_after = None
    result = svc.run_stage(NAME, "queries", teacher, concurrency=2)
    assert result["stages"][0]["remaining"] == 0 and result["stages"][0]["already_done"] == 2
    assert len(failed) == 4
    assert svc.store.db.execute("SELECT COUNT(*) FROM queries").fetchone()[0] == 18
    calls = svc.status(NAME)["calls"]["queries"]
    assert calls["ok"] == 6 and calls["failed"] == len(failed)


def test_unparsable_reply_is_recorded_with_raw_text(services, fake_openai):
    from apc_tui.storage.characters import CharacterRepo
    from engine.backends import load_model
    from tests.openai_server import KEY

    CharacterRepo(services.store).upsert(NAME, language="en", source_text="", passages=["UNPARSABLE passage.", PASSAGES[0]], statements=[])
    teacher = load_model("openai:teacher", base_url=fake_openai.url, api_key=KEY)
    r = services.synthesis.run_stage(NAME, "statements", teacher)["stages"][0]
    assert (r["ok"], r["unparsed"], r["remaining"]) == (1, 1, 1)
    row = services.store.db.execute("SELECT raw_reply, error FROM teacher_calls WHERE status = 'unparsed'").fetchone()
    assert "cannot help" in row[0] and row[1]


def test_null_content_is_a_failed_call_with_its_reason(synth, fake_openai):
    from engine.backends import load_model
    from tests.openai_server import KEY

    svc, _ = synth
    reasoning = load_model("openai:null", base_url=fake_openai.url, api_key=KEY)
    r = svc.run_stage(NAME, "statements", reasoning)["stages"][0]
    assert (r["ok"], r["failed"], r["added"]) == (0, len(PASSAGES), 0)
    rows = svc.store.db.execute("SELECT status, raw_reply, error FROM teacher_calls").fetchall()
    assert rows and all(st == "failed" and raw is None and "finish_reason length" in err and "--max-new-tokens" in err for st, raw, err in rows)


def test_teacher_stages_ask_for_json_schemas(synth, fake_openai):
    svc, teacher = synth
    svc.run_stage(NAME, "all", teacher)
    formats = {json.dumps(c["response_format"]["json_schema"]["schema"]["required"]) for c in fake_openai.calls("teacher")}
    assert {'["statements"]', '["utterances"]', '["contradicted", "neutral", "entailed"]', '["label"]'} <= formats
    assert any(f.startswith('["1", "2"') for f in formats)  # relevance: one yes/no per numbered utterance
    assert all(c["response_format"]["json_schema"]["strict"] for c in fake_openai.calls("teacher"))


def test_cli_synth_status_export(cli, fake_openai, tmp_path):
    import json

    card = tmp_path / "koishi.txt"
    card.write_text("\n\n".join(PASSAGES), encoding="utf-8")
    r = cli("characters", "import", str(card), "--name", NAME)
    assert r.code == 0, r.err
    bad = cli("synth", "all", "--character", NAME, "--teacher", "openai:nope")
    assert bad.code == 2 and "404" in bad.err and "stopped the stage" in bad.err  # stops at the first call
    r = cli("synth", "all", "--character", NAME, "--teacher", "openai:teacher", "--concurrency", "4", "--json")
    assert r.code == 0, r.err
    assert [s["stage"] for s in r.json()["stages"]][-1] == "nli_label"
    st = cli("synth", "status", "--character", NAME, "--json").json()
    assert st["counts"]["nli_labelled"] > 0 and st["calls"]["statements"]["ok"] == 2
    out = tmp_path / "nli.jsonl"
    r = cli("synth", "export", "--task", "nli", "--character", NAME, "--out", str(out))
    assert r.code == 0, r.err
    row = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert {"character", "statement", "query", "response", "label"} <= set(row)
    text = cli("synth", "status", "--character", NAME).out
    assert "pending: statements 0" in text
