"""Train a character's discriminators on its human labels (`disc_teach` job), rescore its stored
candidates afterwards (`rescore` job), and the teach queue (verdicts worth a human look first).

Cross-encoder profiles: a LoRA copy of the current relevance and NLI discriminators, trained on
80 % of the labels with a replay sample of the shipped teacher rows, measured on the other 20 %
before and after (engine.disc_teach). Judge profiles: the labels become few-shot examples.
Either way the result is registered as a version with its lineage and made active.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine.discriminators.profiles import DEFAULT_VERSION
from engine.errors import InputError

from ..storage.characters import CharacterRepo
from ..storage.teach import DiscVersionRepo, LabelRepo, labels_hash, version_to_dict

TASKS = ("relevance", "nli")
HELD_FRACTION = 0.2
FEW_SHOT_PER_TASK = 8
# the recipe a `disc_teach` job takes (flags may override epochs, seed, max_steps)
# (2 epochs, half as many replay rows as labels, lr 1e-3: 500 labels fit in ~80 optimizer steps)
DEFAULT_RECIPE = {"epochs": 2, "replay_ratio": 0.5, "learning_rate": 1e-3, "batch_size": 16, "max_steps": None, "seed": 0,
                  "max_length": 256}  # fmt: skip


class TeachTrainService:
    def __init__(self, services):
        self.services = services
        self.store = services.store
        self.characters = CharacterRepo(self.store)
        self.labels = LabelRepo(self.store)
        self.versions = DiscVersionRepo(self.store)

    # -- configs -----------------------------------------------------------------------------
    def config(self, character: str, *, name: str | None = None, profile: str | None = None, device: str | None = None,
               recipe: dict | None = None) -> tuple[dict, int]:  # fmt: skip
        """(job config, character id) for a `disc_teach` job; refuses now what the worker would refuse."""
        row = self.characters.row(character)
        teach = self.services.teach
        name = teach.check_version_name(row["id"], name) if name else teach.next_version_name(row["id"])
        if self.labels.count(row["id"]) == 0:
            raise InputError(f"{row['name']!r} has no human labels yet; add some with `apc labels add|import` or in the why panel")
        active = self.services.scoring.active(row["id"], profile)
        unknown = set(recipe or {}) - set(DEFAULT_RECIPE)
        if unknown:
            raise InputError(f"teach setting {sorted(unknown)[0]!r} is not known; known: {', '.join(DEFAULT_RECIPE)}")
        merged = {**DEFAULT_RECIPE, **{k: v for k, v in (recipe or {}).items() if v is not None}}
        if int(merged["epochs"]) < 1 or (merged["max_steps"] is not None and int(merged["max_steps"]) < 1):
            raise InputError("--epochs and --max-steps must be at least 1")
        if not active.profile.startswith("judge:"):
            from engine.discriminators.profiles import cross_sources

            cross_sources(active.profile)  # a profile without weights to teach fails here
        config = {"character": row["name"], "name": name, "profile": active.profile, "parent": active.version,
                  "device": device or self.services.settings.device, "recipe": merged}  # fmt: skip
        return config, row["id"]

    def label_rows(self, character: str | int, task: str) -> list:
        """The character's labels of `task` as engine LabelledItems (the latest label per item wins)."""
        from engine.discriminators.base import task_labels
        from engine.discriminators.data import LabelledItem
        from engine.discriminators.formats import NliItem, RelevanceItem

        found = self.characters.get(character) if isinstance(character, str) else self.characters.get_by_id(character)
        cid, name = found.id, found.name
        labels = task_labels(task)
        latest: dict[tuple, dict] = {}
        for r in self.labels.list(cid, task):  # oldest first
            latest[(r["statement"], r["query"], r["response"])] = r
        out = []
        for (statement, query, response), r in latest.items():
            item = NliItem(name, statement, query, response) if task == "nli" else RelevanceItem(name, statement, query)
            out.append(LabelledItem(item, labels.index(r["label"])))
        return out

    def summary(self, job_id: int) -> dict:
        """What a finished `disc_teach` job made: the version, its metrics, the rescore command."""
        job = self.services.jobs.show(job_id)
        cfg = job.get("config") or {}
        artifacts = job.get("artifacts") or {}
        row = self.versions.find(job["character_id"], artifacts.get("version") or cfg.get("name"))
        if row is None:
            raise InputError(f"job {job_id} registered no discriminator version (status {job['status']}); see `apc jobs logs {job_id}`")
        v = version_to_dict(row)
        character = self.characters.get_by_id(job["character_id"]).name
        return {"character": character, "version": v["name"], "kind": v["kind"], "profile": v["profile"], "parent": v["parent"],
                "metrics": v["metrics"], "job_id": job_id, "rescore_command": f"apc rescore -c {_shell(character)}"}  # fmt: skip

    def version_dir(self, character_id: int, name: str) -> Path:
        return self.services.scoring.data_folder() / "discriminators" / str(character_id) / name

    def relative(self, path: Path) -> str:
        """A path as stored in disc_versions: relative to the database's folder when under it."""
        try:
            return str(Path(path).resolve().relative_to(self.services.scoring.data_folder()))
        except ValueError:
            return str(Path(path).resolve())

    def current_sources(self, character_id: int, profile: str, parent: str) -> dict[str, tuple[str, str | None]]:
        """task -> (source, format override) of the discriminators a new version starts from."""
        from engine.discriminators.profiles import cross_sources

        if parent != DEFAULT_VERSION:
            row = self.versions.find(character_id, parent)
            if row is None:
                raise InputError(f"the parent version {parent!r} is gone; start from default with `apc disc use -c NAME default`")
            folder = self.services.scoring.data_folder()
            return {"relevance": (str(folder / row["rel_path"]), None), "nli": (str(folder / row["nli_path"]), None)}
        rel, nli, fmt = cross_sources(profile)
        return {"relevance": (rel, fmt), "nli": (nli, fmt)}


