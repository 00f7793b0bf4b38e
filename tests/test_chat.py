"""Prompt building (none/lcm/rag/eu), one-call sampling, streamed sampling, scoring, the chat service and CLI."""

from __future__ import annotations

import numpy as np
import pytest

from engine.chat import respond
from engine.errors import InputError
from engine.rag import build_prompt
from engine.types import ApcScore, Character, GenerationParams, Statement, StatementScore, Turn

STATEMENTS = [
    "Alice Liddell lives in Oxford.",
    "Alice Liddell has a cat named Dinah.",
    "Alice Liddell loves tea parties.",
    "Alice Liddell is afraid of the Queen of Hearts.",
    "Alice Liddell follows a white rabbit.",
    "Alice Liddell dislikes arithmetic.",
    "Alice Liddell is seven years old.",
]
ALICE = Character("Alice Liddell", "en", tuple(Statement(s, id=i + 1) for i, s in enumerate(STATEMENTS)))
FAST = GenerationParams(max_new_tokens=6, seed=1)


class FakeScorer:
    """P(yes) = word overlap with the query; counts calls so tests can check reuse."""

    profile = "fake"

    def __init__(self):
        self.relevance_calls = 0
        self.score_calls = []

    def relevance(self, character, statements, query, progress=None, stop=None):
        self.relevance_calls += 1
        q = set(query.lower().strip("?").split())
        return np.array([len(q & set(s.lower().strip(".").split())) / 10 for s in statements])

    def score(self, character, statements, query, responses, progress=None, stop=None):
        self.score_calls.append(list(responses))
        p = self.relevance(character, statements, query)
        return [
            ApcScore(r, tuple(StatementScore(s, float(py), 0.1, 0.6, 0.3) for s, py in zip(statements, p, strict=True)), "fake")
            for r in responses
        ]


def test_rag_prompt_holds_exactly_the_top_k_statements():
    history = [Turn("user", "do you like tea parties and your cat Dinah?")]
    built = build_prompt(ALICE, history, "rag", k=2, scorer=FakeScorer())
    assert built.retrieved == ("Alice Liddell has a cat named Dinah.", "Alice Liddell loves tea parties.")
    system = built.messages[0].content
    assert sum(s in system for s in STATEMENTS) == 2
    assert all(s in system for s in built.retrieved)
    assert built.messages[1:] == tuple(history)


def test_rag_k_larger_than_statements_and_disabled_statements():
    char = Character("Alice Liddell", "en", (Statement(STATEMENTS[0]), Statement(STATEMENTS[1], enabled=False)))
    built = build_prompt(char, [Turn("user", "where do you live?")], "rag", k=5, scorer=FakeScorer())
    assert built.retrieved == (STATEMENTS[0],)


def test_methods_none_lcm_eu_and_multi_turn():
    history = [Turn("user", "hi"), Turn("assistant", "hello!"), Turn("user", "where do you live?")]
    none = build_prompt(ALICE, history, "none")
    assert "Alice Liddell" in none.messages[0].content and not any(s in none.messages[0].content for s in STATEMENTS)
    assert none.messages[1:] == tuple(history)  # the whole history goes to the model
    lcm = build_prompt(ALICE, history, "lcm")
    assert all(s in lcm.messages[0].content for s in STATEMENTS) and lcm.retrieved == tuple(STATEMENTS)
    assert build_prompt(ALICE, history, "eu").messages[0] == none.messages[0]
    zh = build_prompt(Character("爱丽丝", "zh", (Statement("爱丽丝住在牛津。"),)), history, "lcm")
    assert "扮演爱丽丝" in zh.messages[0].content


def test_bad_method_and_missing_scorer():
    with pytest.raises(InputError, match="unknown"):
        build_prompt(ALICE, [Turn("user", "hi")], "magic")
    with pytest.raises(InputError, match="scorer"):
        build_prompt(ALICE, [Turn("user", "hi")], "rag")
    with pytest.raises(InputError, match="no user turn"):
        build_prompt(ALICE, [], "none")


