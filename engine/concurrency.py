"""Bounded concurrency that a stop event or Ctrl-C ends at once.

`concurrent.futures.ThreadPoolExecutor` joins its worker threads when its `with` block ends and
again at interpreter exit, so a worker stuck in an HTTP call to a server that never answers holds
the process until its time-out (times its retries): Ctrl-C looked ignored for minutes. Here the
workers are daemon threads that nobody joins: when the caller stops iterating (a stop event, an
exception, KeyboardInterrupt) the items not started are dropped, and the calls in flight are
abandoned; their results are never read. Each item's own work must therefore be atomic (one
transaction per item), which the teacher runner already guarantees.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

POLL_S = 0.1  # how often a waiting caller looks at its stop event


def imap_unordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    *,
    stop: threading.Event | None = None,
    name: str = "worker",
) -> Iterator[tuple[int, R]]:
    """Yield (index, fn(item)) as each call finishes, at most `workers` at once.

    An exception raised by `fn` is re-raised here (in the caller's thread). Stops yielding as soon
    as `stop` is set; the generator's `close()` (or an exception in the caller) also ends it.
    """
    todo: queue.SimpleQueue[tuple[int, T]] = queue.SimpleQueue()
    for pair in enumerate(items):
        todo.put(pair)
    done: queue.SimpleQueue[tuple[int, R | None, BaseException | None]] = queue.SimpleQueue()
    halt = threading.Event()

    def worker() -> None:
        while not halt.is_set():
            try:
                index, item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((index, fn(item), None))
            except BaseException as exc:  # handed to the caller, who re-raises it
                done.put((index, None, exc))

    for i in range(min(max(1, workers), len(items))):
        threading.Thread(target=worker, name=f"{name}-{i}", daemon=True).start()
    try:
        for _ in range(len(items)):
            while True:
                if stop is not None and stop.is_set():
                    return
                try:
                    index, result, exc = done.get(timeout=POLL_S)
                    break
                except queue.Empty:
                    continue
            if exc is not None:
                raise exc
            yield index, result  # type: ignore[misc]
    finally:
        halt.set()


def map_ordered(fn: Callable[[T], R], items: Sequence[T], workers: int, *, name: str = "worker") -> list[R]:
    """fn over items concurrently, results in input order; the first error is raised."""
    out: dict[int, R] = {}
    gen = imap_unordered(fn, items, workers, name=name)
    try:
        for index, result in gen:
            out[index] = result
    finally:
        gen.close()
    return [out[i] for i in range(len(items))]
