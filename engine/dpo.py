"""DPO preference pairs ranked by APC (the paper's stage 7), and the pair hashing that dedups them.

For each query: sample TWO candidates in one `generate(n=2)` call, score both with the APC scorer,
keep the pair when the APC difference exceeds `margin` (higher APC = chosen). Pure engine: no DB.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from engine.errors import Cancelled, InputError
from engine.types import Candidate, Character, GenerationParams, PreferencePair, Turn

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ScoredPair:
    """A kept pair with both scored candidates (their exact prompt, retrieval and scores)."""

    index: int  # position of the query in the input
    query: str
    pair: PreferencePair
    chosen: Candidate
    rejected: Candidate


def prompt_json(prompt: Sequence[Turn]) -> str:
    """Canonical JSON of a prompt: the form hashed and stored."""
    return json.dumps([{"role": t.role, "content": t.content} for t in prompt], ensure_ascii=False, separators=(",", ":"))


def pair_key(prompt: Sequence[Turn], reply_a: str, reply_b: str) -> str:
    """Order-free hash of (prompt, two replies): the same two replies to the same prompt are one pair,
    whichever was chosen, so a human label replaces APC's instead of duplicating it."""
    a, b = sorted((reply_a, reply_b))
    return hashlib.sha256("\x1e".join((prompt_json(prompt), a, b)).encode("utf-8")).hexdigest()


def pairs_sha256(pairs: Sequence[PreferencePair]) -> str:
    """Fingerprint of a training set (content and direction of every pair, in order): adapter lineage."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([prompt_json(p.prompt), p.chosen, p.rejected, p.weight], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def rank_pair(
    prompt: Sequence[Turn], a: Candidate, b: Candidate, apc_a: float, apc_b: float, margin: float, *,
    model_spec: str = "", method: str = "",
) -> PreferencePair | None:
    """The APC-ranked pair, or None when the replies are equal or their APC gap is within `margin`."""
    if a.text.strip() == b.text.strip() or abs(apc_a - apc_b) <= margin:
        return None
    (win, win_apc), (lose, lose_apc) = sorted(((a, apc_a), (b, apc_b)), key=lambda x: x[1], reverse=True)
    return PreferencePair(
        prompt=tuple(prompt),
        chosen=win.text,
        rejected=lose.text,
        source="apc",
        chosen_apc=win_apc,
        rejected_apc=lose_apc,
        model_spec=model_spec,
        method=method,
        weight=win_apc - lose_apc,  # the APC gap: the per-pair weight of the weighted (Eq. 9) variant
    )


def build_apc_pairs(
    model,
    scorer,
    character: Character,
    queries: Sequence[str],
    method: str = "rag",
    k: int = 5,
    margin: float = 0.2,
    max_pairs: int = 100,
    params: GenerationParams | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    on_result: Callable[[int, ScoredPair | None, tuple[Candidate, ...]], None] | None = None,
    skip: set[int] | frozenset[int] = frozenset(),
    concurrency: int = 1,
) -> list[ScoredPair]:
    """APC-ranked pairs for up to `max_pairs` queries (the paper's `max_dpo_data`).

    Both replies of a query come from one generation call (n=2); with a model server, up to
    `concurrency` queries are in flight (engine.serving), results still in query order.
    `on_result(index, pair_or_None, candidates)` is called after each query, so a caller can store
    pairs as they come and checkpoint; `skip` holds query indices already done (resume).
    """
    from engine.chat import _scored
    from engine.rag import build_prompt
    from engine.serving import generate_in_order

    if margin < 0:
        raise InputError(f"margin {margin}: must be >= 0 (the paper uses 0.2)")
    if not character.enabled_statements:
        raise InputError(f"character {character.name!r} has no enabled statements; APC needs at least one")
    params = params or GenerationParams()
    if max_pairs < 1:
        return []
    todo = [i for i in range(len(queries)) if i not in skip]
    kept: list[ScoredPair] = []
    generated = generate_in_order(lambda i: build_prompt(character, (Turn("user", queries[i]),), method, k, scorer),
                                  lambda built: model.generate(built.messages, 2, params), todo, concurrency, stop)  # fmt: skip
    for done, (i, built, texts) in enumerate(generated):
        if stop is not None and stop.is_set():
            raise Cancelled("pair building stopped on request")
        query = queries[i]
        history = (Turn("user", query),)
        cands = _scored(model, character, history, method, built, texts, [params] * len(texts), scorer, stop)
        if len(cands) < 2:
            raise InputError(f"model {getattr(model, 'spec', model)!r} returned {len(cands)} candidate(s) for n=2")
        a, b = cands[0], cands[1]
        scores = [c.score for c in (a, b)]
        if any(s is None for s in scores):
            scores = scorer.score(character, character.enabled_statements, query, [a.text, b.text], stop=stop)
            a, b = replace(a, score=scores[0]), replace(b, score=scores[1])
        pair = rank_pair(a.prompt, a, b, scores[0].apc, scores[1].apc, margin, model_spec=a.model_spec, method=method)
        scored = None
        if pair is not None:
            chosen, rejected = (a, b) if pair.chosen == a.text else (b, a)
            scored = ScoredPair(i, query, pair, chosen, rejected)
            kept.append(scored)
        if on_result is not None:
            on_result(i, scored, (a, b))
        if progress is not None:
            progress(done + 1, len(todo), f"{len(kept)} pairs kept (|ΔAPC| > {margin})")
        if len(kept) >= max_pairs:
            break
    generated.close()  # what is still in flight is not needed
    return kept
