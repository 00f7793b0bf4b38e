"""Generation at scale through a model server: `n` candidates per request, bounded concurrency
with results in query order, against the real local OpenAI-protocol server; option checks."""

from __future__ import annotations

import threading

import pytest

from engine.errors import Cancelled, InputError
from tests.fixtures_dpo import CHARACTER, STATEMENTS, TRAIN_QUERIES


def test_generations_overlap_up_to_the_bound_and_come_back_in_order():
    from engine.serving import generate_in_order

    barrier = threading.Barrier(3, timeout=20)  # only passes when 3 generations are in flight at once
    lock, live, peak = threading.Lock(), [0], [0]

    def generate(built):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        if built < 6:
            barrier.wait()
        with lock:
            live[0] -= 1
        return [f"reply {built}"]

    built_in: list[str] = []

    def build(i):
        built_in.append(threading.current_thread().name)
        return i

    out = list(generate_in_order(build, generate, list(range(7)), concurrency=3))
    assert [i for i, _, _ in out] == list(range(7)) and [r for _, _, r in out] == [[f"reply {i}"] for i in range(7)]
    assert peak[0] == 3 and set(built_in) == {threading.current_thread().name}  # prompts (and retrieval) stay in this thread


def test_stop_cancels_the_generations_not_started():
    from engine.serving import generate_in_order

    stop, calls = threading.Event(), []

    def generate(built):
        calls.append(built)
        stop.set()
        return ["x"]

    with pytest.raises(Cancelled):
        list(generate_in_order(lambda i: i, generate, list(range(50)), concurrency=2, stop=stop))
    assert len(calls) <= 4


def test_concurrency_needs_a_model_server():
    from engine.serving import check_concurrency

    check_concurrency("openai:gemma", 16)
    check_concurrency("tiny", 1)
    with pytest.raises(InputError, match="--concurrency 4 with --model tiny: concurrent requests need a model server"):
        check_concurrency("tiny", 4)
    with pytest.raises(InputError, match="--concurrency 0: give 1 or more"):
        check_concurrency("openai:x", 0)


def test_pairs_through_the_server_are_the_same_at_any_concurrency(fake_openai, keyword_scorer):
    """Two candidates per query in one request (n=2), several requests in flight, same pairs."""
    from engine.backends import load_model
    from engine.dpo import build_apc_pairs
    from engine.types import Character, Statement

    character = Character(CHARACTER, statements=tuple(Statement(s) for s in STATEMENTS))
    model = load_model("openai:echo")
    queries = [f"{q} never mind ({i})" if i % 2 else f"{q} ({i})" for i, q in enumerate(TRAIN_QUERIES * 3)]
    runs, seen = {}, {}
    for concurrency in (1, 4):
        fake_openai.reset()
        results: list = []
        kept = build_apc_pairs(model, keyword_scorer, character, queries, method="lcm", margin=0.0, max_pairs=100,
                               concurrency=concurrency,
                               on_result=lambda i, sp, cands: results.append((i, *[(c.text, round(c.score.apc, 6)) for c in cands])))  # fmt: skip
        sent = fake_openai.calls("echo")
        assert len(sent) == len(queries) and all(r["n"] == 2 for r in sent)  # one request per query, both candidates
        runs[concurrency] = [(p.index, p.pair.chosen, p.pair.rejected) for p in kept]
        seen[concurrency] = results
    assert [i for i, *_ in seen[4]] == list(range(len(queries)))  # stored in query order
    assert seen[1] == seen[4] and runs[1] == runs[4]
    assert {apc for _, (_, apc), _ in seen[4]} != {seen[4][0][1][1]}  # the queries really differ in APC (some say "never")


def test_pairs_and_eval_configs_check_scale_options(dpo_services):
    with pytest.raises(InputError, match="--scoring-workers 0: give 1 or more"):
        dpo_services.training.pairs_config(CHARACTER, "tiny", scoring_workers=0)
    with pytest.raises(InputError, match="concurrent requests need a model server"):
        dpo_services.evaluation.eval_config(CHARACTER, "tiny", ["none"], concurrency=8)
    config, _ = dpo_services.training.pairs_config(CHARACTER, "openai:gemma", scoring_workers=2, concurrency=8)
    assert (config["scoring_workers"], config["concurrency"]) == (2, 8)
