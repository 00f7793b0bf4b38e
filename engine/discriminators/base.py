"""What every discriminator shares: its task, its label order and the `predict` shape."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
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


class BatchedDiscriminator:
    """The `predict` every discriminator here shares: items checked against the task, then scored
    in batches by `_predict`, with a stop check before and a progress report after each batch."""

    task: str
    progress_text = "discriminator"  # progress reads "<task> <progress_text>"

    def predict(
        self,
        items: Sequence[Item],
        batch_size: int = 32,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
    ):
        """Probabilities, shape (len(items), len(labels)), rows in input order, columns in label order."""
        items = list(items)
        check_items(self.task, items)
        return self._predict(items, _batches(len(items), batch_size, progress, stop, f"{self.task} {self.progress_text}"))

    def _predict(self, items: list[Item], batches: Iterator[tuple[int, int]]):
        """Score `items`, taking the [start, end) row ranges from `batches` in order."""
        raise NotImplementedError


def _batches(n: int, batch_size: int, progress: Progress | None, stop: threading.Event | None, text: str) -> Iterator[tuple[int, int]]:
    for start in range(0, n, batch_size):
        check_stop(stop)
        end = min(start + batch_size, n)
        yield start, end
        if progress is not None:
            progress(end, n, text)


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
