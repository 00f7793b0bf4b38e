"""Sharded scoring: one discriminator replica per device, each in its own process, batches dealt
out across them. The scorer above (engine.apc.ApcScorer) does not change: a `ShardedPair` offers
the same `relevance` / `nli` discriminators, whose `predict` sends the work to the replicas.

How a `predict` call is split: the items are sorted by length (longest first, as one device does),
cut into batches of `batch_size`, and the batches are dealt round-robin to the devices, so every
device gets the same mix of long and short batches and each batch pads little. Rows come back in
input order; the numbers equal one device's up to float rounding of differently padded batches.

Replicas live in spawned processes (CUDA cannot be forked): one single-worker process pool per
device, so a batch always runs where its replica is. On CPU, N workers split the cores between
them (that is how the tests run it; on a many-core CPU box it also helps, the numpy/torch kernels
do not scale linearly with threads).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from engine.errors import ConfigError

from .base import Progress, check_items, check_stop
from .formats import Item, NliItem

# The replica loaded in a worker process (one per process, set by the pool initializer).
_REPLICA: dict = {}


def _load_replica(profile: str, device: str, trust_remote_code: bool, threads: int) -> None:
    """Pool initializer. A failure is kept and raised by the first call (a raising initializer
    would only leave a BrokenProcessPool, without the message that names the fix)."""
    import sys

    from engine.discriminators import load_profile
    from engine.errors import ApcError

    _REPLICA["device"] = device
    try:
        _REPLICA["pair"] = load_profile(profile, device=device, trust_remote_code=trust_remote_code)
    except ApcError as exc:
        _REPLICA["error"] = exc
    if device == "cpu" and "torch" in sys.modules:  # CPU workers share the cores (the numpy runtime needs no torch)
        sys.modules["torch"].set_num_threads(threads)


def _replica():
    if "error" in _REPLICA:
        raise _REPLICA["error"]
    return _REPLICA["pair"]


def _describe(task: str) -> tuple[tuple[str, ...], str, str, str]:
    disc = getattr(_replica(), task)
    return tuple(disc.labels), disc.format, disc.identity, str(getattr(disc, "device", _REPLICA["device"]))


def _predict(task: str, items: list, batch_size: int) -> np.ndarray:
    return np.asarray(getattr(_replica(), task).predict(items, batch_size=batch_size), dtype=np.float64)


def scoring_devices(device: str, workers: int | None) -> tuple[str, ...]:
    """One device per worker: `workers` CPU processes with --device cpu; on CUDA the first
    `workers` GPUs (None = all visible)."""
    from engine.device import resolve_device

    dev = resolve_device(device)
    if dev.startswith("cuda") and ":" not in dev:
        from engine.distributed import cuda_count

        n = cuda_count()
        workers = n if workers is None else workers
        if workers > n:
            raise ConfigError(f"--scoring-workers {workers} but only {n} CUDA GPU(s) are visible; use {n} or fewer")
        return tuple(f"cuda:{i}" for i in range(max(workers, 1)))
    workers = 1 if workers is None else workers
    if workers < 1:
        raise ConfigError(f"--scoring-workers {workers}: give 1 or more")
    if workers > 1 and dev != "cpu":
        raise ConfigError(f"--scoring-workers {workers} on {dev}: several workers need --device cpu or all CUDA GPUs (--device cuda)")
    return tuple(dev for _ in range(workers))


def shard_batches(lengths: Sequence[int], batch_size: int, shards: int) -> list[list[np.ndarray]]:
    """Per shard, its batches of item indices: length-sorted (longest first), dealt round-robin."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[s::shards] for s in range(shards)]


def _length(item: Item) -> int:
    n = len(item.character) + len(item.statement) + len(item.query)
    return n + len(item.response) if isinstance(item, NliItem) else n


class ScoringPool:
    """The replicas: one process per device, each holding the profile's relevance + NLI pair."""

    def __init__(self, profile: str, devices: Sequence[str], *, trust_remote_code: bool = False):
        if not devices:
            raise ConfigError("sharded scoring needs at least one device")
        self.profile, self.devices = profile, tuple(devices)
        ctx = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // len(self.devices))
        self.pools = [ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_load_replica,
                                          initargs=(profile, d, trust_remote_code, threads)) for d in self.devices]  # fmt: skip
        try:  # load every replica now (in parallel), so a bad profile fails here, once
            described = [p.submit(_describe, task) for task in ("relevance", "nli") for p in self.pools]
            self.meta = {task: described[i * len(self.pools)].result() for i, task in enumerate(("relevance", "nli"))}
            for f in described:
                f.result()
        except BaseException:
            self.close()
            raise

    def predict(self, task: str, items: Sequence[Item], batch_size: int, progress: Progress | None = None,
                stop: threading.Event | None = None) -> np.ndarray:  # fmt: skip
        items = list(items)
        check_items(task, items)
        labels = self.meta[task][0]
        out = np.zeros((len(items), len(labels)), dtype=np.float64)
        if not items:
            return out
        shards = shard_batches([_length(i) for i in items], batch_size, len(self.pools))
        pending: dict[Future, np.ndarray] = {}
        for pool, batches in zip(self.pools, shards, strict=True):
            for idx in batches:  # each pool runs its batches in order; all pools at once
                pending[pool.submit(_predict, task, [items[j] for j in idx], batch_size)] = idx
        done_rows = 0
        try:
            while pending:
                check_stop(stop)
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in finished:
                    idx = pending.pop(fut)
                    out[idx] = fut.result()
                    done_rows += len(idx)
                    if progress is not None:
                        progress(done_rows, len(items), f"{task} on {len(self.pools)} devices")
        finally:
            for fut in pending:
                fut.cancel()
        return out

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ShardedDiscriminator:
    """A Discriminator whose `predict` runs on every replica of a ScoringPool."""

    def __init__(self, pool: ScoringPool, task: str):
        self.pool, self.task = pool, task
        self.labels, self.format, identity, self.device = pool.meta[task]
        self.identity = identity  # the replicas' identity: relevance cached by one device serves all

    def predict(self, items, batch_size: int = 32, progress: Progress | None = None, stop: threading.Event | None = None):
        return self.pool.predict(self.task, items, batch_size, progress, stop)

    def describe(self) -> dict:
        return {"task": self.task, "source": self.identity, "format": self.format,
                "devices": list(self.pool.devices), "sharded": len(self.pool.devices)}  # fmt: skip


@dataclass(frozen=True)
class ShardedPair:
    """A DiscriminatorPair over a ScoringPool (what ApcScorer takes)."""

    relevance: ShardedDiscriminator
    nli: ShardedDiscriminator
    profile: str
    pool: ScoringPool

    @classmethod
    def open(cls, profile: str, devices: Sequence[str], *, trust_remote_code: bool = False) -> ShardedPair:
        pool = ScoringPool(profile, devices, trust_remote_code=trust_remote_code)
        return cls(ShardedDiscriminator(pool, "relevance"), ShardedDiscriminator(pool, "nli"), profile, pool)

    def describe(self) -> dict:
        return {"profile": self.profile, "relevance": self.relevance.describe(), "nli": self.nli.describe()}

    def close(self) -> None:
        self.pool.close()
