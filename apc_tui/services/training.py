"""Preference data for DPO: APC-ranked pairs (a job), human labels from the TUI, conversation
branches, exports.

The training set of a character = every stored pair. Pairs derived from conversations and from
human labels are rebuilt by `sync` from the `preferences` and `messages` tables, so they always
reflect the latest labels. A human label overrides APC for the same two replies (pair keys are
order-free): a or b -> a human pair; tie / both_bad -> no pair; an edited ideal response -> an
`edited` pair, ideal over the worse candidate(s).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from engine.dpo import pair_key, rank_pair
from engine.errors import InputError
from engine.types import Candidate, PreferencePair

from ..storage.characters import CharacterRepo
from ..storage.pairs import CHOICES, PairRepo
from ..storage.scores import ScoreRepo

DEFAULT_MARGIN = 0.2


@dataclass(frozen=True)
class _Desired:
    pair: PreferencePair
    chosen_message_id: int | None = None
    rejected_message_id: int | None = None
    preference_id: int | None = None


class TrainingService:
    def __init__(self, services):
        self.services = services
        self.store = services.store
        self.characters = CharacterRepo(self.store)
        self.pairs = PairRepo(self.store)
        self.scores = ScoreRepo(self.store)

    # -- configs for jobs --------------------------------------------------------------------
    def pairs_config(self, character: str, model: str, *, method: str = "rag", k: int = 5, max_pairs: int = 100,
                     margin: float | None = None, profile: str | None = None, device: str | None = None,
                     temperature: float = 0.8, max_new_tokens: int = 160, scoring_workers: int | None = None,
                     concurrency: int = 1) -> tuple[dict, int]:  # fmt: skip
        """(job config, character id) for a `pairs` job, checked before anything is queued.

        model "" / None: the configured model; margin None: the paper's 0.2, or 0 for the tiny
        model (its replies all score alike, so 0.2 would keep nothing)."""
        from engine.backends import is_meaningless
        from engine.rag import check_method
        from engine.types import GenerationParams

        from ..validation import check_model_spec

        model = check_model_spec(model or self.services.settings.model)
        if margin is None:
            margin = 0.0 if is_meaningless(model) else DEFAULT_MARGIN
        GenerationParams(temperature=temperature, max_new_tokens=max_new_tokens)  # refuses bad values now
        check_method(method, k)
        if method == "eu":
            raise InputError("pairs with method eu: give --model hf:BASE+lora:EU_ADAPTER and --method none instead")
        from engine.checks import number

        from ..validation import NUMBER_BOUNDS

        margin = number("--margin", margin, NUMBER_BOUNDS["--margin"])
        max_pairs = number("--max", max_pairs, NUMBER_BOUNDS["--max"])
        check_scale_options(model, scoring_workers, concurrency)
        row = self.characters.row(character)
        s = self.services.settings
        config = {
            "character": row["name"], "model": model, "method": method, "k": k, "max_pairs": max_pairs,
            "margin": margin, "profile": profile or s.profile, "device": device or s.device,
            "params": {"temperature": temperature, "top_p": 0.95, "max_new_tokens": max_new_tokens, "seed": None},
            "scoring_workers": scoring_workers, "concurrency": concurrency,
        }  # fmt: skip
        return config, row["id"]

    # -- reading the training set ---------------------------------------------------------------
    def list_pairs(self, character: str, source: str | None = None) -> list[dict]:
        cid = self.characters.row(character)["id"]
        self.sync(cid)
        return self.pairs.rows(cid, source)

    def training_pairs(self, character_id: int) -> list[tuple[int, PreferencePair]]:
        self.sync(character_id)
        return self.pairs.training_pairs(character_id)

    def export(self, character: str, fmt: str, out: Path) -> list[Path]:
        from engine.dpo_export import Provenance, export_pairs

        row = self.characters.row(character)
        pairs = [p for _, p in self.training_pairs(row["id"])]
        provenance = Provenance(row["name"], tuple(self.pairs.scorer_profiles(row["id"])), row["language"])
        return export_pairs(pairs, fmt, out, provenance=provenance)

    # -- human labels (the TUI's annotation flow) ------------------------------------------------
    def record_preference(self, message_a_id: int, message_b_id: int, choice: str, *, annotator: str | None = None,
                          shown_order: str = "ab", apc_visible: bool = False, ideal_response: str | None = None,
                          note: str | None = None) -> int:  # fmt: skip
        """Store a human label on two sibling replies and update the training pairs; returns its id."""
        if choice not in CHOICES:
            raise InputError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
        if message_a_id == message_b_id:
            raise InputError("a preference compares two different replies")
        if shown_order not in ("ab", "ba"):
            raise InputError(f"shown_order {shown_order!r}: use ab or ba")
        a, b = self.pairs.message(message_a_id), self.pairs.message(message_b_id)
        if a["role"] != "assistant" or b["role"] != "assistant" or a["parent_id"] != b["parent_id"]:
            raise InputError(f"messages {message_a_id} and {message_b_id} are not two replies to the same turn")
        ideal = (ideal_response or "").strip() or None
        cid = self.store.db.execute("SELECT character_id FROM conversations WHERE id = ?", [a["conversation_id"]]).fetchone()[0]
        pid = self.pairs.add_preference({
            "character_id": cid, "message_a_id": message_a_id, "message_b_id": message_b_id, "choice": choice,
            "annotator": annotator if annotator is not None else self.services.settings.annotator,
            "shown_order": shown_order, "apc_visible": int(apc_visible), "ideal_response": ideal, "note": note,
        })  # fmt: skip
        self.sync(cid)
        return pid

    def undo_preference(self, preference_id: int) -> dict | None:
        """Remove a label and the pairs it made. The annotator's earlier vote on the pair (if this one
        replaced it) is current again and returned; else APC's own pair for those replies comes back."""
        cid = self.pairs.preference(preference_id)["character_id"]
        restored = self.pairs.delete_preference(preference_id)
        self.sync(cid)
        return restored

    # -- derived pairs ---------------------------------------------------------------------------
    def sync(self, character_id: int, margin: float = DEFAULT_MARGIN) -> None:
        """Rebuild the pairs that come from conversation branches and human labels (idempotent)."""
        desired: dict[str, _Desired] = {}
        for group in self.pairs.sibling_groups(character_id):
            scores = self.scores.latest_for_messages([m["id"] for m in group])
            for a, b in combinations(group, 2):
                sa, sb = scores.get(a["id"]), scores.get(b["id"])
                if sa is None or sb is None or sa.profile != sb.profile:
                    continue
                prompt = self.pairs.prompt_of(a)
                ca, cb = (Candidate(m["content"], m["model_spec"] or "", m["method"] or "", prompt) for m in (a, b))
                pair = rank_pair(prompt, ca, cb, sa.apc, sb.apc, margin, model_spec=a["model_spec"] or "", method=a["method"] or "")
                if pair is not None:
                    win, lose = (a, b) if pair.chosen == a["content"] else (b, a)
                    desired[pair_key(prompt, a["content"], b["content"])] = _Desired(pair, win["id"], lose["id"])
        overridden = self._apply_preferences(character_id, desired)
        self._store_desired(character_id, desired, overridden)

    def _apply_preferences(self, character_id: int, desired: dict[str, _Desired]) -> set[str]:
        """Put human labels over APC (latest label per pair of replies wins); returns the overridden keys."""
        latest: dict[tuple[int, int], dict] = {}
        for pref in self.pairs.preferences(character_id):
            latest[tuple(sorted((pref["message_a_id"], pref["message_b_id"])))] = pref
        overridden = set()
        for pref in latest.values():
            a, b = self.pairs.message(pref["message_a_id"]), self.pairs.message(pref["message_b_id"])
            prompt = self.pairs.prompt_of(a)
            key = pair_key(prompt, a["content"], b["content"])
            desired.pop(key, None)
            overridden.add(key)
            scores = self.scores.latest_for_messages([a["id"], b["id"]])
            apc = {m["id"]: (scores[m["id"]].apc if m["id"] in scores else None) for m in (a, b)}
            base = dict(annotator=pref["annotator"], model_spec=a["model_spec"] or "", method=a["method"] or "")
            if pref["choice"] in ("a", "b"):
                win, lose = (a, b) if pref["choice"] == "a" else (b, a)
                pair = PreferencePair(prompt, win["content"], lose["content"], "human", apc[win["id"]], apc[lose["id"]], **base)
                desired[key] = _Desired(pair, win["id"], lose["id"], pref["id"])
            ideal = pref["ideal_response"]
            if ideal:
                for worse in _worse_candidates(pref["choice"], a, b, apc):
                    pair = PreferencePair(prompt, ideal, worse["content"], "edited", None, apc[worse["id"]], **base)
                    desired[pair_key(prompt, ideal, worse["content"])] = _Desired(pair, None, worse["id"], pref["id"])
        return overridden

    def _store_desired(self, character_id: int, desired: dict[str, _Desired], overridden: set[str]) -> None:
        existing = {r["pair_key"]: r for r in self.pairs.derived_rows(character_id)}
        stale = [r["id"] for key, r in existing.items() if key not in desired or _differs(r, desired[key])]
        with self.store.transaction():
            self.pairs.delete(stale)
            # APC pairs from `apc dpo pairs` that a human has now judged
            self.pairs.delete_keys(character_id, [k for k in overridden if k not in existing or existing[k]["id"] in stale])
            for key, d in desired.items():
                if key in existing and existing[key]["id"] not in stale:
                    continue
                self.pairs.insert(character_id, d.pair, chosen_message_id=d.chosen_message_id,
                                  rejected_message_id=d.rejected_message_id, preference_id=d.preference_id)


