"""Teach the scorer: wall time of `apc disc train --from-labels` on N human labels, and what it did.

    OMP_NUM_THREADS=2 python bench/teach.py [--labels 500] [--character marisol_vega] [--epochs 3] [--json]

A fresh database in a temporary folder gets one demo character and N labels taken from the
shipped teacher rows of that character (half relevance, half NLI; the default character is one
the embedded discriminators never saw in training), standing in for a user's corrections. The
real `disc_teach` job then runs in this process (imports, model loads, both tasks, held-back
measurement, saving, registering), timed end to end. Then a cold interpreter scores with the new
version, to check it still starts on the numpy runtime. The issue's target: <= 500 labels in under
3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLD = """
import sys, time
start = time.perf_counter()
from apc_tui.config import load_settings
from apc_tui.factory import build_services
services = build_services(load_settings())
result = services.scoring.score(sys.argv[1], "How old are you?", ["I am thirty-four.", "I am ninety."])
pair = services.scoring.scorer(character=sys.argv[1]).pair
print(time.perf_counter() - start, result.profile, pair.nli.describe()["runtime"], "torch" in sys.modules)
"""


def _teacher_rows(character: str, task: str) -> list[dict]:
    from engine.resources import data_path

    with open(data_path("teacher", f"{task}.jsonl"), encoding="utf-8") as f:
        return [row for row in map(json.loads, f) if row["character"] == character]


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=500, help="human labels (half relevance, half NLI)")
    parser.add_argument("--character", default="marisol_vega", help="demo character slug (data/characters)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="apc-bench-teach-"))
    os.environ.update(APC_DB=str(tmp / "apc.db"), APC_CONFIG=str(tmp / "config.toml"), APC_DEVICE="cpu",
                      APC_PROFILE="embedded", HF_HUB_OFFLINE="1")  # fmt: skip
    from apc_tui.config import load_settings
    from apc_tui.factory import build_services

    services = build_services(load_settings())
    files = [p for p in services.characters.demo_files() if p.stem == args.character]
    if not files:
        raise SystemExit(f"no demo character {args.character!r} in data/characters")
    name = services.characters.import_demo(files)[0].name
    cid = services.characters.repo.row(name)["id"]
    rng = random.Random(args.seed)
    rows: list[dict] = []
    for task in ("relevance", "nli"):  # half each; NLI makes up what the relevance rows lack
        pool = {(r["statement"], r["query"], r.get("response", "")): r for r in _teacher_rows(name, task)}  # no duplicates
        n = args.labels // 2 if task == "relevance" else args.labels - len(rows)
        rows += [{**r, "task": task} for r in rng.sample(list(pool.values()), min(n, len(pool)))]
    services.teach.labels.add_many(cid, rows, annotator="bench", source="import")
    config, cid = services.teach_train.config(name, recipe={"epochs": args.epochs, "seed": args.seed})
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    job = services.jobs.start("disc_teach", config, character_id=cid)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    if job["status"] != "done":
        raise SystemExit(f"teach job {job['status']}: {job.get('error')}")
    summary = services.teach_train.summary(job["id"])
    cold = subprocess.run([sys.executable, "-c", COLD, name], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()  # fmt: skip
    out = {
        "character": name, "labels": len(rows), "epochs": args.epochs, "threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu, 1),
        "tasks": summary["metrics"]["tasks"],
        "cold_first_score_s": round(float(cold[0]), 2), "cold_profile": cold[1], "cold_runtime": cold[2],
        "cold_imported_torch": cold[3] == "True",
    }  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    print(f"{name}: {len(rows)} labels, {args.epochs} epochs, OMP_NUM_THREADS={out['threads']}, "
          f"load average {out['load_average'][0]:.1f} on {out['cpu_count']} cores")  # fmt: skip
    print(f"disc_teach job, end to end: {seconds:.1f} s wall, {cpu:.1f} s of CPU (target: under 180 s on 2 cores; on a "
          f"machine shared with other work the wall time overstates it, CPU seconds / 2 is the floor on 2 idle cores)")
    for task, m in out["tasks"].items():
        print(f"  {task:<9} {m['n_train']} train + {m['n_replay']} replay rows, {m['steps']} steps: held-back ({m['n_heldout']}) "
              f"{m['heldout_before']:.3f} -> {m['heldout_after']:.3f}; training labels {m['train_before']:.3f} -> {m['train_after']:.3f}")
    print(f"cold process, first scores with {out['cold_profile']}: {out['cold_first_score_s']} s on the {out['cold_runtime']} runtime"
          f" (torch imported: {out['cold_imported_torch']})")
    return out


if __name__ == "__main__":
    main()
