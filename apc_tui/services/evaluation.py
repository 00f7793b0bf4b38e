"""Evaluation runs (ΔAPC per method, base vs adapter) and human-APC agreement.

Queries: the character's eval split; else its train split; else one question per statement. The
run says which it used. Samples are stored as they are scored, so a resumed run skips them.
"""

from __future__ import annotations

import gc
import json
from collections import defaultdict
from itertools import combinations

from engine.errors import InputError

from ..storage.adapters import AdapterRepo
from ..storage.characters import CharacterRepo
from ..storage.evals import EvalRepo
from ..storage.pairs import PairRepo
from ..storage.scores import ScoreRepo

METHODS = ("none", "lcm", "rag", "eu")


class EvaluationService:
    def __init__(self, services):
        self.services = services
        self.store = services.store
        self.characters = CharacterRepo(self.store)
        self.evals = EvalRepo(self.store)
        self.adapters = AdapterRepo(self.store)

    def eval_config(self, character: str, model: str, methods: list[str], *, adapter: str | None = None,
                    eu_adapter: str | None = None, queries: int | None = None, k: int = 5, profile: str | None = None,
                    device: str | None = None, temperature: float = 0.8, max_new_tokens: int = 160,
                    seed: int | None = 0, scoring_workers: int | None = None, concurrency: int = 1) -> tuple[dict, int]:  # fmt: skip
        from .training import check_scale_options

        check_scale_options(model, scoring_workers, concurrency)
        bad = [m for m in methods if m not in METHODS]
        if not methods or bad:
            raise InputError(f"--methods {','.join(methods)}: use a comma list of {', '.join(METHODS)}")
        if queries is not None and queries < 1:
            raise InputError(f"--queries {queries}: give at least 1")
        row = self.characters.row(character)
        if adapter:
            self.adapters.get(adapter)
        if "eu" in methods:
            self._eu_adapter(row["id"], eu_adapter)
        s = self.services.settings
        return {
            "character": row["name"], "model": model, "methods": list(methods), "adapter": adapter, "eu_adapter": eu_adapter,
            "queries": queries, "k": k, "profile": profile or s.profile, "device": device or s.device,
            "params": {"temperature": temperature, "top_p": 0.95, "max_new_tokens": max_new_tokens, "seed": seed},
            "scoring_workers": scoring_workers, "concurrency": concurrency,
        }, row["id"]  # fmt: skip

    def _eu_adapter(self, character_id: int, name: str | None) -> dict:
        row = self.adapters.get(name) if name else self.adapters.latest(character_id, "eu")
        if row is None or row["kind"] != "eu":
            raise InputError("method eu needs an EU adapter; train one with `apc eu train` (or pass --eu-adapter NAME)")
        return row

    def queries_for(self, character) -> tuple[list[str], str]:
        repo = PairRepo(self.store)
        for split in ("eval", "train"):
            found = [t for _, t in repo.queries(character.id, split)]
            if found:
                return found, split
        from engine.evaluate import statement_queries

        return statement_queries(character), "statements"

    def report(self, run_id: int) -> dict:
        run = self.evals.run(run_id)
        return {
            "run_id": run_id,
            "model": run["model_spec"],
            "profile": run["profile"],
            "config": json.loads(run["config_json"]),
            "results": self.evals.results(run_id),
        }

    def runs(self, character: str | None = None) -> list[dict]:
        cid = self.characters.row(character)["id"] if character else None
        return self.evals.runs(cid)

    # -- agreement -------------------------------------------------------------------------------
    def agreement(self, character: str | None = None) -> dict:
        """How often APC prefers what humans preferred, and inter-annotator kappa."""
        from engine.evaluate import cohen_kappa, fleiss_kappa

        cid = self.characters.row(character)["id"] if character else None
        prefs = PairRepo(self.store).preferences(cid)
        scores = ScoreRepo(self.store).latest_for_messages(sorted({m for p in prefs for m in (p["message_a_id"], p["message_b_id"])}))
        labels: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)  # item -> annotator -> label
        apc_labels: dict[tuple[int, int], str] = {}
        agree = compared = 0
        for p in prefs:  # oldest first: an annotator's latest label on an item wins
            a, b = p["message_a_id"], p["message_b_id"]
            item = (min(a, b), max(a, b))
            label = _canonical(p["choice"], a, b)
            labels[item][p["annotator"]] = label
            sa, sb = scores.get(a), scores.get(b)
            if sa is not None and sb is not None and sa.apc != sb.apc:
                apc_labels[item] = "first" if (sa.apc > sb.apc) == (a < b) else "second"
        for item, by in labels.items():
            for label in by.values():
                if label in ("first", "second") and item in apc_labels:
                    compared += 1
                    agree += label == apc_labels[item]
        annotators = sorted({a for by in labels.values() for a in by})
        out: dict = {
            "preferences": len(prefs),
            "items": len(labels),
            "annotators": annotators,
            "apc_compared": compared,
            "apc_agreement": agree / compared if compared else None,
        }
        human_vs_apc = [(by[a], apc_labels[i]) for i, by in labels.items() for a in by if i in apc_labels and by[a] in ("first", "second")]
        out["apc_cohen_kappa"] = cohen_kappa([h for h, _ in human_vs_apc], [m for _, m in human_vs_apc]) if human_vs_apc else None
        if len(annotators) == 2:
            both = [by for by in labels.values() if len(by) == 2]
            out["cohen_kappa"] = cohen_kappa([by[annotators[0]] for by in both], [by[annotators[1]] for by in both]) if both else None
            out["kappa_items"] = len(both)
        elif len(annotators) > 2:
            full = [list(by.values()) for by in labels.values() if len(by) == len(annotators)]
            out["fleiss_kappa"] = fleiss_kappa(full) if full else None
            out["kappa_items"] = len(full)
            out["pairwise_cohen"] = {
                f"{x}|{y}": cohen_kappa([by[x] for by in labels.values() if x in by and y in by],
                                        [by[y] for by in labels.values() if x in by and y in by])
                for x, y in combinations(annotators, 2)
            }  # fmt: skip
        return out


