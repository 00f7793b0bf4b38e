"""Generation at scale through an OpenAI-compatible serving engine (vLLM, SGLang, TGI, llama.cpp...).

The workbench does not batch generation itself: a serving engine does (continuous batching, prefix
caching of the shared system prompt). What we do is keep it busy: `generate_in_order` keeps up to
`concurrency` requests in flight, each asking for all `n` candidates of one prompt (`n` in the
request, so the prompt is prefilled once), and hands the replies back in query order, so pairs and
evaluations are the same whatever the concurrency. `probe_server` is what `apc doctor` checks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from engine.errors import Cancelled, InputError


def check_concurrency(model_spec: str, concurrency: int) -> None:
    if concurrency < 1:
        raise InputError(f"--concurrency {concurrency}: give 1 or more")
    if concurrency > 1 and not model_spec.startswith("openai:"):
        raise InputError(f"--concurrency {concurrency} with --model {model_spec}: concurrent requests need a model server "
                         "(openai:MODEL with OPENAI_BASE_URL, e.g. vLLM); a local model generates one prompt at a time")  # fmt: skip


def generate_in_order(build: Callable[[int], object], generate: Callable[[object], list[str]], indices: Sequence[int],
                      concurrency: int = 1, stop: threading.Event | None = None) -> Iterator[tuple[int, object, list[str]]]:  # fmt: skip
    """(index, built prompt, replies) for each index, in order, with up to `concurrency` generations
    in flight. `build(i)` runs in the calling thread (retrieval may use the scorer); `generate(built)`
    in a worker thread. Stopping or leaving the loop early cancels what has not started."""
    if concurrency <= 1:
        for i in indices:
            if stop is not None and stop.is_set():
                raise Cancelled("generation stopped on request")
            built = build(i)
            yield i, built, generate(built)
        return
    todo = iter(indices)
    window: deque[tuple[int, object, Future]] = deque()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="apc-gen") as pool:
        try:
            while True:
                while len(window) < concurrency:
                    i = next(todo, None)
                    if i is None:
                        break
                    built = build(i)
                    window.append((i, built, pool.submit(generate, built)))
                if not window:
                    return
                if stop is not None and stop.is_set():
                    raise Cancelled("generation stopped on request")
                i, built, fut = window.popleft()
                yield i, built, fut.result()
        finally:
            for _, _, fut in window:
                fut.cancel()


@dataclass(frozen=True)
class ServerReport:
    base_url: str
    models: tuple[str, ...]
    model: str | None  # the model asked about
    model_listed: bool
    n_supported: bool | None  # None when not probed (no model to ask)
    n_returned: int

    def to_dict(self) -> dict:
        return {"base_url": self.base_url, "models": list(self.models), "model": self.model, "model_listed": self.model_listed,
                "n_supported": self.n_supported, "n_returned": self.n_returned}  # fmt: skip


def probe_server(base_url: str, api_key: str | None, model: str | None, *, n: int = 2, timeout: float = 10.0) -> ServerReport:
    """GET /models, then one 1-token chat completion with `n` choices: does the server return `n`?
    Raises httpx errors / ValueError for the caller (doctor) to report."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base = base_url.rstrip("/")
    with httpx.Client(timeout=timeout, headers=headers) as client:
        listed = client.get(f"{base}/models")
        listed.raise_for_status()
        ids = tuple(str(m.get("id")) for m in listed.json().get("data", []))
        if not model or model not in ids:  # nothing to ask, or a request that could only 404
            return ServerReport(base, ids, model, False, None, 0)
        body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "n": n, "max_tokens": 1, "temperature": 1.0}
        reply = client.post(f"{base}/chat/completions", json=body)
        reply.raise_for_status()
        choices = reply.json().get("choices") or []
    return ServerReport(base, ids, model, model in ids, len(choices) == n, len(choices))
