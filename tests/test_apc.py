"""The APC scorer: formula from known probabilities, relevance reuse, batching, storage, service."""

from __future__ import annotations

import numpy as np
import pytest

from engine.apc import ApcScorer, RelevanceCache, ScoreRequest
from engine.discriminators import DiscriminatorPair, NliItem, RelevanceItem, with_judge_model
from engine.types import NLI_LABELS, RELEVANCE_LABELS


class TableDiscriminator:
    """Returns fixed probabilities per item and records every predict call."""

    def __init__(self, task, table, default, identity="table"):
        self.task = task
        self.labels = RELEVANCE_LABELS if task == "relevance" else NLI_LABELS
        self.format = "paper"
        self.identity = f"{identity}:{task}"
        self.table, self.default = table, default
        self.calls: list[list] = []

    def predict(self, items, batch_size=32, progress=None, stop=None):
        self.calls.append(list(items))
        return np.array([self.table.get(self._key(i), self.default) for i in items], dtype=float)

    @staticmethod
    def _key(item):
        return (item.statement, item.response) if isinstance(item, NliItem) else item.statement


S1, S2 = "Alice lives in Paris.", "Alice hates tea."


def table_pair():
    rel = TableDiscriminator("relevance", {S1: [0.2, 0.8], S2: [0.9, 0.1]}, [0.5, 0.5])
    nli = TableDiscriminator(
        "nli",
        {(S1, "r"): [0.1, 0.2, 0.7], (S2, "r"): [0.6, 0.3, 0.1], (S1, "x"): [0.0, 1.0, 0.0], (S2, "x"): [0.0, 1.0, 0.0]},
        [1 / 3, 1 / 3, 1 / 3],
    )
    return DiscriminatorPair(rel, nli, "table")


def test_apc_formula_by_hand():
    [score] = ApcScorer(table_pair()).score("Alice", [S1, S2], "Where do you live?", ["r"])
    # Σ P(no)(1-P(con)) + P(yes)P(ent) = 0.2*0.9 + 0.8*0.7 + 0.9*0.4 + 0.1*0.1
    assert score.apc == pytest.approx(0.18 + 0.56 + 0.36 + 0.01)
    assert score.active == pytest.approx(0.56 + 0.01)
    assert score.passive == pytest.approx(0.18 + 0.36)
    assert score.delta_apc == pytest.approx(score.apc - (0.2 + 0.9))  # ΔAPC = APC − Σ P(no)
    assert [t.delta_term for t in score.terms] == pytest.approx([0.8 * 0.7 - 0.2 * 0.1, 0.1 * 0.1 - 0.9 * 0.6])
    assert score.n_statements == 2 and score.profile == "table"
    t1 = score.terms[0]
    assert (t1.statement, t1.p_yes, t1.p_contradicted, t1.p_neutral, t1.p_entailed) == (S1, 0.8, 0.1, 0.2, 0.7)


def test_neutral_response_has_zero_delta():
    [score] = ApcScorer(table_pair()).score("Alice", [S1, S2], "q", ["x"])
    assert score.delta_apc == pytest.approx(0.0)
    assert score.apc == pytest.approx(0.2 + 0.9)


def test_relevance_once_per_statement_and_one_batched_nli_call():
    pair = table_pair()
    scores = ApcScorer(pair).score("Alice", [S1, S2], "q", ["r", "x", "r2"])
    assert len(scores) == 3
    assert len(pair.relevance.calls) == 1 and len(pair.relevance.calls[0]) == 2  # not once per response
    assert len(pair.nli.calls) == 1 and len(pair.nli.calls[0]) == 6


def test_score_many_batches_across_queries_and_reuses_cache():
    pair = table_pair()
    scorer = ApcScorer(pair)
    scorer.relevance("Alice", [S1], "q1")  # e.g. retrieval ran first
    out = scorer.score_many([ScoreRequest.of("Alice", [S1, S2], "q1", ["r"]), ScoreRequest.of("Alice", [S1, S2], "q2", ["r", "x"])])
    assert [len(x) for x in out] == [1, 2]
    assert len(pair.relevance.calls) == 2  # the retrieval call, then one call for all misses
    assert {(i.statement, i.query) for i in pair.relevance.calls[1]} == {(S2, "q1"), (S1, "q2"), (S2, "q2")}
    assert len(pair.nli.calls) == 1 and len(pair.nli.calls[0]) == 6
    assert scorer.cache.hits >= 1