def _canonical(choice: str, a: int, b: int) -> str:
    """A label independent of which reply was called A: 'first' = the reply with the lower id."""
    if choice in ("tie", "both_bad"):
        return choice
    winner = a if choice == "a" else b
    return "first" if winner == min(a, b) else "second"


# -- the `eval` job --------------------------------------------------------------------------------
def run_eval_job(services, ctx) -> dict:
    """Scoring runs on the bulk scorer: sharded over every GPU (or --scoring-workers CPU workers)."""
    cfg = ctx.config
    with services.scoring.bulk_scorer(cfg["profile"], cfg["device"], cfg.get("scoring_workers"), character=cfg["character"]) as scorer:
        return _run_eval(services, ctx, scorer)


def _run_eval(services, ctx, scorer) -> dict:
    from engine.evaluate import generate_and_score, summarize
    from engine.types import GenerationParams

    svc: EvaluationService = services.evaluation
    cfg = ctx.config
    character = svc.characters.get(cfg["character"])
    queries, origin = svc.queries_for(character)
    if origin != "eval":
        ctx.log(f"no eval-split queries; using {'train-split queries' if origin == 'train' else 'one question per statement'}", "warning")
    queries = queries[: cfg["queries"]] if cfg["queries"] else queries
    adapter = svc.adapters.get(cfg["adapter"]) if cfg["adapter"] else None
    if "run_id" in ctx.checkpoint:
        run_id = ctx.checkpoint["run_id"]
    else:
        run_id = svc.evals.create_run(character_id=character.id, model_spec=cfg["model"], adapter_id=adapter["id"] if adapter else None,
                                      profile=scorer.profile, config={**cfg, "query_origin": origin}, job_id=ctx.job_id)  # fmt: skip
        ctx.save_checkpoint({"run_id": run_id})
    plan, notes = _plan(svc, cfg, character.id, adapter)
    for note in notes:
        ctx.log(note, "warning")
    current = None
    params = GenerationParams(**cfg["params"])
    results = []
    for method, variant, spec in plan:
        if spec != current:
            services.models.close()  # one model in memory at a time: base, then base + adapter
            gc.collect()
            ctx.log(f"loading {spec}")
            current = spec
        model = services.models.get(spec, cfg["device"])
        skip = svc.evals.done_queries(run_id, method, variant)
        ctx.log(f"{method}/{variant}: {len(queries) - len(skip & set(queries))} queries to generate")
        generate_and_score(model, scorer, character, queries, method, k=cfg["k"], params=params,
                           progress=ctx.progress, stop=ctx.stop, skip=skip, concurrency=cfg.get("concurrency", 1),
                           on_sample=lambda q, c, m=method, v=variant: svc.evals.add_sample(run_id, m, v, q, c.text, c.score))  # fmt: skip
        samples = [s for s in svc.evals.samples(run_id, method, variant) if s["query"] in set(queries)]
        result = summarize(method, variant, samples)
        results.append(result.to_dict())
        svc.evals.save_results(run_id, results)  # each variant's row shows as soon as it is done
        ctx.log(f"{method}/{variant}: ΔAPC {result.delta_apc_mean:+.3f} [{result.ci_low:+.3f}, {result.ci_high:+.3f}] n={result.n}")
    svc.evals.save_results(run_id, results)
    return {"run_id": run_id, "query_origin": origin, "notes": notes, "results": results}


def _plan(svc: EvaluationService, cfg: dict, character_id: int, adapter: dict | None) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(method, variant, model spec) to run; eu = the `none` prompt on base + EU adapter."""
    from .finetune import FinetuneService

    base, tuned, eu_runs, notes = [], [], [], []
    if adapter is not None and adapter["base_model"] != cfg["model"]:
        notes.append(f"adapter {adapter['name']!r} was trained on {adapter['base_model']}, not {cfg['model']}: base and adapter rows compare different bases")
    for method in cfg["methods"]:
        if method == "eu":
            eu = svc._eu_adapter(character_id, cfg.get("eu_adapter"))
            eu_runs.append(("eu", "base", FinetuneService.spec_for(eu)))
            if adapter is not None:
                notes.append("eu with the DPO adapter is skipped: two LoRA adapters cannot be stacked here yet")
            continue
        base.append((method, "base", cfg["model"]))
        if adapter is not None:
            tuned.append((method, "adapter", FinetuneService.spec_for(adapter)))
    return base + tuned + eu_runs, notes  # grouped by model: each loads once
