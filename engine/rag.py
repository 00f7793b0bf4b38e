"""Prompt building for the role-play methods: none, lcm (all statements), rag (top-k), eu.

rag ranks statements by P_rel(yes | statement, latest user utterance) through the scorer, so the
relevance computed here is cached and reused when the candidates are scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import InputError
from engine.prompts import roleplay_system
from engine.types import Character, Turn

METHODS = ("none", "lcm", "rag", "eu")


@dataclass(frozen=True)
class PromptBuild:
    messages: tuple[Turn, ...]  # exactly what the model receives
    retrieved: tuple[str, ...] = ()  # statements placed in the system prompt (lcm: all; rag: top-k)


def latest_user_turn(history: Sequence[Turn]) -> str:
    for turn in reversed(history):
        if turn.role == "user":
            return turn.content
    raise InputError("the conversation has no user turn to respond to; send a user message first")


def check_method(method: str, k: int) -> None:
    if method not in METHODS:
        raise InputError(f"method {method!r} is unknown; use one of {', '.join(METHODS)}")
    if method == "rag" and k < 1:
        raise InputError(f"k={k}: rag needs at least one statement (use --k 4..6)")


def retrieve(character: Character, query: str, k: int, scorer) -> tuple[str, ...]:
    """The k enabled statements with the highest P_rel(yes), most relevant first (ties: card order)."""
    statements = [s.text for s in character.enabled_statements]
    if not statements:
        return ()
    if scorer is None:
        raise InputError("method 'rag' needs a relevance scorer; pass one (or use --method lcm / none)")
    p_yes = np.asarray(scorer.relevance(character.name, statements, query), dtype=np.float64)
    order = np.argsort(-p_yes, kind="stable")[: min(k, len(statements))]
    return tuple(statements[i] for i in order)


def build_prompt(
    character: Character,
    history: Sequence[Turn],
    method: str = "rag",
    k: int = 5,
    scorer=None,
) -> PromptBuild:
    """System prompt for `method`, then the whole user/assistant history (multi-turn)."""
    check_method(method, k)
    query = latest_user_turn(history)
    if method == "lcm":
        retrieved = tuple(s.text for s in character.enabled_statements)
    elif method == "rag":
        retrieved = retrieve(character, query, k, scorer)
    else:  # none; eu: the adapter carries the persona, the prompt does not
        retrieved = ()
    kind = "rag" if method == "rag" else "lcm"
    system = roleplay_system(character.name, character.language, retrieved or None, kind)
    turns = tuple(t for t in history if t.role in ("user", "assistant"))
    return PromptBuild((Turn("system", system), *turns), retrieved)
