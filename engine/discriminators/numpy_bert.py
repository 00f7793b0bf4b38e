"""A BERT cross-encoder in numpy: the embedded discriminators' CPU runtime.

Why not transformers here: importing torch and transformers' BERT classes costs 5-10 s on a
2-core machine, more than a CLI call's whole scoring, while the embedded MiniLM is a plain BERT
whose forward pass is a dozen matrix products for numpy's (multi-threaded) BLAS. numpy's
element-wise functions run on one core, so GELU, layer norms and attention run on blocks of rows
spread over a thread pool (numpy releases the GIL; a block stays in cache). Hub checkpoints,
GPUs, int8 and training keep using torch + transformers; tests check that both runtimes give
the same logits for the same weights, and bench/scoring.py compares their speed.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engine.errors import ModelError

# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32 noise; numpy has no erf of its own
_AS_P = 0.3275911
_AS_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # Horner order


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU that BERT's "gelu" means, written so that no sign or branch is needed:
    gelu(x) = (x + |x| * erf(|x|/sqrt 2)) / 2, with erf(a) = 1 - y and y = poly(t) * exp(-a^2)."""
    a = np.abs(x)
    z = a * np.float32(1 / np.sqrt(2))
    t = z * np.float32(_AS_P)
    t += 1
    np.reciprocal(t, out=t)
    y = t * np.float32(_AS_A[0])
    for coefficient in _AS_A[1:]:
        y += np.float32(coefficient)
        y *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    y *= z  # y = 1 - erf(|x| / sqrt 2)
    y -= 1
    y *= a  # -|x| * erf(...)
    np.subtract(x, y, out=y)
    y *= np.float32(0.5)
    return y


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    x = x - x.mean(-1, keepdims=True)
    x /= np.sqrt((x * x).mean(-1, keepdims=True) + np.float32(eps))
    x *= weight
    x += bias
    return x


BLOCK_ROWS = 64  # rows of (tokens x features) per block: 64 x 1536 floats stay in a core's cache
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="numpy-bert")
        return _pool


def map_blocks(fn, n: int, block: int = BLOCK_ROWS) -> None:
    """Run fn(start, end) over [0, n) in blocks on the thread pool (fn writes its own output slice)."""
    if n <= block:
        fn(0, n)
        return
    for future in [_threads().submit(fn, i, min(i + block, n)) for i in range(0, n, block)]:
        future.result()  # re-raises a block's error here


def supports(config: dict) -> bool:
    """Plain BERT encoders only (what all-MiniLM-L6-v2 is)."""
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act", "gelu") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
    )


