"""Seconds from a cold Python process to the first APC scores, numpy vs. torch runtime, same run.

    python bench/first_load.py [--runs 3] [--json]

Each run starts a fresh interpreter that imports the engine, loads the embedded relevance + NLI
pair and scores one query's two responses against a 20-statement demo character, the way
`apc score` does; the runtimes alternate so load drift hits both alike. Prints the median per
runtime and their ratio. The issue's target: under 3 s on a CPU for the default (numpy) runtime.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import sys, time
start = time.perf_counter()
from engine.apc import ApcScorer
from engine.discriminators import CrossEncoderDiscriminator
from engine.discriminators.profiles import DiscriminatorPair, embedded_dirs
runtime = sys.argv[1]
rel_dir, nli_dir = embedded_dirs()
pair = DiscriminatorPair(CrossEncoderDiscriminator.load(str(rel_dir), "relevance", device="cpu", runtime=runtime),
                         CrossEncoderDiscriminator.load(str(nli_dir), "nli", device="cpu", runtime=runtime), "embedded")
loaded = time.perf_counter()
statements = [f"Mira Castellan keeps note {i} about the harbour." for i in range(19)] + ["Mira Castellan lives in Lisbon."]
ApcScorer(pair).score("Mira Castellan", statements, "Where do you live?", ["In Lisbon, by the river.", "Porto, always."])
print(loaded - start, time.perf_counter() - start, type(pair.nli.model).__name__, "torch" in sys.modules)
"""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    times: dict[str, list] = {"auto": [], "torch": []}
    for _ in range(args.runs):
        for runtime in times:
            out = subprocess.run([sys.executable, "-c", CHILD, runtime], cwd=ROOT, capture_output=True, text=True, check=True)
            load, total, model, torch_imported = out.stdout.split()
            times[runtime].append({"load_s": float(load), "first_scores_s": float(total), "model": model, "torch_imported": torch_imported == "True"})
    result = {
        runtime: {"median_load_s": statistics.median(t["load_s"] for t in runs),
                  "median_first_scores_s": statistics.median(t["first_scores_s"] for t in runs),
                  "model": runs[0]["model"], "imports_torch": runs[0]["torch_imported"]}
        for runtime, runs in times.items()
    }  # fmt: skip
    result["torch_over_numpy"] = result["torch"]["median_first_scores_s"] / result["auto"]["median_first_scores_s"]
    result["when"] = time.strftime("%Y-%m-%d %H:%M")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for runtime in ("auto", "torch"):
            r = result[runtime]
            print(f"{runtime:>5} runtime ({r['model']}, imports torch: {r['imports_torch']}): load {r['median_load_s']:.2f} s, "
                  f"first scores {r['median_first_scores_s']:.2f} s (median of {args.runs})")  # fmt: skip
        print(f"torch / numpy: {result['torch_over_numpy']:.2f}x the time to the first scores")
    return result


if __name__ == "__main__":
    main()
