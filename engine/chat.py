"""One chat step: build the prompt once, sample n candidates, score them all in one scorer call.

`respond` samples the n candidates in one generation call; `respond_streaming` generates them one
after another through `model.stream`, reporting the text as it arrives (the TUI shows it live).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from engine.errors import Cancelled, InputError
from engine.rag import PromptBuild, build_prompt, latest_user_turn
from engine.types import Candidate, Character, GenerationParams, Turn

OnDelta = Callable[[int, str], None]  # (candidate index, its text so far)


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
    return _scored(model, character, history, method, built, texts, [params] * len(texts), scorer)


def respond_streaming(
    model,
    character: Character,
    history: Sequence[Turn],
    method: str = "rag",
    k: int = 5,
    n: int = 2,
    params: GenerationParams = GenerationParams(),
    scorer=None,
    on_delta: OnDelta | None = None,
    progress=None,
    stop=None,
) -> list[Candidate]:
    """Like `respond`, but the n candidates are streamed one after another with `model.stream`.

    `on_delta(i, text_so_far)` runs as candidate i's tokens arrive (leading whitespace dropped);
    `progress(i + 1, n, text)` runs when candidate i is complete, before the one scorer call.
    With `params.seed` set, candidate i samples with seed + i (stored in its params), so each
    reply is reproducible on its own. Setting `stop` raises Cancelled between tokens.
    """
    if n < 1:
        raise InputError(f"n={n}: ask for at least one reply")
    built = build_prompt(character, history, method, k, scorer)
    texts: list[str] = []
    used = [candidate_params(params, i) for i in range(n)]
    for i, p in enumerate(used):
        parts: list[str] = []
        for delta in model.stream(built.messages, p):
            if stop is not None and stop.is_set():
                raise Cancelled("sampling stopped on request")
            parts.append(delta)
            if on_delta is not None:
                on_delta(i, "".join(parts).lstrip())
        texts.append("".join(parts).strip())
        if progress is not None:
            progress(i + 1, n, f"candidate {i + 1}/{n} generated")
    return _scored(model, character, history, method, built, texts, used, scorer, stop)


def candidate_params(params: GenerationParams, index: int) -> GenerationParams:
    """The params candidate `index` is sampled with on its own: seed + index when a seed is set."""
    return params if params.seed is None or index == 0 else replace(params, seed=params.seed + index)


def _scored(model, character, history, method, built: PromptBuild, texts, params, scorer, stop=None) -> list[Candidate]:
    """The candidates, scored in ONE scorer call over every enabled statement (None when unscored)."""
    scores: list = [None] * len(texts)
    statements = [s.text for s in character.enabled_statements]
    if scorer is not None and statements and texts:
        scores = scorer.score(character.name, statements, latest_user_turn(history), texts, stop=stop)
    return [
        Candidate(
            text=text,
            model_spec=model.spec,
            method=method,
            prompt=built.messages,
            params=p,
            retrieved=built.retrieved,
            score=score,
        )
        for text, p, score in zip(texts, params, scores, strict=True)
    ]
