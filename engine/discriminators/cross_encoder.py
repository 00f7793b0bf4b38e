"""Cross-encoder discriminators: any HF sequence-classification checkpoint (DeBERTa, XLM-R, BERT)."""

from __future__ import annotations

import contextlib
import pickle
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.device import dtype_name, nvidia_gpu_present, resolve_device, torch_dtype
from engine.errors import ConfigError, ModelError

from .base import BatchedDiscriminator, softmax, task_labels
from .formats import Item, get_format
from .meta import DiscriminatorMeta, is_path_like, read_meta, resolve_source
from .numpy_bert import NumpyBertClassifier, load_lora_classifier

MAX_LENGTH = 512


class CrossEncoderDiscriminator(BatchedDiscriminator):
    """One model, one task, one input format; `predict` scores items in length-sorted batches."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        task: str,
        format: str = "paper",
        labels: Sequence[str] | None = None,
        device: str = "cpu",
        source: str = "",
        quantize: str | None = None,
        meta: DiscriminatorMeta | None = None,
    ):
        self.task = task
        self.labels = task_labels(task)
        self.format = get_format(format).name
        self._format = get_format(format)
        model_labels = tuple(labels) if labels else self.labels
        n = int(model.num_labels if isinstance(model, NumpyBertClassifier) else model.config.num_labels)
        if n != len(self.labels):
            raise ModelError(
                f"{source or 'model'} outputs {n} labels but a {task} discriminator needs {len(self.labels)} "
                f"({', '.join(self.labels)}); pick a {task} checkpoint"
            )
        self._columns = [model_labels.index(label) for label in self.labels]  # model order -> task order
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.source = source
        self.quantize = quantize
        self.meta = meta
        limits = [MAX_LENGTH, getattr(tokenizer, "model_max_length", MAX_LENGTH) or MAX_LENGTH]
        self.max_length = int(min(limits))
        self.temperature = meta.temperature if meta else 1.0
        calibrated = f"|T{self.temperature:g}" if self.temperature != 1.0 else ""
        # the numpy runtime computes the same float32 function as torch on a CPU: same identity
        self.identity = f"cross:{source}|{self.format}|{quantize or dtype_name(device)}{calibrated}"
        self.weights = "safetensors"  # what the checkpoint held; load() sets it (see weights_kind)
        self.forward_calls = 0  # batches run through the model (tests and the bench count them)
        self.items_scored = 0
        self._lock = threading.Lock()  # one forward at a time: the TUI and retrieval share a model

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        source: str,
        task: str,
        *,
        format: str | None = None,
        device: str = "auto",
        quantize: str | None = None,
        trust_remote_code: bool = False,
        runtime: str = "auto",
    ) -> CrossEncoderDiscriminator:
        """Load a hub id or a directory; a directory's apc_discriminator.json sets format, labels, adapter, int8.

        quantize: None follows the meta file; "int8" or "none" override it explicitly.
        runtime: "auto" serves a plain-LoRA BERT adapter on the CPU with the numpy runtime (no torch
        import: a fast first score) and everything else with torch; "torch" always uses torch.
        """
        if runtime not in ("auto", "torch"):
            raise ConfigError(f"runtime {runtime!r} is not known; use auto or torch")
        task_labels(task)
        path = resolve_source(source)
        local = Path(path).is_dir()
        if is_path_like(source) and not local:
            raise ModelError(f"discriminator {source!r}: no such directory; give a model directory or a hub id")
        meta = read_meta(Path(path)) if local else None
        if meta is not None and meta.task != task:
            raise ModelError(f"{source} is a {meta.task} discriminator, not {task}; swap the rel= and nli= paths")
        fmt = format or (meta.format if meta else "paper")
        quant = (meta.quantize if meta else None) if quantize is None else (None if quantize == "none" else quantize)
        if quant not in (None, "int8"):
            raise ConfigError(f"quantize {quant!r} is not known; use int8 or none")
        # int8 dynamic quantization is a CPU technique: "auto" means the CPU for such a model; so it
        # does for an embedded adapter on a machine without an NVIDIA GPU (no torch import to learn it)
        auto = (device or "auto") == "auto"
        numpy_ok = runtime == "auto" and meta is not None and meta.adapter
        cpu_first = quant == "int8" or (numpy_ok and not nvidia_gpu_present())
        dev = "cpu" if auto and cpu_first else resolve_device(device)
        if quant == "int8" and dev != "cpu":
            raise ConfigError(f"{source}: int8 dynamic quantization runs on the CPU only; use --device cpu")
        weights = weights_kind(path)
        if local and weights is None:
            raise ModelError(
                f"{source}: no model weights (neither *.safetensors nor pytorch_model.bin); give a saved model directory"
            )
        served = _load_numpy_runtime(path, meta) if numpy_ok and quant is None and dev == "cpu" else None
        if served is not None:
            model, tokenizer = served
            return cls(model, tokenizer, task=task, format=fmt, labels=meta.labels, device=dev, source=source, meta=meta)
        tokenizer = _load_tokenizer(path, source, meta)
        if meta is not None and meta.adapter:
            weights = weights_kind(resolve_source(meta.base_model)) or weights
            model = _load_adapter_model(path, source, meta, trust_remote_code, weights=weights)
        else:
            model = _load_classifier(path, source, local, trust_remote_code, weights=weights)
        model.to(device=dev, dtype=torch_dtype(dev))
        model.eval()
        if quant == "int8":
            model = quantize_int8(model)
        served = cls(
            model, tokenizer, task=task, format=fmt, labels=meta.labels if meta else None,
            device=dev, source=source, quantize=quant, meta=meta,
        )  # fmt: skip
        served.weights = weights or "safetensors"
        return served

    # -- inference -------------------------------------------------------------------------
    def encode(self, items: Sequence[Item]) -> dict[str, list[list[int]]]:
        """Token ids per item, unpadded (one fast-tokenizer call for all items)."""
        rendered = [self._format.render(item) for item in items]
        kwargs = {"truncation": True, "max_length": self.max_length, "padding": False}
        if rendered and isinstance(rendered[0], tuple):
            firsts, seconds = zip(*rendered, strict=True)
            enc = self.tokenizer(list(firsts), list(seconds), **kwargs)
        else:
            enc = self.tokenizer(list(rendered), **kwargs)
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    def _predict(self, items: list[Item], batches: Iterator[tuple[int, int]]):
        """Probabilities (n, len(labels)) in the task's label order; rows follow `items`."""
        import numpy as np

        out = np.zeros((len(items), len(self.labels)), dtype=np.float64)
        if not items:
            return out
        enc = self.encode(items)
        lengths = np.array([len(ids) for ids in enc["input_ids"]])
        order = np.argsort(-lengths, kind="stable")  # longest first: peak memory shows up at once
        with self._lock:
            for start, end in batches:
                idx = order[start:end]
                logits = self._logits(pad_batch(enc, idx, self.tokenizer.pad_token_id or 0))
                out[idx] = softmax(logits / self.temperature)[:, self._columns]
                self.forward_calls += 1
            self.items_scored += len(items)
        return out

    def _logits(self, batch: dict):
        if isinstance(self.model, NumpyBertClassifier):
            return self.model(**batch)
        import torch

        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v).to(self.model.device) for k, v in batch.items()}
            return self.model(**tensors).logits.float().cpu().numpy()

    def describe(self) -> dict:
        return {
            "task": self.task,
            "source": self.source,
            "format": self.format,
            "labels": list(self.labels),
            "device": self.device,
            "dtype": "int8" if self.quantize else dtype_name(self.device),
            "runtime": "numpy" if isinstance(self.model, NumpyBertClassifier) else "torch",
            "adapter": bool(self.meta and self.meta.adapter),
            "temperature": self.temperature,
            "metrics": dict(self.meta.metrics) if self.meta else {},
            "weights": self.weights,  # safetensors | pytorch_model.bin (torch's weights-only unpickler)
        }