def replay_rows(task: str) -> list:
    """The shipped teacher rows of `task` (data/teacher): the replay that keeps general skill."""
    from engine.discriminators.data import read_labelled
    from engine.resources import data_path

    return read_labelled(data_path("teacher", f"{task}.jsonl"), task)


# -- the `disc_teach` job ---------------------------------------------------------------------------
def run_teach_job(services, ctx) -> dict:
    cfg = ctx.config
    svc: TeachTrainService = services.teach_train
    character = svc.characters.get(cfg["character"])
    label_rows = svc.labels.list(character.id)
    snapshot = ctx.checkpoint.get("labels_hash") or labels_hash(label_rows)
    if "labels_hash" not in ctx.checkpoint:
        ctx.save_checkpoint({"labels_hash": snapshot, "tasks": {}})
    ctx.log(f"teaching {cfg['profile']} ({cfg['parent']}) for {character.name}: {len(label_rows)} labels, version {cfg['name']}")
    out_dir = svc.version_dir(character.id, cfg["name"])
    if cfg["profile"].startswith("judge:"):
        paths, metrics, kind = _few_shot(services, ctx, svc, character, out_dir)
    else:
        paths, metrics, kind = _lora(services, ctx, svc, character, out_dir)
    recipe = {**cfg["recipe"], "held_fraction": HELD_FRACTION, **({"few_shot_per_task": FEW_SHOT_PER_TASK} if kind == "few-shot" else {})}
    version_id = svc.versions.add(
        character.id, cfg["name"], profile=cfg["profile"], parent=cfg["parent"], kind=kind,
        rel_path=svc.relative(paths["relevance"]), nli_path=svc.relative(paths["nli"]), labels_hash=snapshot,
        n_labels=len(label_rows), recipe=recipe, metrics={"tasks": metrics}, job_id=ctx.job_id,
    )  # fmt: skip
    svc.versions.set_active(character.id, version_id)
    services.scoring.forget()
    ctx.log(f"version {cfg['name']} registered and active for {character.name}; rescore with: apc rescore -c {_shell(character.name)}")
    return {"version": cfg["name"], "version_id": version_id, "tasks": metrics}


