"""Labelled discriminator data as JSON lines: {"character","statement","query",["response",]"label"}."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError

from .base import task_labels
from .formats import Item, NliItem, RelevanceItem

MAX_BYTES = 512 * 1024 * 1024
LABEL_ALIASES = {
    "relevance": {"no": "no", "yes": "yes", "false": "no", "true": "yes"},
    "nli": {
        "contradicted": "contradicted",
        "contradict": "contradicted",
        "contradiction": "contradicted",
        "neutral": "neutral",
        "entailed": "entailed",
        "entail": "entailed",
        "entailment": "entailed",
    },
}


@dataclass(frozen=True)
class LabelledItem:
    item: Item
    label: int  # index into the task's label order


def normalise_label(task: str, value) -> str | None:
    if isinstance(value, bool):
        value = "true" if value else "false"
    if not isinstance(value, str):
        return None
    return LABEL_ALIASES[task].get(value.strip().lower())


def read_jsonl_text(path: Path, max_bytes: int = MAX_BYTES) -> str:
    """The text of a JSON-lines file, refused in one line when missing, too large, binary or not UTF-8."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); give an existing .jsonl file") from exc
    if size > max_bytes:
        raise InputError(f"{path}: {size // 2**20} MiB is too large (limit {max_bytes // 2**20} MiB); split the file")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise InputError(f"{path}: looks binary; give a UTF-8 JSON-lines file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 (byte {exc.start}); re-save the file as UTF-8") from exc


def read_labelled(path: Path | str, task: str) -> list[LabelledItem]:
    """Every row of a JSONL file, checked; a bad row raises InputError naming the file and line."""
    labels = task_labels(task)
    path = Path(path)
    fields = ("character", "statement", "query") + (("response",) if task == "nli" else ())
    allowed = " / ".join(labels) + (' (or "contradict")' if task == "nli" else "")
    text = read_jsonl_text(path)
    out: list[LabelledItem] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg}); one JSON object per line") from exc
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object with {', '.join(fields)}, label")
        values = []
        for name in fields:
            value = row.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{where}: field {name!r} is missing or empty; every {task} row needs {', '.join(fields)}, label")
            values.append(value)
        label = normalise_label(task, row.get("label"))
        if label is None:
            raise InputError(f"{where}: label {row.get('label')!r} is not one of {allowed}")
        item = NliItem(*values) if task == "nli" else RelevanceItem(*values)
        out.append(LabelledItem(item, labels.index(label)))
    if not out:
        raise InputError(f"{path}: no rows; give one JSON object per line with {', '.join(fields)}, label")
    return out


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