def pad_batch(enc: dict[str, list[list[int]]], idx, pad_id: int) -> dict:
    """Right-padded int64 arrays for the rows `idx` (built in numpy: faster than tokenizer.pad)."""
    import numpy as np

    rows = [enc["input_ids"][i] for i in idx]
    width = max(len(r) for r in rows)
    batch = {}
    for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key not in enc:
            continue
        arr = np.full((len(rows), width), fill, dtype=np.int64)
        for j, i in enumerate(idx):
            seq = enc[key][i]
            arr[j, : len(seq)] = seq
        batch[key] = arr
    return batch


def collate(enc: dict[str, list[list[int]]], idx, pad_id: int, device):
    """pad_batch as torch tensors on `device` (training and the benches)."""
    import torch

    return {k: torch.from_numpy(v).to(device) for k, v in pad_batch(enc, idx, pad_id).items()}


def quantize_int8(model):
    """Dynamic int8 quantization of every Linear layer (CPU). An explicit option, recorded in the meta."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch marks the eager quantization API deprecated (moving to torchao); it still works here
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _offline_error(source: str) -> ModelError:
    return ModelError(
        f"discriminator model {source!r} is not on this machine: it needs a download (network access) "
        f"or a local directory (profile rel=PATH,nli=PATH)"
    )


def _load_tokenizer(path: str, source: str, meta: DiscriminatorMeta | None):
    from transformers import AutoTokenizer

    candidates = [path]
    if meta is not None and meta.adapter:
        candidates.append(resolve_source(meta.base_model))  # adapters may rely on the base's tokenizer
    last: Exception | None = None
    for candidate in candidates:
        try:
            return AutoTokenizer.from_pretrained(candidate)
        except (OSError, ValueError) as exc:
            last = exc
    if not Path(path).is_dir():
        raise _offline_error(source) from last
    raise ModelError(f"{source}: no usable tokenizer ({_first_line(last)}); save the tokenizer beside the model")


def _load_numpy_runtime(path: str, meta: DiscriminatorMeta):
    """(NumpyBertClassifier, PairTokenizer) for a plain-LoRA BERT adapter, else None (transformers serves it)."""
    from .numpy_bert import PairTokenizer

    tokenizer_file = Path(path) / "tokenizer.json"
    base = Path(resolve_source(meta.base_model))
    if not tokenizer_file.is_file() or not base.is_dir():
        return None
    model = load_lora_classifier(base, Path(path))
    return None if model is None else (model, PairTokenizer.from_dir(Path(path)))


BIN_WEIGHTS = "pytorch_model.bin"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def weights_kind(path: str) -> str | None:
    """Which weights a checkpoint (a directory, or a hub id in the local HF cache) holds:
    "safetensors" (preferred when both are there), "pytorch_model.bin", or None when neither is found.

    Third-party checkpoints (the paper's among them) may hold only `pytorch_model.bin`: such a file is
    read with torch's weights-only unpickler (tensors and plain containers, never arbitrary objects)."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        names = {p.name for p in folder.iterdir()}
    elif is_path_like(path):
        return None
    else:
        from huggingface_hub import try_to_load_from_cache

        names = {n for n in _WEIGHT_FILES if isinstance(try_to_load_from_cache(path, n), str)}
    if any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names):
        return "safetensors"
    if BIN_WEIGHTS in names or f"{BIN_WEIGHTS}.index.json" in names:
        return BIN_WEIGHTS
    return None


