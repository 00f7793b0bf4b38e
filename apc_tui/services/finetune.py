"""LoRA training use cases (DPO and EU) and the adapter registry with lineage.

An adapter row records the base model spec, the exact pair ids and the sha256 of the pairs it was
trained on, the settings, the final metrics and the job that made it; it reloads through
`hf:<base>+lora:<path>` (see `spec_for`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from engine.errors import InputError

from ..storage.adapters import AdapterRepo, adapter_to_dict
from ..storage.characters import CharacterRepo
from ..storage.pairs import PairRepo

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class FinetuneService:
    def __init__(self, services):
        self.services = services
        self.store = services.store
        self.adapters = AdapterRepo(self.store)
        self.characters = CharacterRepo(self.store)

    # -- configs for jobs ------------------------------------------------------------------------
    def train_config(self, kind: str, character: str, model: str, name: str, settings: dict,
                     processes: int | None = None) -> tuple[dict, int]:  # fmt: skip
        """(job config, character id) for a `dpo` or `eu` job; refuses a taken name or bad settings now.
        `processes`: data-parallel ranks (None = every visible CUDA GPU when training on CUDA, else 1)."""
        from engine.dpo_train import DpoSettings
        from engine.eu_train import EuSettings

        from ..validation import check_model_spec

        if not _NAME.match(name or ""):
            raise InputError(f"adapter name {name!r}: use letters, digits, . _ - (up to 80), e.g. koishi-dpo-1")
        if self.adapters.exists(name):
            raise InputError(f"an adapter named {name!r} exists already; pick another --name")
        out = self.out_dir(name)
        if out.exists():
            raise InputError(f"adapter name {name!r}: {out} already exists on disk (made by another database or run); "
                             "pick another --name, or move that folder away")  # fmt: skip
        model = check_model_spec(model or self.services.settings.model, "--model", trainable=True)
        cls = DpoSettings if kind == "dpo" else EuSettings
        settings = {k: v for k, v in settings.items() if v is not None}
        settings.setdefault("device", self.services.settings.device)
        cls.from_dict(settings)  # unknown keys and bad types fail here, not in the worker
        if processes is not None and processes < 1:
            raise InputError(f"--processes {processes}: give 1 or more (one rank per device)")
        row = self.characters.row(character)
        config = {"character": row["name"], "model": model, "name": name, "settings": settings}
        if processes is not None:
            config["processes"] = processes
        return config, row["id"]

    # -- adapters ---------------------------------------------------------------------------------
    def list_adapters(self, character: str | None = None) -> list[dict]:
        cid = self.characters.row(character)["id"] if character else None
        out = []
        for row in self.adapters.list(cid):
            d = adapter_to_dict(row)
            d["spec"] = self.spec_for(row)
            d["present"] = (Path(row["path"]) / "adapter_config.json").is_file()
            out.append(d)
        return out

    def adapter(self, name: str) -> dict:
        return self.adapters.get(name)

    @staticmethod
    def spec_for(row: dict) -> str:
        from engine.backends import parse_spec

        parsed = parse_spec(row["base_model"])
        base = parsed.name if parsed.scheme == "hf" else row["base_model"]
        if parsed.scheme == "tiny":  # the tiny base lives in the cache dir; resolve it lazily (builds it)
            from engine.backends.tiny import tiny_model_dir

            base = str(tiny_model_dir())
        return f"hf:{base}+lora:{row['path']}"

    def register(self, ctx, kind: str, result, *, pair_ids: list[int] | None = None, pairs_hash: str | None = None) -> dict:
        cfg = ctx.config
        adapter_id = self.adapters.add(
            name=cfg["name"], kind=kind, base_model=cfg["model"], path=str(Path(result.adapter_dir).resolve()),
            character_id=ctx.character_id, config=cfg["settings"], metrics=result.metrics, job_id=ctx.job_id,
            pairs_hash=pairs_hash, pair_ids=pair_ids, lineage=result.lineage,
        )  # fmt: skip
        row = self.adapters.get_by_id(adapter_id)
        ctx.log(f"adapter {cfg['name']!r} registered; load it with --model {self.spec_for(row)}")
        return {"adapter": cfg["name"], "adapter_id": adapter_id, "spec": self.spec_for(row), "metrics": result.metrics}

    def already_registered(self, ctx) -> dict | None:
        """A resumed job whose adapter was registered before its process died: nothing left to train."""
        if not self.adapters.exists(ctx.config["name"]):
            return None
        row = self.adapters.get(ctx.config["name"])
        if row["job_id"] != ctx.job_id:
            raise InputError(f"an adapter named {ctx.config['name']!r} exists already; start a new job with another --name")
        ctx.log(f"adapter {row['name']!r} was registered by this job before it stopped; nothing to redo")
        return {"adapter": row["name"], "adapter_id": row["id"], "spec": self.spec_for(row), "metrics": adapter_to_dict(row)["metrics"]}

    def out_dir(self, name: str) -> Path:
        from ..paths import adapters_dir

        return adapters_dir(self.services.settings) / name


def _train_hooks(ctx, out_dir: Path | None = None) -> dict:
    """progress / stop / metrics / checkpoint wiring shared by both training jobs. Resume takes the
    newest complete checkpoint: the recorded one, or a later one in this job's `out_dir/checkpoints`
    saved without being recorded (the job's process died; its ranks saved on their way out)."""
    def on_checkpoint(path: str) -> None:
        ctx.save_checkpoint({**ctx.checkpoint, "trainer_checkpoint": path})
        ctx.log(f"checkpoint saved: {Path(path).name}")

    resume = ctx.checkpoint.get("trainer_checkpoint")
    if out_dir is not None:
        newest = _newest_checkpoint(out_dir) if _claim_checkpoints(out_dir, ctx.job_id, resume) else None
        if newest is not None and (not resume or _step(newest) > _step(resume)):
            resume = str(newest)
    if resume and not Path(resume).is_dir():
        ctx.log(f"checkpoint {resume} is gone; training restarts from step 0", "warning")
        resume = None
    elif resume:
        ctx.log(f"resuming from {Path(resume).name}")
    return {"progress": ctx.progress, "stop": ctx.stop, "on_metrics": ctx.metrics, "on_checkpoint": on_checkpoint,
            "resume_from": resume}  # fmt: skip


def _train(ctx, kind: str, rows: list, settings, out_dir: Path, train_one, *, sequences: int):
    """One process (`train_one`) or, with several ranks, `accelerate launch` supervised from here:
    the same hooks either way, so progress, the loss plot, cancel and resume do not change."""
    from dataclasses import asdict

    from engine.distributed import default_processes, train_distributed

    processes = ctx.config.get("processes") or default_processes(settings.device)
    if processes == 1:
        return train_one(ctx.config["model"], rows, settings, out_dir, **_train_hooks(ctx, out_dir))
    ctx.log(f"data-parallel over {processes} processes through accelerate launch (files in {ctx.work_dir / 'ranks'})")
    return train_distributed(kind, ctx.config["model"], [asdict(r) for r in rows], settings, out_dir, ctx.work_dir / "ranks",
                             processes, sequences=sequences, on_log=ctx.log, **_train_hooks(ctx, out_dir))  # fmt: skip


def _step(path) -> int:
    tail = Path(path).name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def _claim_checkpoints(out_dir: Path, job_id: int, recorded: str | None) -> bool:
    """Mark `out_dir/checkpoints` as this job's; True when it already was (its checkpoints are ours
    to resume from; a recorded checkpoint inside it proves it too, for folders from before the
    marker). Another job's leftovers (same adapter name, never registered) are cleared."""
    folder = out_dir / "checkpoints"
    marker = folder / "job.json"
    try:
        owner = json.loads(marker.read_text()).get("job_id") if marker.is_file() else None
    except (OSError, ValueError):
        owner = None
    ours = owner == job_id or (owner is None and recorded is not None and Path(recorded).parent == folder)
    if ours:
        if folder.is_dir():
            marker.write_text(json.dumps({"job_id": job_id}))
        return True
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"job_id": job_id}))
    return False