def test_respond_samples_in_one_call_and_scores_in_one_call(tiny_model, monkeypatch):
    calls = []
    real = tiny_model.generate
    monkeypatch.setattr(tiny_model, "generate", lambda m, n, p: calls.append(n) or real(m, n, p))
    scorer = FakeScorer()
    cands = respond(tiny_model, ALICE, [Turn("user", "tell me about Dinah")], "rag", 3, 2, FAST, scorer)
    assert calls == [2] and len(scorer.score_calls) == 1 and len(scorer.score_calls[0]) == 2
    assert len(cands) == 2 and all(c.score.n_statements == len(STATEMENTS) for c in cands)
    assert cands[0].prompt == cands[1].prompt and len(cands[0].retrieved) == 3
    assert cands[0].model_spec == "tiny" and cands[0].params == FAST


def test_respond_streaming_reports_deltas_and_scores_once(tiny_model, tiny_pair, monkeypatch):
    from engine.apc import ApcScorer
    from engine.chat import candidate_params, respond_streaming

    scorer = ApcScorer(tiny_pair)
    calls, real = [], scorer.score
    monkeypatch.setattr(scorer, "score", lambda *a, **kw: calls.append(list(a[3])) or real(*a, **kw))
    seen: dict[int, list[str]] = {0: [], 1: []}
    done = []
    history = [Turn("user", "tell me about Dinah")]
    params = GenerationParams(max_new_tokens=8, seed=3)
    cands = respond_streaming(
        tiny_model, ALICE, history, "rag", 3, 2, params, scorer,
        on_delta=lambda i, text: seen[i].append(text), progress=lambda d, total, text: done.append((d, total)),
    )  # fmt: skip
    assert len(cands) == 2 and done == [(1, 2), (2, 2)]
    for i, c in enumerate(cands):
        texts = seen[i]
        assert texts and all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:], strict=False))
        assert c.text and c.text == texts[-1].strip()  # the reply is the deltas put together
        assert c.params == candidate_params(params, i)
    assert [c.params.seed for c in cands] == [3, 4]
    assert calls == [[c.text for c in cands]]  # ONE scorer call for both candidates
    assert all(c.score.n_statements == len(STATEMENTS) for c in cands)
    assert cands[0].prompt == cands[1].prompt and len(cands[0].retrieved) == 3
    # each candidate is reproducible on its own from the params stored with it
    assert [respond(tiny_model, ALICE, history, "rag", 3, 1, c.params, scorer)[0].text for c in cands] == [c.text for c in cands]


def test_respond_streaming_stops_on_request(tiny_model):
    import threading

    from engine.chat import respond_streaming
    from engine.errors import Cancelled

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        respond_streaming(tiny_model, ALICE, [Turn("user", "hi")], "none", n=2, params=FAST, stop=stop)


@pytest.fixture
def chat_services(services, monkeypatch):
    from apc_tui.storage.characters import CharacterRepo

    CharacterRepo(services.store).upsert(
        "Alice Liddell", language="en", source_text="", passages=[], statements=[(s, "manual", None) for s in STATEMENTS]
    )
    scorer = FakeScorer()
    monkeypatch.setattr(services.scoring, "scorer", lambda profile=None, device=None, character=None: scorer)
    return services


def test_chat_service_tree(chat_services):
    from apc_tui.services.chat import ChatOptions

    chat = chat_services.chat
    opts = ChatOptions(model="tiny", method="rag", k=2, n=2, params=FAST)
    first = chat.send("Alice Liddell", "where do you live?", opts)
    assert first["meaningless"] and len(first["candidates"]) == 2
    assert all(c["score"]["n_statements"] == len(STATEMENTS) for c in first["candidates"])
    conv, user1 = first["conversation_id"], first["user_message_id"]
    a1, a2 = (c["message_id"] for c in first["candidates"])

    # continuing without --parent follows the first candidate of the latest turn
    second = chat.send(None, "and your cat?", opts, conversation_id=conv)
    assert [m["id"] for m in chat.path(second["user_message_id"])] == [user1, a1, second["user_message_id"]]

    # branching after the second candidate; regenerating adds siblings; editing adds an 'edited' sibling
    third = chat.branch(a2, "do you like tea?", opts)
    assert chat.path(third["user_message_id"])[1]["id"] == a2
    more = chat.regenerate(user1, opts)
    assert len(chat_services.chat.repo.children(conv, user1)) == 4 and more["user_message_id"] == user1
    edited = chat.edit(a1, "I live in Oxford, with Dinah.")
    sib = chat.repo.siblings(a1)
    assert sib[-1]["id"] == edited["message_id"] and sib[-1]["origin"] == "edited" and edited["score"]

    shown = chat.show(conv)
    by_id = {m["id"]: m for m in shown["messages"]}
    assert by_id[a1]["score"]["profile"] == "fake" and by_id[a1]["meaningless"]
    assert by_id[a1]["prompt"][0]["role"] == "system" and len(by_id[a1]["retrieved"]) == 2
    assert chat.list("Alice Liddell")[0]["id"] == conv