def _unsafe_bin(source: str) -> ModelError:
    return ModelError(f"{source}: {BIN_WEIGHTS} holds more than tensors and torch's weights-only unpickler refused it; "
                      "use a safetensors copy of the model (never load pickles you do not trust)")  # fmt: skip


def _weight_kwargs(weights: str | None) -> dict:
    """from_pretrained keys: safetensors unless the checkpoint only has a .bin, read weights-only."""
    return {"use_safetensors": weights != BIN_WEIGHTS, "weights_only": True}


def _load_classifier(path: str, source: str, local: bool, trust_remote_code: bool, weights: str | None = None):
    from transformers import AutoModelForSequenceClassification

    try:
        with quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path, trust_remote_code=trust_remote_code, output_loading_info=True, **_weight_kwargs(weights)
            )
    except pickle.UnpicklingError as exc:
        raise _unsafe_bin(source) from exc
    except OSError as exc:
        if not local:
            raise _offline_error(source) from exc
        raise ModelError(f"{source}: cannot load a sequence-classification model ({_first_line(exc)})") from exc
    except ValueError as exc:
        raise ModelError(f"{source}: not a sequence-classification checkpoint ({_first_line(exc)})") from exc
    fresh = [k for k in info.get("missing_keys", []) if "classifier" in k or k.startswith("score")]
    if fresh:
        raise ModelError(
            f"{source}: has no trained classification head ({fresh[0]} missing); fine-tune it first with `apc disc train`"
        )
    return model


def _load_adapter_model(path: str, source: str, meta: DiscriminatorMeta, trust_remote_code: bool, use_peft: bool = False,
                        weights: str | None = None):  # fmt: skip
    from transformers import AutoModelForSequenceClassification

    base = resolve_source(meta.base_model)
    try:
        with quiet_transformers():  # the base's fresh head is expected: the adapter carries the trained one
            model = AutoModelForSequenceClassification.from_pretrained(
                base, num_labels=len(meta.labels), trust_remote_code=trust_remote_code, **_weight_kwargs(weights)
            )
    except pickle.UnpicklingError as exc:
        raise _unsafe_bin(meta.base_model) from exc
    except OSError as exc:
        if not Path(base).is_dir():
            raise _offline_error(meta.base_model) from exc
        raise ModelError(f"{source}: cannot load its LoRA adapter's base model {meta.base_model} ({_first_line(exc)})") from exc
    if not use_peft and _merge_plain_lora(model, Path(path)):
        return model
    from peft import PeftModel

    try:
        with quiet_transformers():
            model = PeftModel.from_pretrained(model, path)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{source}: cannot load its LoRA adapter ({_first_line(exc)}); retrain it") from exc
    return model.merge_and_unload()  # plain modules again: faster inference, and int8 can apply


def _merge_plain_lora(model, path: Path) -> bool:
    """Merge a plain LoRA adapter (W += alpha/r * B @ A, plus the saved heads) into `model` without
    peft: importing peft costs 2-5 s, most of a CLI call's first score. False (model untouched)
    for anything else (DoRA, rsLoRA, per-module ranks, biases...): peft handles those."""
    import torch
    from safetensors.torch import load_file

    from .numpy_bert import read_plain_lora

    lora = read_plain_lora(path, load_file)
    if lora is None:
        return False
    pairs, heads, scale = lora
    state = model.state_dict()
    if any(f"{m}.weight" not in state for m in pairs) or any(h not in state for h in heads):
        return False
    with torch.no_grad():
        for module, (a, b) in pairs.items():
            weight = state[f"{module}.weight"]
            weight += (scale * b.float() @ a.float()).to(weight.dtype)
        for name, tensor in heads.items():
            state[name].copy_(tensor)
    return True


@contextlib.contextmanager
def quiet_transformers():
    """No progress bars or info logs from transformers while loading (the CLI prints its own)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # peft still calls a transformers API that v5 marks deprecated; not actionable by our users
            warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _first_line(exc: Exception | None) -> str:
    text = str(exc or "unknown error").strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
