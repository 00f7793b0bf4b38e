"""Sharded scoring: one replica of the shipped embedded discriminators per worker process (two on
the CPU here, one per GPU on a GPU box), length-sorted batches dealt across them, and every APC term
equal to one process's to 1e-4."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from engine.errors import ConfigError

CHARACTERS = {
    "Maelle Kervran": [
        "Maelle Kervran kept the lighthouse of Penmarch for 31 years.",
        "Maelle Kervran has a sister named Anne.",
        "Maelle Kervran loves salted butter caramel.",
        "Maelle Kervran never learned to swim.",
    ],
    "Komeiji Koishi": ["Komeiji Koishi lives with her sister, Komeiji Satori.", "Komeiji Koishi lives in Chireiden."],
}
QUERIES = {
    "Maelle Kervran": ["How long did you keep the lighthouse?", "Do you have a sister?", "Can you swim out to the boat?"],
    "Komeiji Koishi": ["Where do you live, Koishi?", "Who do you live with?"],
}
REPLIES = [
    "I kept the Penmarch light for thirty-one years, every night of them.",
    "Yes, my sister Anne lives in Quimper.",
    "I live in Chireiden with my sister, Satori!",
    "I live in Hakurei Shrine!",
    "Of course, I swim every morning across the bay, it is nothing to me at all.",
    "Hmm.",
]


def _requests():
    from engine.apc import ScoreRequest

    return [ScoreRequest.of(name, statements, q, REPLIES) for name, statements in CHARACTERS.items() for q in QUERIES[name]]


def _terms(results) -> np.ndarray:
    return np.array([[t.p_yes, t.p_contradicted, t.p_neutral, t.p_entailed] for per in results for s in per for t in s.terms])


@pytest.fixture(scope="module")
def sharded_pair():
    from engine.discriminators.sharded import ShardedPair

    pair = ShardedPair.open("embedded", ("cpu", "cpu"))
    yield pair
    pair.close()


@pytest.mark.slow
def test_two_cpu_workers_score_exactly_like_one_process(sharded_pair):
    from engine.apc import ApcScorer
    from engine.discriminators import load_profile

    one = ApcScorer(load_profile("embedded", device="cpu"), batch_size=8).score_many(_requests())
    progress: list[tuple[int, int]] = []
    two = ApcScorer(sharded_pair, batch_size=8).score_many(_requests(), progress=lambda d, t, _="": progress.append((d, t)))
    assert _terms(two).shape == _terms(one).shape == (6 * (3 * 4 + 2 * 2), 4)
    assert np.abs(_terms(two) - _terms(one)).max() < 1e-4
    assert [[s.response for s in per] for per in two] == [[s.response for s in per] for per in one]
    assert [round(s.apc, 4) for per in two for s in per] == [round(s.apc, 4) for per in one for s in per]
    assert progress[-1][0] == progress[-1][1] == 6 * (3 * 4 + 2 * 2)  # every NLI row came back
    # both replicas worked: two worker processes, each given batches
    pids = {pool.submit(os.getpid).result() for pool in sharded_pair.pool.pools}
    assert len(pids) == 2 and os.getpid() not in pids
    assert sharded_pair.relevance.identity == load_profile("embedded", device="cpu").relevance.identity


def test_batches_are_length_sorted_and_dealt_round_robin():
    from engine.discriminators.sharded import shard_batches

    lengths = [5, 50, 10, 40, 20, 30, 1]
    a, b = shard_batches(lengths, 2, 2)
    assert [list(x) for x in a] == [[1, 3], [2, 0]] and [list(x) for x in b] == [[5, 4], [6]]  # longest first, alternating
    assert sorted(int(i) for batch in a + b for i in batch) == list(range(7))


def test_scoring_devices_follow_the_device_and_worker_count():
    from engine.discriminators.sharded import scoring_devices

    assert scoring_devices("cpu", None) == ("cpu",) and scoring_devices("cpu", 2) == ("cpu", "cpu")
    with pytest.raises(ConfigError, match="--scoring-workers 0: give 1 or more"):
        scoring_devices("cpu", 0)
    with pytest.raises(ConfigError, match="this machine has"):
        scoring_devices("cuda", 2)


def test_a_bad_profile_fails_with_its_message_and_leaves_no_workers():
    import multiprocessing

    from engine.discriminators.sharded import ShardedPair

    before = {p.pid for p in multiprocessing.active_children()}  # other tests' pools may be alive (module fixture)
    with pytest.raises(ConfigError, match="needs both rel=PATH and nli=PATH"):
        ShardedPair.open("rel=only-one-part", ("cpu", "cpu"))
    assert {p.pid for p in multiprocessing.active_children()} <= before


@pytest.mark.slow
def test_pairs_job_scores_on_two_workers_like_one_process(services, monkeypatch):
    """`apc dpo pairs --scoring-workers 2 --device cpu`: the job's scorer is sharded, and every
    stored pair carries the APC one process gives the same replies."""
    from engine.apc import ApcScorer
    from engine.discriminators import load_profile
    from tests.fixtures_dpo import ScriptedModel

    name, statements = next(iter(CHARACTERS.items()))
    services.characters.repo.upsert(name, language="en", source_text="", passages=[], statements=[(s, "manual", None) for s in statements])
    model = ScriptedModel()  # "I keep the lighthouse, <query>" / "I never kept anything, <query>"
    monkeypatch.setattr(services.models, "get", lambda spec=None, device=None, **kw: model)
    config, cid = services.training.pairs_config(name, "tiny", method="lcm", margin=0.0, profile="embedded", device="cpu",
                                                 scoring_workers=2)  # fmt: skip
    row = services.jobs.start("pairs", config, character_id=cid)
    assert row["status"] == "done", row["error"]
    assert any(line["message"] == "scoring sharded over 2 workers: cpu, cpu" for line in services.jobs.logs(row["id"]))
    stored = services.training.pairs.rows(cid)
    assert stored and row["artifacts"]["pairs_kept"] == len(stored)
    one = ApcScorer(load_profile("embedded", device="cpu"))
    for r in stored:
        query = [t["content"] for t in json.loads(r["prompt_json"]) if t["role"] == "user"][-1]
        chosen, rejected = one.score(name, statements, query, [r["chosen"], r["rejected"]])
        assert abs(chosen.apc - r["chosen_apc"]) < 1e-4 and abs(rejected.apc - r["rejected_apc"]) < 1e-4
