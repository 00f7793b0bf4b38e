"""Sharded scoring throughput: pairs/s per device count (`python bench/scoring.py --devices all`).

    python bench/scoring.py --devices all|N [--profile embedded] [--statements 100] [--queries 20]
                            [--responses 2] [--batch-size B] [--json]

For each device count k = 1 .. K (K = every visible CUDA GPU, or with no GPU 2 CPU workers, or
N), one `engine.apc.ApcScorer` over a `ShardedPair` of k replicas (k = 1: the plain in-process
pair, the one-device path) scores the same synthetic character (bench/scoring.py), once to warm up
and once timed with a fresh relevance cache. Reported: pairs/s (a pair is one (statement,
response)), the speed-up over one device, and the largest |difference| of any APC term from the
one-device run (the sharded path must give the one-device numbers).
"""

from __future__ import annotations

import time


def device_sets(spec: str) -> list[tuple[str, ...]]:
    """'all' -> GPUs 1..n (or 1..2 CPU workers without CUDA); 'N' -> 1..N of the same kind."""
    from engine.distributed import cuda_count

    gpus = cuda_count()
    top = (gpus or 2) if spec == "all" else int(spec)
    if gpus and top > gpus:
        raise SystemExit(f"--devices {spec}: only {gpus} CUDA GPU(s) visible")
    return [tuple(f"cuda:{i}" for i in range(k)) if gpus else ("cpu",) * k for k in range(1, top + 1)]


def run(spec: str, profile: str, statements: list[str], queries: list[str], responses: dict, batch_size: int | None,
        name: str, log) -> dict:  # fmt: skip
    import numpy as np

    from engine.apc import ApcScorer, RelevanceCache, ScoreRequest
    from engine.discriminators import load_profile
    from engine.discriminators.sharded import ShardedPair

    requests = [ScoreRequest.of(name, statements, q, responses[q]) for q in queries]
    n_pairs = sum(len(r.statements) * len(r.responses) for r in requests)
    rows, reference = [], None
    for devices in device_sets(spec):
        opened = time.perf_counter()
        pair = load_profile(profile, device=devices[0]) if len(devices) == 1 else ShardedPair.open(profile, devices)
        load_s = time.perf_counter() - opened
        try:
            scorer = ApcScorer(pair, batch_size=batch_size)
            scorer.score_many(requests[:2])  # warm-up: kernels, allocator, worker imports
            scorer.cache = RelevanceCache()
            start = time.perf_counter()
            results = scorer.score_many(requests)
            wall = time.perf_counter() - start
        finally:
            if hasattr(pair, "close"):
                pair.close()
        terms = np.array([[t.p_yes, t.p_contradicted, t.p_entailed] for per in results for s in per for t in s.terms])
        reference = terms if reference is None else reference
        row = {"devices": list(devices), "count": len(devices), "load_s": round(load_s, 2), "seconds": round(wall, 3),
               "pairs_per_s": round(n_pairs / wall, 1), "max_abs_diff_vs_one": float(np.abs(terms - reference).max())}  # fmt: skip
        log(f"{len(devices)} device(s) {','.join(devices)}: {row['pairs_per_s']} pairs/s")
        rows.append(row)
    for row in rows:
        row["speedup_vs_one"] = round(row["pairs_per_s"] / rows[0]["pairs_per_s"], 2)
    return {"profile": profile, "pairs": n_pairs, "batch_size": batch_size, "runs": rows}


def render(r: dict) -> str:
    lines = [f"sharded scoring, profile {r['profile']}, {r['pairs']} pairs per pass", "",
             "| devices | pairs/s | × one device | max |Δ term| vs one | replica load s |", "|---|---|---|---|---|"]  # fmt: skip
    for row in r["runs"]:
        lines.append(f"| {row['count']} ({', '.join(row['devices'])}) | {row['pairs_per_s']:.0f} | {row['speedup_vs_one']:.2f} "
                     f"| {row['max_abs_diff_vs_one']:.1e} | {row['load_s']:.1f} |")  # fmt: skip
    return "\n".join(lines)