def test_chat_service_streams_and_stores_like_send(chat_services):
    from apc_tui.services.chat import ChatOptions

    chat = chat_services.chat
    seen = []
    opts = ChatOptions(model="tiny", method="rag", k=2, n=2, params=FAST)
    out = chat.send("Alice Liddell", "where do you live?", opts, on_delta=lambda i, text: seen.append(i))
    assert set(seen) == {0, 1} and len(out["candidates"]) == 2
    stored = [m for m in chat.show(out["conversation_id"])["messages"] if m["role"] == "assistant"]
    assert [m["id"] for m in stored] == [c["message_id"] for c in out["candidates"]]
    assert [m["content"] for m in stored] == [c["text"] for c in out["candidates"]]
    assert [m["params"]["seed"] for m in stored] == [1, 2]  # each candidate's own seed
    assert all(m["score"]["profile"] == "fake" and len(m["retrieved"]) == 2 for m in stored)
    more = chat.regenerate(out["user_message_id"], opts, on_delta=lambda i, text: None)
    assert len(chat.repo.children(out["conversation_id"], out["user_message_id"])) == 4 and len(more["candidates"]) == 2


def test_chat_service_bad_input(chat_services):
    from apc_tui.services.chat import ChatOptions

    with pytest.raises(InputError, match="empty"):
        chat_services.chat.send("Alice Liddell", "  ", ChatOptions(model="tiny"))
    with pytest.raises(InputError, match="no character"):
        chat_services.chat.send("Nobody", "hi", ChatOptions(model="tiny"))
    with pytest.raises(InputError, match="no message"):
        chat_services.chat.send(None, "hi", ChatOptions(model="tiny"), parent_id=999)


def test_cli_chat_tiny_json(cli, tiny_profile, tiny_dir, tmp_path):
    import json

    card = tmp_path / "alice.json"
    card.write_text(json.dumps({"name": "Alice Liddell", "language": "en", "statements": STATEMENTS[:4]}), encoding="utf-8")
    assert cli("characters", "import", str(card)).code == 0
    args = ["chat", "--character", "Alice Liddell", "--model", "tiny", "--profile", tiny_profile, "--device", "cpu"]
    r = cli(*args, "--method", "rag", "--k", "2", "--n", "2", "--max-new-tokens", "8", "--seed", "3", "--query", "Where do you live?", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["meaningless"] is True and len(out["candidates"]) == 2
    c = out["candidates"][0]
    assert c["meaningless"] and len(c["retrieved"]) == 2 and c["score"]["n_statements"] == 4 and "apc" in c["score"]
    listed = cli("conversations", "list", "--json").json()
    assert listed[0]["id"] == out["conversation_id"]
    shown = cli("conversations", "show", str(out["conversation_id"]), "--json").json()
    assert {m["id"] for m in shown["messages"]} == {out["user_message_id"], *(c["message_id"] for c in out["candidates"])}
    text = cli("conversations", "show", str(out["conversation_id"]))
    assert "meaningless" in text.out
    bad = cli("chat", "--character", "Alice Liddell", "--model", "vllm:x", "--query", "hi")
    assert bad.code == 2 and bad.err.startswith("error: ") and "unknown scheme" in bad.err
