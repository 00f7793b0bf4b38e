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
from ..storage.teach import DiscVersionRepo


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


@dataclass(frozen=True)
class ActiveDiscriminators:
    """Which discriminators score a character: a profile, and the character's taught version of it."""

    profile: str  # embedded | paper | multilingual | judge:SPEC | rel=PATH,nli=PATH
    version: str  # 'default' (the profile's own) or the name of a taught version
    version_row: dict | None = None  # the disc_versions row of a taught version

    @property
    def label(self) -> str:
        """What the scorer and every score it makes are labelled with: `embedded` or `embedded@v1`."""
        from engine.discriminators.profiles import versioned_profile

        return versioned_profile(self.profile, self.version)


class ScoringService:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.characters = CharacterRepo(store)
        self.scores = ScoreRepo(store)
        self.versions = DiscVersionRepo(store)
        self._scorers: dict[tuple, object] = {}
        self._lock = threading.Lock()

    # -- the scorer ------------------------------------------------------------------------
    def active(self, character: str | int | None = None, profile: str | None = None) -> ActiveDiscriminators:
        """The one rule for which discriminators score: the requested profile (default: settings);
        for a character whose active taught version refines that profile, that version."""
        requested = (profile or self.settings.profile).strip()
        if character is None:
            return ActiveDiscriminators(requested, "default")
        cid = character if isinstance(character, int) else self.characters.row(character)["id"]
        row = self.versions.active(cid)
        if row is None or row["profile"] != requested:
            return ActiveDiscriminators(requested, "default")
        return ActiveDiscriminators(requested, row["name"], row)

    def data_folder(self) -> Path:
        """Where taught discriminators live: beside the database (paths in disc_versions are relative to it)."""
        return Path(self.settings.db_path).expanduser().resolve().parent

    def scorer(self, profile: str | None = None, device: str | None = None, *, character: str | int | None = None):
        """The ApcScorer for a profile (default: settings), or for a character's active discriminators,
        built once; retrieval shares its relevance cache."""
        active = self.active(character, profile)
        dev = device or self.settings.device
        key = (active.profile, active.version_row["id"] if active.version_row else None, dev)
        with self._lock:
            if key not in self._scorers:
                from engine.apc import ApcScorer

                self._scorers[key] = ApcScorer(self._load_pair(active, dev))
            return self._scorers[key]

    def _load_pair(self, active: ActiveDiscriminators, device: str):
        from dataclasses import replace

        from engine.discriminators import load_profile

        from .models import backend_options

        trust = self.settings.trust_remote_code
        judge = active.profile.startswith("judge:")
        opts = backend_options(self.settings, active.profile.removeprefix("judge:")) if judge else None
        row = active.version_row
        if row is None:
            return load_profile(active.profile, device=device, trust_remote_code=trust, model_opts=opts)
        if row["kind"] == "few-shot":
            from engine.discriminators.profiles import with_judge_examples

            from .teach import read_examples

            pair = load_profile(active.profile, device=device, trust_remote_code=trust, model_opts=opts)
            return with_judge_examples(pair, read_examples(self.data_folder() / row["rel_path"]), active.label)
        rel, nli = (self.data_folder() / row[k] for k in ("rel_path", "nli_path"))
        for path in (rel, nli):
            if not path.is_dir():
                raise InputError(
                    f"discriminator version {row['name']!r}: {path} is missing; "
                    f"switch back with `apc disc use -c NAME default` or retrain with `apc disc train --from-labels`"
                )
        pair = load_profile(f"rel={rel},nli={nli}", device=device, trust_remote_code=trust)
        return replace(pair, profile=active.label)

    def forget(self) -> None:
        """Drop the built scorers (after a version switch in a long-lived process, the next call reloads)."""
        with self._lock:
            self._scorers.clear()
    @contextmanager
    def bulk_scorer(self, profile: str | None = None, device: str | None = None, workers: int | None = None, *,
                    character: str | int | None = None) -> Iterator:  # fmt: skip
        """The scorer for long work (pairs, eval, rescoring): with several devices, one replica per
        device in its own process (engine.discriminators.sharded), closed on exit; else the cached one.
        `workers`: None = every visible CUDA GPU when scoring on CUDA, else 1; N with --device cpu = N CPU workers.
        `character`: its active discriminators (a taught version) serve, sharded or not."""
        from engine.discriminators.sharded import scoring_devices

        devices = scoring_devices(device or self.settings.device, workers)
        active = self.active(character, profile)
        row = active.version_row
        if len(devices) == 1 or (row is not None and row["kind"] == "few-shot"):  # a judge is not sharded
            yield self.scorer(profile, device, character=character)
            return
        from dataclasses import replace

        from engine.apc import ApcScorer
        from engine.discriminators.sharded import ShardedPair

        spec = active.profile if row is None else f"rel={self.data_folder() / row['rel_path']},nli={self.data_folder() / row['nli_path']}"
        pair = ShardedPair.open(spec, devices, trust_remote_code=self.settings.trust_remote_code)
        try:
            yield ApcScorer(replace(pair, profile=active.label) if row is not None else pair)
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
        scorer = self.scorer(profile, device, character=character_id)
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
                               device: str | None = None, progress=None, stop=None,
                               character: str | None = None, rows=None) -> dict:  # fmt: skip
        """Accuracy, per-label P/R/F1 and confusion of the profile's `task` discriminator on a labelled
        JSONL (none: nothing measured now), plus what was recorded at training time on held-out
        characters ("recorded": empty for a model without that record, e.g. a hub checkpoint)."""
        from engine.discriminators.base import task_labels
        from engine.discriminators.data import read_labelled
        from engine.metrics import evaluate_discriminator

        task_labels(task)
        if rows is None:
            rows = read_labelled(data, task) if data is not None else None  # bad rows fail before any model loads
        pair = self.scorer(profile, device, character=character).pair
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
