"""Scoring use cases: APC of responses, discriminator evaluation and training.

The discriminator pair loads lazily, once per (profile, device), on first use: commands that
never score never import torch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError
from engine.types import ApcScore

from ..config import Settings
from ..storage import Store
from ..storage.characters import CharacterRepo
from ..storage.scores import ScoreRepo


@dataclass(frozen=True)
class ScoringResult:
    character: str
    profile: str
    statements: tuple[str, ...]
    query: str
    scores: list[ApcScore]
    score_ids: list[int] = field(default_factory=list)
    notes: tuple[str, ...] = ()  # e.g. judge answers read from text instead of log-probs

    def to_dict(self) -> dict:
        return {
            "character": self.character,
            "profile": self.profile,
            "n_statements": len(self.statements),
            "query": self.query,
            "results": [s.to_dict() for s in self.scores],
        }


class ScoringService:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.characters = CharacterRepo(store)
        self.scores = ScoreRepo(store)
        self._scorers: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    # -- the scorer ------------------------------------------------------------------------
    def scorer(self, profile: str | None = None, device: str | None = None):
        """The ApcScorer for a profile (default: settings), built once; retrieval shares its relevance cache."""
        key = (profile or self.settings.profile, device or self.settings.device)
        with self._lock:
            if key not in self._scorers:
                from engine.apc import ApcScorer
                from engine.discriminators import load_profile

                pair = load_profile(key[0], device=key[1], trust_remote_code=self.settings.trust_remote_code)
                self._scorers[key] = ApcScorer(pair)
            return self._scorers[key]

    @contextmanager
    def bulk_scorer(self, profile: str | None = None, device: str | None = None, workers: int | None = None) -> Iterator:
        """The scorer for long work (pairs, eval, rescoring): with several devices, one replica per
        device in its own process (engine.discriminators.sharded), closed on exit; else the cached one.
        `workers`: None = every visible CUDA GPU when scoring on CUDA, else 1; N with --device cpu = N CPU workers."""
        from engine.discriminators.sharded import scoring_devices

        devices = scoring_devices(device or self.settings.device, workers)
        if len(devices) == 1:
            yield self.scorer(profile, device)
            return
        from engine.apc import ApcScorer
        from engine.discriminators.sharded import ShardedPair

        pair = ShardedPair.open(profile or self.settings.profile, devices, trust_remote_code=self.settings.trust_remote_code)
        try:
            yield ApcScorer(pair)
        finally:
            pair.close()

    # -- APC -------------------------------------------------------------------------------
    def score(
        self,
        character: str | Sequence[str],
        query: str,
        responses: Sequence[str],
        *,
        name: str = "",
        persist: bool = False,
        profile: str | None = None,
        device: str | None = None,
        progress=None,
        stop=None,
    ) -> ScoringResult:
        """Score responses against a stored character (by name) or a list of statements (with `name`)."""
        if not query.strip():
            raise InputError("the query is empty; pass --query with the user's utterance")
        responses = list(responses)
        if not responses or any(not r.strip() for r in responses):
            raise InputError("give at least one non-empty response (--response TEXT, repeatable)")
        character_id, statement_ids = None, None
        if isinstance(character, str):
            stored = self.characters.get(character)
            name, character_id = stored.name, stored.id
            enabled = stored.enabled_statements
            statements = tuple(s.text for s in enabled)
            statement_ids = [s.id for s in enabled]
            if not statements:
                raise InputError(f"{name!r} has no enabled statements; add some with `apc statements add`")
        else:
            statements = tuple(character)
            if not statements:
                raise InputError("no statements to score against; give at least one")
            if not name.strip():
                raise InputError("statements need the character's name (the discriminators read it)")
        scorer = self.scorer(profile, device)
        before = _fallback_counts(scorer.pair)
        scores = scorer.score(name, statements, query, responses, progress=progress, stop=stop)
        ids = []
        if persist:
            ids = self.scores.save_many(scores, query=query, character_id=character_id, statement_ids=statement_ids)
        return ScoringResult(name, scorer.profile, statements, query, scores, ids, _judge_notes(scorer.pair, before))

    @staticmethod
    def read_statements_file(path: Path) -> tuple[str, tuple[str, ...]]:
        """(name, statements) from a statements JSON file {"name", "language", "statements": [...]}."""
        from ..importers import read_character_file

        parsed = read_character_file(Path(path))
        if len(parsed) != 1 or parsed[0].kind != "statements":
            raise InputError(f'{path}: expected one statements JSON object {{"name", "language", "statements": [...]}}')
        statements = tuple(text for text, _, _ in parsed[0].statements)
        if not statements:
            raise InputError(f'{path}: "statements" is empty; add at least one statement')
        return parsed[0].name, statements

    # -- discriminators ----------------------------------------------------------------------
    def evaluate_discriminator(self, task: str, data: Path | None, *, profile: str | None = None,
                               device: str | None = None, progress=None, stop=None) -> dict:  # fmt: skip
        """Accuracy, per-label P/R/F1 and confusion of the profile's `task` discriminator on a labelled
        JSONL (none: nothing measured now), plus what was recorded at training time on held-out
        characters ("recorded": empty for a model without that record, e.g. a hub checkpoint)."""
        from engine.discriminators.base import task_labels
        from engine.discriminators.data import read_labelled
        from engine.metrics import evaluate_discriminator

        task_labels(task)
        rows = read_labelled(data, task) if data is not None else None  # bad rows fail before any model loads
        pair = self.scorer(profile, device).pair
        disc = pair.relevance if task == "relevance" else pair.nli
        metrics = (getattr(disc, "meta", None) and disc.meta.metrics) or {}
        recorded = {k: metrics[k] for k in ("heldout_characters", "apc_ranking_heldout") if k in metrics}
        report = evaluate_discriminator(disc, rows, progress=progress, stop=stop) if rows is not None else {"task": task}
        return {**report, "profile": pair.profile, "recorded": recorded}

    def train_discriminator(self, config, progress=None, stop=None):
        """Fine-tune a discriminator (engine.disc_train.TrainConfig) and return its TrainReport."""
        from engine.disc_train import train_discriminator

        return train_discriminator(config, progress=progress, stop=stop)


def _fallback_counts(pair) -> dict[str, tuple[int, int]]:
    return {d.task: (getattr(d, "fallback_calls", 0), getattr(d, "unparsed", 0)) for d in (pair.relevance, pair.nli)}


def _judge_notes(pair, before: dict[str, tuple[int, int]]) -> tuple[str, ...]:
    """Say so when a judge read answers from text in this call (its backend gave no log-probs)."""
    notes = []
    for task, (fallback, unparsed) in _fallback_counts(pair).items():
        fallback, unparsed = fallback - before[task][0], unparsed - before[task][1]
        if fallback:
            notes.append(f"{task} judge: {fallback} answer(s) read from text (no log-probs from the backend), {unparsed} unparsed")
    return tuple(notes)
