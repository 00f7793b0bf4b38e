"""TUI fixtures: the app built by `make_app` over real services on a real SQLite file.

`tui_services` holds the demo characters (seeded like `apc` does on first run); `scored_services`
also scores with the tiny local discriminators (`tiny_profile`) and generates with the `tiny`
model, so the whole chat -> vote -> train -> evaluate flow runs offline.
"""

from __future__ import annotations

import pytest

SIZE = (100, 32)  # pilot tests; snapshots use their own fixed sizes


@pytest.fixture
def anyio_backend():
    """Async pilot tests run on asyncio through anyio's plugin (`pytestmark = pytest.mark.anyio`)."""
    return "asyncio"


@pytest.fixture
def tui_services(db_path, monkeypatch):
    """Demo characters on a fresh SQLite file; annotator `tester`; model `tiny`; no scoring needed."""
    from apc_tui.config import load_settings
    from apc_tui.factory import build_services

    monkeypatch.setenv("APC_ANNOTATOR", "tester")
    monkeypatch.setenv("APC_MODEL", "tiny")
    services = build_services(load_settings())
    services.characters.seed_demo()
    return services


@pytest.fixture
def scored_services(tmp_path, tiny_profile, monkeypatch):
    from apc_tui.config import load_settings
    from apc_tui.factory import build_services

    monkeypatch.setenv("APC_PROFILE", tiny_profile)
    monkeypatch.setenv("APC_MODEL", "tiny")
    monkeypatch.setenv("APC_DEVICE", "cpu")
    monkeypatch.setenv("APC_ANNOTATOR", "tester")
    services = build_services(load_settings())
    services.characters.seed_demo()
    return services


@pytest.fixture
def make_tui():
    """make_tui(services, **options) -> the app, as `apc` builds it."""
    from apc_tui.app import make_app

    return make_app


async def settle(pilot, app) -> None:
    """Let every running worker finish and the screen catch up with their messages."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def fake_score(response: str, statements: list[str], pattern: list[tuple[float, float, float]], profile: str = "test"):
    """An ApcScore with chosen (p_yes, p_entailed, p_contradicted) per statement (cycled)."""
    from engine.types import ApcScore, StatementScore

    terms = []
    for i, s in enumerate(statements):
        y, e, c = pattern[i % len(pattern)]
        terms.append(StatementScore(statement=s, p_yes=y, p_contradicted=c, p_neutral=max(0.0, 1 - e - c), p_entailed=e))
    return ApcScore(response=response, terms=tuple(terms), profile=profile)


GOOD = [(0.9, 0.8, 0.05), (0.1, 0.2, 0.05), (0.2, 0.1, 0.1)]
BAD = [(0.9, 0.05, 0.85), (0.1, 0.1, 0.3), (0.2, 0.1, 0.6)]


def seed_conversation(services, character: str = "Kaito Renn", turns: tuple[tuple[str, str, str], ...] = (
    ("Where do you live?", "I live in a capsule flat on the 41st floor of the Hollow Spire.", "I live on a farm far from any city."),
    ("What is your job?", "I am a courier; I never run the same route twice a week.", "I am a banker and I love my office."),
)) -> dict:
    """A stored conversation with two scored candidates per user turn (deterministic: no model)."""
    from engine.types import Candidate, GenerationParams, Turn

    from apc_tui.storage.conversations import ConversationRepo

    repo = ConversationRepo(services.store)
    c = services.characters.get(character)
    enabled = list(c.enabled_statements)
    texts = [s.text for s in enabled]
    conv = repo.create(c.id, turns[0][0])
    parent, out = None, {"conversation_id": conv, "turns": []}
    for query, good, bad in turns:
        user = repo.add_user(conv, parent, query)
        prompt = (Turn("system", f"You are {c.name}."), *repo.turns(user))
        cands = [
            Candidate(text, "tiny", "rag", prompt, GenerationParams(seed=1), tuple(texts[:3]), fake_score(text, texts, pattern))
            for text, pattern in ((good, GOOD), (bad, BAD))
        ]
        ids = repo.add_candidates(conv, user, cands, k=5, query=query, character_id=c.id, statement_ids=[s.id for s in enabled])
        out["turns"].append({"user": user, "candidates": ids})
        parent = ids[0]
    return out
