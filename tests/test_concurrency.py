"""engine.concurrency: bounded, ordered or as-completed, and ended at once by a stop event or an error."""

from __future__ import annotations

import threading
import time

import pytest

from engine.concurrency import imap_unordered, map_ordered


def test_map_ordered_keeps_input_order_and_bounds_concurrency():
    running, peak, lock = [0], [0], threading.Lock()

    def work(x):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01 * (5 - x % 5))
        with lock:
            running[0] -= 1
        return x * x

    assert map_ordered(work, list(range(12)), 3) == [x * x for x in range(12)]
    assert peak[0] <= 3


def test_an_error_in_a_worker_is_raised_in_the_caller():
    def work(x):
        if x == 2:
            raise ValueError("item 2 is bad")
        return x

    with pytest.raises(ValueError, match="item 2 is bad"):
        map_ordered(work, [0, 1, 2, 3], 2)


def test_stop_returns_at_once_without_waiting_for_calls_in_flight():
    release, started = threading.Event(), []
    stop = threading.Event()

    def blocked(x):  # a call to a server that never answers
        started.append(x)
        release.wait(30)
        return x

    gen = imap_unordered(blocked, list(range(10)), 2, stop=stop)
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    assert list(gen) == []
    assert time.monotonic() - t0 < 1.0
    assert len(started) == 2  # the items not started are dropped
    release.set()


def test_closing_the_generator_drops_pending_items():
    done = []

    def work(x):
        time.sleep(0.05)
        done.append(x)
        return x

    gen = imap_unordered(work, list(range(20)), 1)
    next(gen)
    gen.close()
    time.sleep(0.2)
    assert len(done) <= 3
