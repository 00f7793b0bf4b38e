"""Evaluation: generate per method, score with APC, summarise as the paper's tables (ΔAPC with a
95% interval, active and passive parts), and human-APC agreement statistics. Pure engine: no DB."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from engine.errors import Cancelled
from engine.types import ApcScore, Candidate, Character, GenerationParams, Turn

Progress = Callable[[int, int, str], None]
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same samples always give the same interval


@dataclass(frozen=True)
class MethodResult:
    method: str
    variant: str  # base | adapter
    n: int
    delta_apc_mean: float
    ci_low: float
    ci_high: float
    active_mean: float
    passive_mean: float
    apc_mean: float

    def to_dict(self) -> dict:
        return asdict(self)


def mean_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
            seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean with a fixed seed."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no values to summarise")
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return mean, mean, mean
    rng = random.Random(seed)
    n = len(vals)
    means = sorted(sum(vals[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = means[int(tail * (resamples - 1))]
    high = means[int((1 - tail) * (resamples - 1))]
    return mean, low, high


def summarize(method: str, variant: str, samples: Sequence[ApcScore | dict]) -> MethodResult:
    """Means over scored samples (ApcScore objects or rows with apc/delta_apc/active/passive)."""
    def get(s, name):
        return float(s[name]) if isinstance(s, dict) else float(getattr(s, name))

    deltas = [get(s, "delta_apc") for s in samples]
    mean, low, high = mean_ci(deltas)
    n = len(samples)
    return MethodResult(
        method, variant, n, mean, low, high,
        active_mean=sum(get(s, "active") for s in samples) / n,
        passive_mean=sum(get(s, "passive") for s in samples) / n,
        apc_mean=sum(get(s, "apc") for s in samples) / n,
    )  # fmt: skip


def statement_queries(character: Character) -> list[str]:
    """Last-resort evaluation utterances, one per enabled statement, when no queries were synthesized."""
    return [f"Is this true about you: {s.text}" for s in character.enabled_statements]


def generate_and_score(
    model,
    scorer,
    character: Character,
    queries: Sequence[str],
    method: str,
    k: int = 5,
    params: GenerationParams | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    on_sample: Callable[[str, Candidate], None] | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
    concurrency: int = 1,
) -> list[tuple[str, Candidate]]:
    """One reply per query (single turn), scored against every enabled statement; with a model
    server, up to `concurrency` generations in flight (engine.serving), results in query order."""
    from engine.chat import _scored
    from engine.rag import build_prompt
    from engine.serving import generate_in_order

    params = params or GenerationParams()
    todo = [q for q in queries if q not in skip]
    out = []
    generated = generate_in_order(lambda i: build_prompt(character, (Turn("user", todo[i]),), method, k, scorer),
                                  lambda built: model.generate(built.messages, 1, params), range(len(todo)), concurrency, stop)  # fmt: skip
    for i, built, texts in generated:
        if stop is not None and stop.is_set():
            raise Cancelled("evaluation stopped on request")
        query = todo[i]
        cand = _scored(model, character, (Turn("user", query),), method, built, texts, [params] * len(texts), scorer, stop)[0]
        if cand.score is None:
            raise ValueError("respond() returned an unscored candidate; pass a scorer")
        out.append((query, cand))
        if on_sample is not None:
            on_sample(query, cand)
        if progress is not None:
            progress(i + 1, len(todo), f"{method}: {i + 1}/{len(todo)}")
    return out


# -- agreement ------------------------------------------------------------------------------------
def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters on the same items; None when undefined (no items, or chance = 1)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


def fleiss_kappa(items: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa; each item is the labels of its raters (the same number of raters per item)."""
    if not items:
        return None
    m = len(items[0])
    if m < 2 or any(len(labels) != m for labels in items):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings per item")
    n = len(items)
    categories = sorted({lab for labels in items for lab in labels})
    counts = [Counter(labels) for labels in items]
    p_item = [(sum(c[k] ** 2 for k in categories) - m) / (m * (m - 1)) for c in counts]
    p_bar = sum(p_item) / n
    p_cat = [sum(c[k] for c in counts) / (n * m) for k in categories]
    p_e = sum(p**2 for p in p_cat)
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1 - p_e)
