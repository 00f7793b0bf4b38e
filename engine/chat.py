"""One chat step: build the prompt once, sample n candidates in one call, score them in one call."""

from __future__ import annotations

from collections.abc import Sequence

from engine.rag import build_prompt, latest_user_turn
from engine.types import Candidate, Character, GenerationParams, Turn


def respond(
    model,
    character: Character,
    history: Sequence[Turn],
    method: str = "rag",
    k: int = 5,
    n: int = 2,
    params: GenerationParams = GenerationParams(),
    scorer=None,
) -> list[Candidate]:
    """n candidates, each carrying the exact prompt, the retrieved statements, the params and its APC.

    Scoring uses every enabled statement (APC is global); with rag, relevance for this utterance
    is already in the scorer's cache from retrieval.
    """
    built = build_prompt(character, history, method, k, scorer)
    texts = model.generate(built.messages, n, params)
    scores: list = [None] * len(texts)
    statements = [s.text for s in character.enabled_statements]
    if scorer is not None and statements and texts:
        scores = scorer.score(character.name, statements, latest_user_turn(history), texts)
    return [
        Candidate(
            text=text,
            model_spec=model.spec,
            method=method,
            prompt=built.messages,
            params=params,
            retrieved=built.retrieved,
            score=score,
        )
        for text, score in zip(texts, scores, strict=True)
    ]