def _lora(services, ctx, svc: TeachTrainService, character, out_dir: Path):
    from engine.disc_teach import TeachConfig, split_labels, teach_discriminator

    cfg, recipe = ctx.config, ctx.config["recipe"]
    sources = svc.current_sources(character.id, cfg["profile"], cfg["parent"])
    done = dict(ctx.checkpoint.get("tasks", {}))
    paths: dict[str, Path] = {}
    metrics: dict[str, dict] = {}
    for task in TASKS:
        source, fmt = sources[task]
        state = done.get(task, {})
        if state.get("finished"):
            paths[task], metrics[task] = Path(state["path"]), state["metrics"]
            continue
        rows = svc.label_rows(character.id, task)
        if not rows:
            ctx.log(f"{task}: no labels; the version keeps the current {task} discriminator")
            paths[task], metrics[task] = Path(source), {"n_labels": 0, "kept": source}
            continue
        train, held = split_labels(rows, HELD_FRACTION, recipe["seed"])
        out = out_dir / task
        start = int(state.get("epochs_done", 0))
        if start == 0 and out.exists():
            shutil.rmtree(out)  # a half-written first epoch: start clean
        ctx.log(f"{task}: {len(train)} labels to learn, {len(held)} held back; starting from {source}"
                + (f" (resuming after epoch {start})" if start else ""))  # fmt: skip

        def on_epoch(n, task=task, out=out):
            done[task] = {"epochs_done": n, "path": str(out)}
            ctx.save_checkpoint({**ctx.checkpoint, "tasks": done})

        def progress(step, total, text, task=task):
            ctx.progress(step + (total if task == "nli" else 0), 2 * total, text)

        config = TeachConfig(task=task, source=source, out=out, format=fmt, epochs=int(recipe["epochs"]),
                             replay_ratio=float(recipe["replay_ratio"]), learning_rate=float(recipe["learning_rate"]),
                             batch_size=int(recipe["batch_size"]), max_steps=recipe["max_steps"], seed=int(recipe["seed"]),
                             max_length=int(recipe["max_length"]), device=cfg["device"])  # fmt: skip
        report = teach_discriminator(config, train, held, replay_rows(task), progress=progress, stop=ctx.stop,
                                     start_epoch=start, on_epoch=on_epoch,
                                     meta_extra={"character": character.name, "version": cfg["name"]})  # fmt: skip
        m = report.metrics()
        ctx.log(f"{task}: held-back accuracy {_fmt(m['heldout_before'])} -> {_fmt(m['heldout_after'])}, "
                f"on its training labels {_fmt(m['train_before'])} -> {_fmt(m['train_after'])}")  # fmt: skip
        paths[task], metrics[task] = out, m
        done[task] = {"finished": True, "path": str(out), "metrics": m}
        ctx.save_checkpoint({**ctx.checkpoint, "tasks": done})
    return paths, metrics, "lora"


def _few_shot(services, ctx, svc: TeachTrainService, character, out_dir: Path):
    """A judge learns from examples: pick up to FEW_SHOT_PER_TASK labels per task (labels balanced),
    measure the held-back ones with and without them."""
    from engine.disc_teach import split_labels
    from engine.discriminators.profiles import with_judge_examples
    from engine.metrics import evaluate_discriminator

    cfg = ctx.config
    pair = services.scoring.scorer(cfg["profile"], cfg["device"]).pair
    examples_file = out_dir / "examples.json"
    data: dict[str, list] = {}
    chosen: dict[str, list] = {}
    split: dict[str, tuple] = {}
    for task in TASKS:
        train, held = split_labels(svc.label_rows(character.id, task), HELD_FRACTION, int(cfg["recipe"]["seed"]))
        picked = _balanced(train, FEW_SHOT_PER_TASK)
        chosen[task] = [(r.item, r.label) for r in picked]
        split[task] = (train, held)
        labels = pair.relevance.labels if task == "relevance" else pair.nli.labels
        data[task] = [{**r.item.__dict__, "label": labels[r.label]} for r in picked]
    taught = with_judge_examples(pair, chosen, cfg["profile"])
    metrics = {}
    for task in TASKS:
        train, held = split[task]
        ctx.check_stop()
        before_d, after_d = (p.relevance if task == "relevance" else p.nli for p in (pair, taught))
        acc = {k: (round(evaluate_discriminator(d, held)["accuracy"], 4) if held else None) for k, d in (("before", before_d), ("after", after_d))}
        metrics[task] = {"n_labels": len(train) + len(held), "n_train": len(train), "n_heldout": len(held), "n_examples": len(chosen[task]),
                         "heldout_before": acc["before"], "heldout_after": acc["after"]}  # fmt: skip
        ctx.log(f"{task}: {len(chosen[task])} few-shot examples; held-back accuracy {_fmt(acc['before'])} -> {_fmt(acc['after'])}")
    out_dir.mkdir(parents=True, exist_ok=True)
    examples_file.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return {"relevance": examples_file, "nli": examples_file}, metrics, "few-shot"


