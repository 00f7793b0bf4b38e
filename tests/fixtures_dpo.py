"""DPO / jobs / evaluation fixtures: a keyword discriminator pair behind the real ApcScorer, a
scripted chat model, a stored character with train/eval queries, conversation branches, pairs.

The keyword discriminators are deterministic and readable, so tests can state which reply APC
must prefer; the scorer around them is the product's own `engine.apc.ApcScorer`.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from engine.types import NLI_LABELS, RELEVANCE_LABELS, PreferencePair, Turn

CHARACTER = "Maelle Kervran"
STATEMENTS = [
    "Maelle Kervran kept the lighthouse of Penmarch for 31 years.",
    "Maelle Kervran has a sister named Anne.",
    "Maelle Kervran loves salted butter caramel.",
]
TRAIN_QUERIES = ["How long did you keep the lighthouse?", "Do you have a sister?", "What sweets do you love?"]
EVAL_QUERIES = ["Tell me about the lighthouse years.", "Who is Anne to you?"]
_STOP = {"maelle", "kervran", "the", "for", "has", "named", "you", "did", "what", "how", "long", "about", "tell", "who", "with"}


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP}


class KeywordRelevance:
    task, labels, format, identity = "relevance", RELEVANCE_LABELS, "compact", "keyword-relevance"

    def predict(self, items, batch_size=32, progress=None, stop=None):
        return np.array([[0.1, 0.9] if _words(i.statement) & _words(i.query) else [0.9, 0.1] for i in items])


class KeywordNli:
    """contradicted when the reply says 'never', entailed when it shares a content word, else neutral."""

    task, labels, format, identity = "nli", NLI_LABELS, "compact", "keyword-nli"

    def predict(self, items, batch_size=32, progress=None, stop=None):
        rows = []
        for i in items:
            if "never" in i.response.lower():
                rows.append([0.8, 0.1, 0.1])
            elif _words(i.statement) & _words(i.response):
                rows.append([0.05, 0.15, 0.8])
            else:
                rows.append([0.1, 0.8, 0.1])
        return np.array(rows)


@pytest.fixture
def keyword_scorer():
    from engine.apc import ApcScorer
    from engine.discriminators import DiscriminatorPair

    return ApcScorer(DiscriminatorPair(KeywordRelevance(), KeywordNli(), "keyword"))


class ScriptedModel:
    """A ChatModel whose replies come from a script: reply_for(user text, n) -> n replies."""

    meaningless = False

    def __init__(self, script: dict[str, list[str]] | None = None, spec: str = "scripted"):
        self.spec = spec
        self.script = script or {}
        self.calls: list[tuple[str, int]] = []

    def generate(self, messages, n=1, params=None):
        query = [t.content for t in messages if t.role == "user"][-1]
        self.calls.append((query, n))
        replies = self.script.get(query) or [f"I keep the lighthouse, {query}", f"I never kept anything, {query}"]
        return [replies[i % len(replies)] for i in range(n)]

    def stream(self, messages, params=None):
        yield from self.generate(messages, 1, params)


@pytest.fixture
def scripted_model():
    return ScriptedModel


@pytest.fixture
def dpo_services(services, keyword_scorer, monkeypatch):
    """Services with a stored character (3 statements, 3 train + 2 eval queries) scored by the keyword scorer."""
    from apc_tui.storage import now

    services.characters.repo.upsert(CHARACTER, language="en", source_text="", passages=[],
                                     statements=[(s, "manual", None) for s in STATEMENTS])  # fmt: skip
    cid = services.characters.repo.row(CHARACTER)["id"]
    stmt_ids = [r["id"] for r in services.store.db.query("SELECT id FROM statements WHERE character_id = ? ORDER BY position", [cid])]
    with services.store.transaction() as db:
        for i, q in enumerate(TRAIN_QUERIES):
            db["queries"].insert({"character_id": cid, "statement_id": stmt_ids[i], "text": q, "split": "train", "created_at": now()})
        for i, q in enumerate(EVAL_QUERIES):
            db["queries"].insert({"character_id": cid, "statement_id": stmt_ids[i], "text": q, "split": "eval", "created_at": now()})
    monkeypatch.setattr(services.scoring, "scorer", lambda profile=None, device=None, character=None: keyword_scorer)
    services.character_id = cid
    return services


@pytest.fixture
def scripted_services(dpo_services, monkeypatch):
    """dpo_services generating with a ScriptedModel for every spec (steer it via `.scripted.script`)."""
    model = ScriptedModel()
    monkeypatch.setattr(dpo_services.models, "get", lambda spec=None, device=None, **kw: model)
    dpo_services.scripted = model
    return dpo_services


def add_branch(services, character_id: int, replies: list[str], *, query: str = "Do you have a sister?", scores: list[float] | None = None,
               scorer=None) -> list[int]:  # fmt: skip
    """A conversation with one user turn and sibling assistant replies; scored when `scorer` is given."""
    from apc_tui.storage import now
    from apc_tui.storage.convert import turns_to_json
    from apc_tui.storage.scores import ScoreRepo

    with services.store.transaction() as db:
        conv = db["conversations"].insert({"character_id": character_id, "title": "t", "created_at": now()}).last_pk
        user = db["messages"].insert({"conversation_id": conv, "parent_id": None, "role": "user", "content": query,
                                      "origin": "user", "created_at": now()}).last_pk  # fmt: skip
        prompt = turns_to_json([Turn("system", f"You are {CHARACTER}."), Turn("user", query)])
        ids = [db["messages"].insert({"conversation_id": conv, "parent_id": user, "role": "assistant", "content": r,
                                      "model_spec": "scripted", "method": "rag", "prompt_json": prompt, "origin": "model",
                                      "created_at": now()}).last_pk for r in replies]  # fmt: skip
    if scorer is not None:
        repo = ScoreRepo(services.store)
        for mid, score in zip(ids, scorer.score(CHARACTER, STATEMENTS, query, replies), strict=True):
            repo.save(score, query=query, character_id=character_id, message_id=mid)
    return ids


@pytest.fixture
def branch():
    return add_branch


def toy_pairs(n: int = 6) -> list[PreferencePair]:
    """Pairs a tiny model can learn quickly: one fixed chosen and one fixed rejected reply."""
    return [
        PreferencePair(
            prompt=(Turn("system", f"You are {CHARACTER}."), Turn("user", f"{q} ({i})")),
            chosen="I kept the lighthouse for 31 years with my sister Anne.",
            rejected="the red shrine of the city",
            source="apc", chosen_apc=2.0, rejected_apc=0.5, weight=1.5,
        )  # fmt: skip
        for i, q in enumerate((TRAIN_QUERIES * n)[:n])
    ]


@pytest.fixture(scope="session")
def one_thread_torch():
    """Torch on one thread: on a 2-core box shared with other test processes, more threads only thrash."""
    import torch

    torch.set_num_threads(1)


def store_pairs(services, character_id: int, pairs: list[PreferencePair]) -> list[int]:
    from apc_tui.storage.pairs import PairRepo

    repo = PairRepo(services.store)
    return [repo.insert(character_id, p) for p in pairs]


def wait_for(predicate, timeout: float = 120, poll: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sleepy_handler(services, ctx):
    """A job handler for runner tests: ticks until stopped or 200 ticks, checkpointing each tick."""
    start = ctx.checkpoint.get("tick", 0)
    for tick in range(start, 200):
        ctx.check_stop()
        ctx.progress(tick, 200, f"tick {tick}")
        ctx.metrics(tick, {"loss": 1.0 / (tick + 1)})
        ctx.save_checkpoint({"tick": tick + 1})
        if ctx.config.get("fast"):
            continue
        time.sleep(0.02)
    return {"ticks": 200, "started_at": start}


@pytest.fixture
def sleepy_kind(monkeypatch):
    """Register the `sleepy` job kind in this process (runner tests)."""
    from apc_tui import jobs

    monkeypatch.setitem(jobs.HANDLERS, "sleepy", "tests.fixtures_dpo:sleepy_handler")
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.05)
    return "sleepy"


def run_in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target():
        try:
            out["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def assert_model_card(adapter_dir, lineage: dict, kind: str, base_dir, data_sha256: str, settings_cls) -> None:
    """The adapter's README.md is its model card and its lineage is complete (shared by DPO and EU tests)."""
    from dataclasses import fields
    from pathlib import Path

    import yaml
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.model_card import LIBRARIES, library_versions

    adapter_dir = Path(adapter_dir)
    text = (adapter_dir / "README.md").read_text()
    header, body = text.removeprefix("---\n").split("\n---\n", 1)
    meta = yaml.safe_load(header)
    assert meta["library_name"] == "peft" and ("dpo" if kind == "dpo" else "sft") in meta["tags"]
    assert "base_model" not in meta  # a local base has no hub id to name
    rel = lineage["base"]["relative_path"]
    assert not Path(rel).is_absolute() and (adapter_dir / rel).resolve() == Path(base_dir).resolve()
    assert f'os.path.join(adapter, "{rel}")' in body and str(adapter_dir) not in text
    assert re.search(r"[\s\"`'(]" + re.escape(str(Path(base_dir).resolve())), text) is None  # no absolute path to the base
    assert lineage["data"]["sha256"] == data_sha256 and data_sha256 in body
    hp = lineage["hyperparameters"]
    assert {f.name for f in fields(settings_cls)} <= set(hp) and hp["lora_alpha"] == 2 * hp["lora_r"] and hp["device"] == "cpu"
    assert all(f"`{name}`" in body for name in hp)
    trainer = lineage["trainer_config"]
    assert trainer["learning_rate"] == hp["learning_rate"] and "lr_scheduler_type" in trainer and "output_dir" not in trainer
    if kind == "dpo":
        assert trainer["beta"] == hp["beta"] and "loss_type" in trainer
    assert lineage["versions"] == library_versions() and set(LIBRARIES) <= set(lineage["versions"])
    assert f"trl {lineage['versions']['trl']}" in body and f"peft {lineage['versions']['peft']}" in body
    assert "rewards/margins" in body if kind == "dpo" else "loss" in body
    # load it the way the card says
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(adapter_dir / rel), str(adapter_dir))
    assert any("lora_A" in n for n, _ in model.named_parameters())