def test_cache_is_per_scorer_and_bounded():
    a, b = ApcScorer(table_pair()), ApcScorer(table_pair())
    a.relevance("Alice", [S1, S2], "q")
    assert len(a.cache) == 2 and len(b.cache) == 0
    cache = RelevanceCache(max_items=2)
    for i in range(3):
        cache.put(("id", "c", f"s{i}", "q"), 0.5)
    assert len(cache) == 2 and cache.get(("id", "c", "s0", "q")) is None


def test_empty_statements_give_empty_scores():
    [score] = ApcScorer(table_pair()).score("Alice", [], "q", ["r"])
    assert score.apc == 0.0 and score.terms == ()


# -- real tiny models ----------------------------------------------------------------------
STATEMENTS = ["Komeiji Koishi lives with her sister, Komeiji Satori.", "Komeiji Koishi lives in Chireiden.",
              "Komeiji Koishi can read minds but closed her third eye."]  # fmt: skip
RESPONSES = ["I live in Chireiden with my sister, Satori!", "I live in Chireiden!", "I live in Hakurei Shrine!"]


def test_relevance_cache_hit_counts_forward_calls(tiny_pair):
    scorer = ApcScorer(tiny_pair)
    first = scorer.relevance("Komeiji Koishi", STATEMENTS, "Where do you live, Koishi?")
    calls = tiny_pair.relevance.forward_calls
    again = scorer.relevance("Komeiji Koishi", STATEMENTS, "Where do you live, Koishi?")
    assert tiny_pair.relevance.forward_calls == calls  # no forward: all three from the cache
    np.testing.assert_array_equal(first, again)
    scorer.score("Komeiji Koishi", STATEMENTS, "Where do you live, Koishi?", RESPONSES)
    assert tiny_pair.relevance.forward_calls == calls  # scoring reused retrieval's relevance
    assert scorer.cache.hits >= 6


def test_scores_match_direct_predictions_and_batch_size(tiny_pair):
    q = "Where do you live, Koishi?"
    big = ApcScorer(tiny_pair, batch_size=32).score("Komeiji Koishi", STATEMENTS, q, RESPONSES)
    one = ApcScorer(tiny_pair, batch_size=1).score("Komeiji Koishi", STATEMENTS, q, RESPONSES)
    rel = tiny_pair.relevance.predict([RelevanceItem("Komeiji Koishi", s, q) for s in STATEMENTS], batch_size=1)
    for b, o in zip(big, one, strict=True):
        assert b.apc == pytest.approx(o.apc, abs=1e-5) and b.delta_apc == pytest.approx(o.delta_apc, abs=1e-5)
        nli = tiny_pair.nli.predict([NliItem("Komeiji Koishi", s, q, b.response) for s in STATEMENTS], batch_size=1)
        by_hand = sum(r[0] * (1 - n[0]) + r[1] * n[2] for r, n in zip(rel, nli, strict=True))
        assert b.apc == pytest.approx(by_hand, abs=1e-5)


def test_judge_pair_scores(fake_chat_model):
    model = fake_chat_model(logprobs={"yes": 0.0, "no": -30.0, "entailed": 0.0, "neutral": -30.0, "contradict": -30.0})
    [score] = ApcScorer(with_judge_model(model)).score("Alice", [S1, S2], "q", ["r"])
    assert score.apc == pytest.approx(2.0, abs=1e-6) and score.delta_apc == pytest.approx(2.0, abs=1e-6)