class NumpyBertClassifier:
    """BertForSequenceClassification's inference: embeddings, encoder layers, tanh pooler, linear head."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict):
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.num_labels = int(weights["classifier.weight"].shape[0])
        w = {k.removeprefix("bert."): v.astype(np.float32, copy=False) for k, v in weights.items()}
        self.word, self.position, self.token_type = (
            w[f"embeddings.{n}_embeddings.weight"] for n in ("word", "position", "token_type")
        )
        self.emb_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = [self._layer(w, f"encoder.layer.{i}.") for i in range(int(config["num_hidden_layers"]))]
        self.pooler = (np.ascontiguousarray(w["pooler.dense.weight"].T), w["pooler.dense.bias"])
        self.classifier = (np.ascontiguousarray(w["classifier.weight"].T), w["classifier.bias"])

    @staticmethod
    def _layer(w: dict, p: str) -> dict:
        att = p + "attention."
        # one (hidden, 3*hidden) product for Q, K and V; weights stored transposed for x @ W
        qkv = np.concatenate([w[f"{att}self.{n}.weight"] for n in ("query", "key", "value")]).T
        return {
            "qkv": (np.ascontiguousarray(qkv), np.concatenate([w[f"{att}self.{n}.bias"] for n in ("query", "key", "value")])),
            "out": (np.ascontiguousarray(w[f"{att}output.dense.weight"].T), w[f"{att}output.dense.bias"]),
            "norm1": (w[f"{att}output.LayerNorm.weight"], w[f"{att}output.LayerNorm.bias"]),
            "up": (np.ascontiguousarray(w[f"{p}intermediate.dense.weight"].T), w[f"{p}intermediate.dense.bias"]),
            "down": (np.ascontiguousarray(w[f"{p}output.dense.weight"].T), w[f"{p}output.dense.bias"]),
            "norm2": (w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"]),
        }

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Logits (batch, num_labels), float32, for right-padded int arrays (batch, length)."""
        batch, length = input_ids.shape
        types = np.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = self.word[input_ids] + self.position[:length][None] + self.token_type[types]
        x = layer_norm(x.reshape(batch * length, -1), *self.emb_norm, self.eps)  # 2-D: numpy runs 3-D @ 2-D as a slow loop
        # additive mask: padded keys get a large negative score (finfo.min would overflow when added)
        mask = np.where(attention_mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        for layer in self.layers:
            x = self._encoder_layer(x, layer, mask, batch, length)
        pooled = np.tanh(x.reshape(batch, length, -1)[:, 0] @ self.pooler[0] + self.pooler[1])
        return (pooled @ self.classifier[0] + self.classifier[1]).astype(np.float32, copy=False)

    def _encoder_layer(self, x, layer, mask, batch, length):
        hidden = x.shape[-1]
        size = hidden // self.heads
        qkv = (x @ layer["qkv"][0]).reshape(batch, length, 3 * hidden)
        context = np.empty((batch, length, hidden), dtype=np.float32)
        scale = np.float32(1 / np.sqrt(size))

        def attend(start, end):  # whole sequences per block: attention mixes a sequence's rows
            part = qkv[start:end] + layer["qkv"][1]
            q, k, v = (part[..., i * hidden : (i + 1) * hidden].reshape(end - start, length, self.heads, size).transpose(0, 2, 1, 3)
                       for i in range(3))  # fmt: skip
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += mask[start:end]
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context[start:end] = (scores @ v).transpose(0, 2, 1, 3).reshape(end - start, length, hidden)

        map_blocks(attend, batch, max(1, 4 * BLOCK_ROWS // length))
        x = self._add_norm(context.reshape(batch * length, hidden) @ layer["out"][0], layer["out"][1], x, layer["norm1"])
        up = x @ layer["up"][0]

        def activate(start, end):
            block = up[start:end]
            block += layer["up"][1]
            up[start:end] = gelu(block)

        map_blocks(activate, len(up))
        return self._add_norm(up @ layer["down"][0], layer["down"][1], x, layer["norm2"])

    def _add_norm(self, h, bias, residual, norm):
        """layer_norm(h + bias + residual), block by block, in place in h."""

        def work(start, end):
            block = h[start:end]
            block += bias
            block += residual[start:end]
            h[start:end] = layer_norm(block, *norm, self.eps)

        map_blocks(work, len(h))
        return h


def load_lora_classifier(base_dir: Path, adapter_dir: Path) -> NumpyBertClassifier | None:
    """The base BERT with a plain LoRA adapter merged in (W += alpha/r * B @ A) and the adapter's
    saved pooler/classifier heads. None when this runtime cannot serve it (not a plain BERT, not
    a plain LoRA): the caller falls back to transformers."""
    from safetensors.numpy import load_file

    try:
        config = json.loads((Path(base_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    lora = read_plain_lora(Path(adapter_dir), load_file) if supports(config) else None
    if lora is None:
        return None
    pairs, heads, scale = lora
    weights = load_file(str(Path(base_dir) / "model.safetensors"))
    weights = {("bert." + k if not k.startswith(("bert.", "classifier.")) else k): v for k, v in weights.items()}
    if any(f"{m}.weight" not in weights for m in pairs) or any(h not in weights for h in heads if not h.startswith("classifier.")):
        return None
    for module, (a, b) in pairs.items():
        weights[f"{module}.weight"] = weights[f"{module}.weight"] + scale * (b @ a)
    weights.update(heads)
    if "classifier.weight" not in weights:
        raise ModelError(f"{adapter_dir}: the adapter carries no classification head; retrain it")
    return NumpyBertClassifier(weights, config)


_VARIANTS = ("use_dora", "use_rslora", "fan_in_fan_out", "rank_pattern", "alpha_pattern", "layers_to_transform")


def plain_lora(cfg: dict) -> bool:
    """W += alpha/r * B @ A and nothing else (no DoRA, rsLoRA, per-module ranks or biases)."""
    plain = cfg.get("peft_type", "LORA") == "LORA" and cfg.get("bias", "none") == "none"
    return plain and bool(cfg.get("r")) and not any(cfg.get(k) for k in _VARIANTS)


def read_plain_lora(directory: Path, load_file) -> tuple[dict, dict, float] | None:
    """A peft adapter directory as ({module: (A, B)}, {head parameter: tensor}, alpha / r), read with
    `load_file` (safetensors' numpy or torch loader); None if it is not a plain LoRA both runtimes
    can merge themselves (W += alpha/r * B @ A), or a module lacks A or B."""
    try:
        cfg = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
        if not plain_lora(cfg):
            return None
        tensors = load_file(str(directory / "adapter_model.safetensors"))
    except (OSError, ValueError):
        return None
    prefix = "base_model.model."
    halves: dict[str, dict] = {}
    heads: dict = {}
    for key, tensor in tensors.items():
        name = key.removeprefix(prefix)
        if ".lora_A." in name or ".lora_B." in name:
            module, rest = name.split(".lora_", 1)  # "...attention.self.query", "A.weight"
            halves.setdefault(module, {})[rest[0]] = tensor
        else:
            heads[name] = tensor
    if any(set(ab) != {"A", "B"} for ab in halves.values()):
        return None
    return {m: (ab["A"], ab["B"]) for m, ab in halves.items()}, heads, cfg["lora_alpha"] / cfg["r"]


class PairTokenizer:
    """The part of a transformers fast tokenizer that the cross-encoder calls, on `tokenizers` alone
    (the same Rust tokenizer and tokenizer.json, so the same ids, without importing transformers)."""

    def __init__(self, tokenizer, pad_token_id: int, model_max_length: int):
        self._tokenizer = tokenizer
        self.pad_token_id = pad_token_id
        self.model_max_length = model_max_length
        # truncation is state of the Rust tokenizer: changing it while another thread encodes
        # raises "Already borrowed", so settings and encoding happen under one lock
        self._lock = threading.Lock()
        self._truncation: int | None = -1  # unknown until the first call sets it

    @classmethod
    def from_dir(cls, directory: Path) -> PairTokenizer:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
        config_file = Path(directory) / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        pad = tokenizer.token_to_id(str(config.get("pad_token") or "[PAD]"))
        return cls(tokenizer, pad if pad is not None else 0, int(min(config.get("model_max_length") or 512, 10**6)))

    def __call__(self, texts, pairs=None, *, truncation: bool = True, max_length: int = 512, padding: bool = False) -> dict:
        if padding:
            raise ValueError("PairTokenizer returns unpadded ids; pad with cross_encoder.pad_batch")
        inputs = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        wanted = max_length if truncation else None
        with self._lock:
            if wanted != self._truncation:
                self._tokenizer.no_padding()
                if wanted is None:
                    self._tokenizer.no_truncation()
                else:
                    self._tokenizer.enable_truncation(wanted, strategy="longest_first")
                self._truncation = wanted
            encodings = self._tokenizer.encode_batch(inputs)
        return {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