def _newest_checkpoint(out_dir: Path) -> Path | None:
    found = [p for p in (out_dir / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file() and _step(p) >= 0]
    return max(found, key=_step) if found else None


def run_dpo_job(services, ctx) -> dict:
    from engine.dpo import pairs_sha256
    from engine.dpo_train import DpoSettings, train_dpo

    svc: FinetuneService = services.finetune
    cfg = ctx.config
    if (done := svc.already_registered(ctx)) is not None:
        return done
    if "pair_ids" in ctx.checkpoint:  # a resumed run trains on exactly the pairs it started with
        pairs = PairRepo(services.store).by_ids(ctx.checkpoint["pair_ids"])
    else:
        pairs = services.training.training_pairs(ctx.character_id)
        ctx.save_checkpoint({"pair_ids": [i for i, _ in pairs]})
    if not pairs:
        raise InputError(f"{cfg['character']!r} has no preference pairs; run `apc dpo pairs` or label replies in the TUI first")
    ids, plain = [i for i, _ in pairs], [p for _, p in pairs]
    settings = DpoSettings.from_dict(cfg["settings"])
    ctx.log(f"DPO on {len(plain)} pairs, base {cfg['model']}, beta {settings.beta}, lr {settings.learning_rate}")
    result = _train(ctx, "dpo", plain, settings, svc.out_dir(cfg["name"]), train_dpo, sequences=2)
    return svc.register(ctx, "dpo", result, pair_ids=ids, pairs_hash=pairs_sha256(plain))


def run_eu_job(services, ctx) -> dict:
    from engine.eu_train import EuSettings, eu_dialogues, train_eu

    svc: FinetuneService = services.finetune
    cfg = ctx.config
    if (done := svc.already_registered(ctx)) is not None:
        return done
    character = svc.characters.get(cfg["character"])
    repo = PairRepo(services.store)
    entailed = repo.entailed_replies(character.id)
    dialogues = eu_dialogues(character, entailed, [] if entailed else repo.query_statements(character.id))
    origin = dialogues[0].origin
    ctx.log(f"EU on {len(dialogues)} dialogues ({'teacher replies' if origin == 'teacher' else 'built from statements'})")
    result = _train(ctx, "eu", dialogues, EuSettings.from_dict(cfg["settings"]), svc.out_dir(cfg["name"]), train_eu, sequences=1)
    result.metrics["dialogue_origin"] = origin
    return svc.register(ctx, "eu", result)