def check_scale_options(model: str, scoring_workers: int | None, concurrency: int) -> None:
    """--scoring-workers / --concurrency, checked before a job is queued."""
    from engine.serving import check_concurrency

    if scoring_workers is not None and scoring_workers < 1:
        raise InputError(f"--scoring-workers {scoring_workers}: give 1 or more (one discriminator replica per worker)")
    check_concurrency(model, concurrency)


def _differs(row: dict, d: _Desired) -> bool:
    return (row["chosen"], row["rejected"], row["source"], row["preference_id"]) != (
        d.pair.chosen, d.pair.rejected, d.pair.source, d.preference_id)


def _worse_candidates(choice: str, a: dict, b: dict, apc: dict) -> list[dict]:
    """The reply an ideal response is trained against: the unchosen one; for tie/both_bad the
    lower-APC one, or both when APC is unknown or equal."""
    if choice == "a":
        return [b]
    if choice == "b":
        return [a]
    sa, sb = apc[a["id"]], apc[b["id"]]
    if sa is None or sb is None or sa == sb:
        return [a, b]
    return [a] if sa < sb else [b]


# -- the `pairs` job -------------------------------------------------------------------------------
def run_pairs_job(services, ctx) -> dict:
    """Sample two replies per train query, keep APC-ranked pairs; resumable per query."""
    from engine.dpo import build_apc_pairs
    from engine.evaluate import statement_queries
    from engine.types import GenerationParams

    cfg = ctx.config
    svc: TrainingService = services.training
    character = svc.characters.get(cfg["character"])
    queries = svc.pairs.queries(character.id, "train")
    if not queries:
        ctx.log("no train-split queries stored (run synthesis or import teacher data); using one question per statement", "warning")
        queries = [(None, q) for q in statement_queries(character)]
    done = set(ctx.checkpoint.get("done", []))
    kept_before = int(ctx.checkpoint.get("kept", 0))
    skip = {i for i, (qid, text) in enumerate(queries) if (qid if qid is not None else text) in done}
    remaining = cfg["max_pairs"] - kept_before
    if remaining <= 0:
        return {"pairs_kept": kept_before, "queries": len(done)}
    ctx.log(f"loading {cfg['model']} and the {cfg['profile']} discriminators")
    model = services.models.get(cfg["model"], cfg["device"])
    if getattr(model, "meaningless", False):
        ctx.log(f"{cfg['model']} writes meaningless text: these pairs only exercise the pipeline", "warning")
    state = {"done": sorted(done, key=str), "kept": kept_before, "stored": 0}

    def on_result(index, scored, _candidates):
        qid, text = queries[index]
        if scored is not None:
            state["kept"] += 1
            if svc.pairs.insert(character.id, scored.pair, query_id=qid) is not None:
                state["stored"] += 1
        state["done"].append(qid if qid is not None else text)
        ctx.save_checkpoint({"done": state["done"], "kept": state["kept"]})

    with services.scoring.bulk_scorer(cfg["profile"], cfg["device"], cfg.get("scoring_workers"), character=character.id) as scorer:
        if hasattr(scorer.pair, "pool"):
            ctx.log(f"scoring sharded over {len(scorer.pair.pool.devices)} workers: {', '.join(scorer.pair.pool.devices)}")
        build_apc_pairs(model, scorer, character, [t for _, t in queries], method=cfg["method"], k=cfg["k"],
                        margin=cfg["margin"], max_pairs=remaining, params=GenerationParams(**cfg["params"]),
                        progress=ctx.progress, stop=ctx.stop, on_result=on_result, skip=skip,
                        concurrency=cfg.get("concurrency", 1))  # fmt: skip
    ctx.log(f"{state['kept']} pairs kept over {len(state['done'])} queries ({state['stored']} new in the database)")
    return {"pairs_kept": state["kept"], "queries": len(state["done"]), "stored": state["stored"]}