def _balanced(rows: list, k: int) -> list:
    """Up to k rows, taking labels in turn (newest first within a label) so no label is missing."""
    by_label: dict[int, list] = {}
    for r in reversed(rows):
        by_label.setdefault(r.label, []).append(r)
    out: list = []
    while len(out) < k and any(by_label.values()):
        for label in sorted(by_label):
            if by_label[label] and len(out) < k:
                out.append(by_label[label].pop(0))
    return out


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _shell(name: str) -> str:
    import shlex

    return shlex.quote(name)


# -- the `rescore` job ------------------------------------------------------------------------------
def rescore_config(services, character: str, *, profile: str | None = None, device: str | None = None) -> tuple[dict, int]:
    row = services.teach_train.characters.row(character)
    active = services.scoring.active(row["id"], profile)
    return {"character": row["name"], "profile": active.profile, "device": device or services.settings.device}, row["id"]


def run_rescore_job(services, ctx) -> dict:
    """Score every stored candidate of the character with its active discriminators, rebuild the
    pairs that come from those scores, and report how APC-human agreement moved."""
    cfg = ctx.config
    character = services.teach_train.characters.get(cfg["character"])
    enabled = character.enabled_statements
    if not enabled:
        raise InputError(f"{character.name!r} has no enabled statements to score against")
    before = ctx.checkpoint.get("before") or services.evaluation.agreement(character.name)
    done = set(ctx.checkpoint.get("done", []))
    if "before" not in ctx.checkpoint:
        ctx.save_checkpoint({"before": before, "done": []})
    scorer = services.scoring.scorer(cfg["profile"], cfg["device"], character=character.id)
    groups = [g for g in _candidate_groups(services.store, character.id) if g["parent_id"] not in done]
    total = len(groups) + len(done)
    ctx.log(f"rescoring {sum(len(g['messages']) for g in groups)} candidates of {character.name} with {scorer.profile}")
    repo = services.scoring.scores
    texts, ids = [s.text for s in enabled], [s.id for s in enabled]
    for group in groups:
        ctx.check_stop()
        scores = scorer.score(character.name, texts, group["query"], [m["content"] for m in group["messages"]], stop=ctx.stop)
        with services.store.transaction():
            for m, s in zip(group["messages"], scores, strict=True):
                repo.save(s, query=group["query"], character_id=character.id, message_id=m["id"], statement_ids=ids)
        done.add(group["parent_id"])
        ctx.save_checkpoint({"before": before, "done": sorted(done)})
        ctx.progress(len(done), total, f"{len(done)}/{total} turns rescored")
    services.training.sync(character.id)
    after = services.evaluation.agreement(character.name)
    moved = {k: {"before": before.get(k), "after": after.get(k)} for k in ("apc_agreement", "apc_compared", "apc_cohen_kappa")}
    ctx.log(f"APC-human agreement {_fmt(before.get('apc_agreement'))} -> {_fmt(after.get('apc_agreement'))} "
            f"over {after.get('apc_compared')} labelled pairs; pairs rebuilt")  # fmt: skip
    return {"profile": scorer.profile, "turns": len(done), "agreement": moved}


def _candidate_groups(store, character_id: int) -> list[dict]:
    """Assistant candidates grouped by their user turn: [{parent_id, query, messages}]."""
    rows = store.db.query(
        """SELECT m.id, m.parent_id, m.content, u.content AS query FROM messages m
           JOIN messages u ON u.id = m.parent_id JOIN conversations c ON c.id = m.conversation_id
           WHERE c.character_id = ? AND m.role = 'assistant' ORDER BY m.parent_id, m.id""",
        [character_id],
    )
    groups: dict[int, dict] = {}
    for r in rows:
        groups.setdefault(r["parent_id"], {"parent_id": r["parent_id"], "query": r["query"], "messages": []})["messages"].append(r)
    return list(groups.values())
