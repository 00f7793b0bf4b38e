"""The APC scorer: relevance once per (statement, query), NLI for every (statement, response), batched.

The formula lives in engine.types (StatementScore / ApcScore); this module only gathers the
probabilities it needs, as few model calls as possible.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from engine.discriminators.formats import NliItem, RelevanceItem
from engine.types import ApcScore, StatementScore

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ScoreRequest:
    """Score every response to `query` against every statement of `character`."""

    character: str
    statements: tuple[str, ...]
    query: str
    responses: tuple[str, ...]

    @classmethod
    def of(cls, character, statements, query: str, responses: Sequence[str]) -> ScoreRequest:
        return cls(_name(character), _texts(statements), query, tuple(responses))


class RelevanceCache:
    """P(yes) per (discriminator identity, character, statement, query); a bounded LRU owned by a scorer."""

    def __init__(self, max_items: int = 200_000):
        self.max_items = max_items
        self._data: OrderedDict[tuple, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> float | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: tuple, value: float) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# Pairs per forward pass. On CPU 32 is as fast per pair as anything larger (bench/scoring.py);
# on a GPU larger batches pay: bf16 DeBERTa-v3-large scored 3-4x faster at 128 than at 32 on an
# H100 (bench/gpu.py, bench/RESULTS.md).
CPU_BATCH, GPU_BATCH = 32, 128


def default_batch_size(pair) -> int:
    devices = (str(getattr(d, "device", "cpu")) for d in (pair.relevance, pair.nli))
    return GPU_BATCH if any(d.startswith("cuda") for d in devices) else CPU_BATCH


class ApcScorer:
    """Scores responses with a DiscriminatorPair; retrieval shares it to reuse relevance."""

    def __init__(self, pair, cache: RelevanceCache | None = None, batch_size: int | None = None):
        self.pair = pair
        self.cache = cache if cache is not None else RelevanceCache()
        self.batch_size = batch_size or default_batch_size(pair)

    @property
    def profile(self) -> str:
        return self.pair.profile

    # -- relevance -------------------------------------------------------------------------
    def relevance(self, character, statements, query: str, progress: Progress | None = None, stop=None) -> np.ndarray:
        """P(yes | statement, query) per statement, in order; cached."""
        return self.relevance_many([(character, statements, query)], progress=progress, stop=stop)[0]

    def relevance_many(self, requests: Sequence[tuple], progress: Progress | None = None, stop=None) -> list[np.ndarray]:
        """P(yes) arrays for several (character, statements, query); all misses go in one predict call."""
        disc = self.pair.relevance
        keyed = [[(disc.identity, _name(c), s, q) for s in _texts(st)] for c, st, q in requests]
        found: dict[tuple, float] = {}
        missing: dict[tuple, None] = {}  # ordered set
        for keys in keyed:
            for key in keys:
                if key in found or key in missing:
                    continue
                value = self.cache.get(key)
                if value is None:
                    missing[key] = None
                else:
                    found[key] = value
        if missing:
            items = [RelevanceItem(c, s, q) for _, c, s, q in missing]
            yes = disc.labels.index("yes")
            probs = disc.predict(items, batch_size=self.batch_size, progress=progress, stop=stop)
            for key, row in zip(missing, probs, strict=True):
                found[key] = float(row[yes])
                self.cache.put(key, found[key])
        return [np.array([found[k] for k in keys], dtype=np.float64) for keys in keyed]

    # -- APC -------------------------------------------------------------------------------
    def score(self, character, statements, query: str, responses: Sequence[str], progress=None, stop=None) -> list[ApcScore]:
        """One ApcScore per response, every per-statement term kept."""
        return self.score_many([ScoreRequest.of(character, statements, query, responses)], progress=progress, stop=stop)[0]

    def score_many(self, requests: Sequence[ScoreRequest], progress: Progress | None = None, stop=None) -> list[list[ApcScore]]:
        """Batch across queries: one relevance call for all misses, one NLI call for all pairs."""
        requests = [r if isinstance(r, ScoreRequest) else ScoreRequest.of(*r) for r in requests]
        p_yes = self.relevance_many(
            [(r.character, r.statements, r.query) for r in requests], progress=_phase(progress, "relevance"), stop=stop
        )
        index: dict[NliItem, int] = {}
        for r in requests:
            for s in r.statements:
                for resp in r.responses:
                    index.setdefault(NliItem(r.character, s, r.query, resp), len(index))
        nli = self.pair.nli
        probs = nli.predict(list(index), batch_size=self.batch_size, progress=_phase(progress, "nli"), stop=stop)
        cols = [nli.labels.index(label) for label in ("contradicted", "neutral", "entailed")]
        results = []
        for r, yes in zip(requests, p_yes, strict=True):
            scores = []
            for resp in r.responses:
                terms = []
                for s, py in zip(r.statements, yes, strict=True):
                    row = probs[index[NliItem(r.character, s, r.query, resp)]]
                    c, n, e = (float(row[i]) for i in cols)
                    terms.append(StatementScore(statement=s, p_yes=py, p_contradicted=c, p_neutral=n, p_entailed=e))
                scores.append(ApcScore(response=resp, terms=tuple(terms), profile=self.profile))
            results.append(scores)
        return results


def _phase(progress: Progress | None, name: str) -> Progress | None:
    if progress is None:
        return None
    return lambda done, total, text="": progress(done, total, f"{name}: {text}" if text else name)


def _name(character) -> str:
    return getattr(character, "name", character)


def _texts(statements) -> tuple[str, ...]:
    if hasattr(statements, "enabled_statements"):  # a Character
        statements = statements.enabled_statements
    return tuple(getattr(s, "text", s) for s in statements)