# -- storage and service -------------------------------------------------------------------
def test_score_repo_round_trip_and_latest(services):
    from apc_tui.storage.characters import CharacterRepo
    from apc_tui.storage.db import now
    from apc_tui.storage.scores import ScoreRepo

    store = services.store
    cid, _ = CharacterRepo(store).upsert("Alice", language="en", source_text="", passages=[],
                                         statements=[(S1, "manual", None), (S2, "manual", None)])  # fmt: skip
    sids = [r["id"] for r in store.db.query("SELECT id FROM statements ORDER BY position")]
    with store.transaction() as db:
        conv = db["conversations"].insert({"character_id": cid, "created_at": now()}).last_pk
        mid = db["messages"].insert({"conversation_id": conv, "role": "assistant", "content": "r", "created_at": now()}).last_pk
    repo = ScoreRepo(store)
    [score] = ApcScorer(table_pair()).score("Alice", [S1, S2], "q", ["r"])
    first = repo.save(score, query="q", character_id=cid, message_id=mid, statement_ids=sids)
    assert repo.get(first) == score
    terms = list(store.db.query("SELECT * FROM apc_terms WHERE score_id = ? ORDER BY position", [first]))
    assert [t["statement_id"] for t in terms] == sids and terms[1]["delta_term"] == pytest.approx(score.terms[1].delta_term)
    [neutral] = ApcScorer(table_pair()).score("Alice", [S1, S2], "q", ["x"])
    second = repo.save(neutral, query="q", character_id=cid, message_id=mid, statement_ids=sids)
    assert repo.latest_for_message(mid) == neutral and repo.latest_for_messages([mid, 999]) == {mid: neutral}
    assert store.db.execute("SELECT COUNT(*) FROM apc_scores").fetchone()[0] == 1  # same message + profile: replaced
    assert store.db.execute("SELECT COUNT(*) FROM apc_terms").fetchone()[0] == 2  # old terms went with the old score
    assert repo.get(second) == neutral


def test_scoring_service_by_character_persists(tmp_path, tiny_profile, monkeypatch):
    from apc_tui.config import load_settings
    from apc_tui.factory import build_services
    from apc_tui.storage.characters import CharacterRepo
    from apc_tui.storage.scores import ScoreRepo

    monkeypatch.setenv("APC_PROFILE", tiny_profile)
    monkeypatch.setenv("APC_DEVICE", "cpu")
    services = build_services(load_settings())
    CharacterRepo(services.store).upsert("Komeiji Koishi", language="en", source_text="", passages=[],
                                         statements=[(s, "manual", None) for s in STATEMENTS])  # fmt: skip
    svc = services.scoring
    result = svc.score("Komeiji Koishi", "Where do you live, Koishi?", RESPONSES[:2], persist=True)
    assert result.to_dict()["n_statements"] == 3 and len(result.score_ids) == 2
    assert ScoreRepo(services.store).get(result.score_ids[1]) == result.scores[1]
    assert svc.scorer() is svc.scorer(tiny_profile, "cpu")  # loaded once


def test_service_reports_judge_text_fallback(services, fake_chat_model):
    svc = services.scoring
    key = (svc.settings.profile, None, svc.settings.device)  # (profile, discriminator version, device)
    svc._scorers[key] = ApcScorer(with_judge_model(fake_chat_model(logprobs=None, answer="yes"), "judge:fake"))
    result = svc.score([S1, S2], "q", ["r"], name="Alice")
    assert result.notes == ("relevance judge: 2 answer(s) read from text (no log-probs from the backend), 0 unparsed",
                            "nli judge: 2 answer(s) read from text (no log-probs from the backend), 2 unparsed")  # fmt: skip
    assert result.to_dict()["profile"] == "judge:fake"


def test_default_batch_size_follows_the_discriminators_device(tiny_pair):
    from engine.apc import CPU_BATCH, GPU_BATCH

    assert ApcScorer(tiny_pair).batch_size == CPU_BATCH  # real tiny models on the CPU
    assert ApcScorer(tiny_pair, batch_size=7).batch_size == 7
    table = table_pair()  # table discriminators carry no device: treated as CPU
    assert ApcScorer(table).batch_size == CPU_BATCH
    table.nli.device = "cuda:0"
    assert ApcScorer(table).batch_size == GPU_BATCH
