"""What every discriminator shares: its task, its label order and the `predict` shape."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from engine.errors import Cancelled, ConfigError
from engine.types import NLI_LABELS, RELEVANCE_LABELS

from .formats import Item, NliItem, RelevanceItem

TASK_LABELS: dict[str, tuple[str, ...]] = {"relevance": RELEVANCE_LABELS, "nli": NLI_LABELS}
TASK_ITEM = {"relevance": RelevanceItem, "nli": NliItem}

Progress = Callable[[int, int, str], None]


def task_labels(task: str) -> tuple[str, ...]:
    try:
        return TASK_LABELS[task]
    except KeyError:
        raise ConfigError(f"discriminator task {task!r} is not known; use relevance or nli") from None


@runtime_checkable
class Discriminator(Protocol):
    task: str  # relevance | nli
    labels: tuple[str, ...]  # output column order
    format: str  # input format name (see formats.FORMATS)
    identity: str  # stable id of model + format + options: the relevance cache key

    def predict(
        self,
        items: Sequence[Item],
        batch_size: int = 32,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ):
        """Probabilities, shape (len(items), len(labels)), rows in input order, columns in label order."""
        ...


def check_items(task: str, items: Sequence[Item]) -> None:
    kind = TASK_ITEM[task]
    for item in items:
        if type(item) is not kind:
            raise TypeError(f"a {task} discriminator takes {kind.__name__}, got {type(item).__name__}")


def check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Cancelled("scoring stopped on request")


def softmax(x):
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
