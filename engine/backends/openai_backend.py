"""OpenAI-compatible chat-completions backend: `openai:MODEL` (OpenAI, vLLM, Ollama, llama.cpp ...).

The key and base URL come from explicit arguments, else OPENAI_API_KEY / OPENAI_BASE_URL; the
engine never reads the app's config. Retries are ours (bounded exponential backoff on 429, 5xx
and time-outs) so each failure ends in one clear line.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from engine.errors import ConfigError, ModelError
from engine.types import GenerationParams, Turn

from .base import BaseChatModel, Completion, check_messages

DEFAULT_URL = "https://api.openai.com/v1"


class OpenAIChatModel(BaseChatModel):
    meaningless = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        fill_workers: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        **_ignored,
    ):
        import openai

        self.model = model
        self.spec = f"openai:{model}"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self.base_url == DEFAULT_URL:
            raise ConfigError(f"{self.spec}: no API key; set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.fill_workers = fill_workers
        self._sleep = sleep
        self._logprobs_supported: bool | None = None
        # local servers (vLLM, Ollama) accept any key; the client insists on one
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key or "not-needed", timeout=timeout, max_retries=0)

    # -- errors and retries ------------------------------------------------------------
    def _error(self, exc: Exception) -> ModelError:
        import openai

        err = self._describe(exc)
        # a bad key or an unknown model fails every later call too: callers stop at once
        err.fatal = isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError | openai.NotFoundError)  # type: ignore[attr-defined]
        return err

    def _describe(self, exc: Exception) -> ModelError:
        import openai

        url = self.base_url
        if isinstance(exc, openai.AuthenticationError):
            return ModelError(f"{self.spec}: the server at {url} rejected the API key (401); set OPENAI_API_KEY to a valid key")
        if isinstance(exc, openai.PermissionDeniedError):
            return ModelError(f"{self.spec}: access denied by {url} (403); check the key's permissions for model {self.model!r}")
        if isinstance(exc, openai.NotFoundError):
            return ModelError(f"{self.spec}: unknown model {self.model!r} at {url} (404); check the name (the server's /models lists them)")
        if isinstance(exc, openai.APITimeoutError):
            return ModelError(f"{self.spec}: the server at {url} timed out after {self.max_retries + 1} tries; retry later or raise the timeout")
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(f"{self.spec}: cannot connect to {url}; is the server running at {url}? (set OPENAI_BASE_URL)")
        if isinstance(exc, openai.RateLimitError):
            return ModelError(f"{self.spec}: rate limited by {url} (429) after {self.max_retries + 1} tries; lower --concurrency or retry later")
        if isinstance(exc, openai.APIStatusError):
            return ModelError(f"{self.spec}: server error {exc.status_code} from {url}: {_short(exc.message)}")
        if isinstance(exc, openai.APIResponseValidationError | ValueError):
            return ModelError(f"{self.spec}: malformed reply from {url} ({_short(str(exc))}); is it an OpenAI-compatible server?")
        return ModelError(f"{self.spec}: request to {url} failed: {_short(str(exc))}")

    def _retryable(self, exc: Exception) -> bool:
        import openai

        if isinstance(exc, openai.RateLimitError | openai.APITimeoutError | openai.APIConnectionError):
            return True
        return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500

    def _call(self, fn: Callable[[], object]):
        import openai

        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except (openai.OpenAIError, ValueError) as exc:
                if attempt >= self.max_retries or not self._retryable(exc):
                    raise self._error(exc) from exc
                self._sleep(min(self.max_backoff, self.backoff * (2**attempt)))
        raise AssertionError("unreachable")

    # -- requests ----------------------------------------------------------------------
    def _body(self, messages: Sequence[Turn], params: GenerationParams, n: int) -> dict:
        check_messages(messages)
        body: dict = {
            "model": self.model,
            "messages": [{"role": t.role, "content": t.content} for t in messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if n > 1:
            body["n"] = n
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def _request(self, messages: Sequence[Turn], params: GenerationParams, n: int) -> Completion:
        reply = self._call(lambda: self.client.chat.completions.create(**self._body(messages, params, n)))
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list):
            raise ModelError(f"{self.spec}: malformed reply from {self.base_url} (no choices); is it an OpenAI-compatible server?")
        texts = [(c.message.content or "").strip() for c in choices][:n]
        usage = getattr(reply, "usage", None)
        return Completion(
            texts,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )

    def complete(self, messages: Sequence[Turn], n: int = 1, params: GenerationParams = GenerationParams()) -> Completion:
        first = self._request(messages, params, n)
        missing = n - len(first.texts)
        if missing <= 0:
            return first
        # servers like Ollama ignore `n`: fill the rest with parallel single requests
        seeds = [None if params.seed is None else params.seed + i + 1 for i in range(missing)]
        with ThreadPoolExecutor(max_workers=min(self.fill_workers, missing)) as pool:
            more = list(pool.map(lambda s: self._request(messages, _with_seed(params, s), 1), seeds))
        return Completion(
            first.texts + [t for c in more for t in c.texts],
            prompt_tokens=first.prompt_tokens + sum(c.prompt_tokens for c in more),
            completion_tokens=first.completion_tokens + sum(c.completion_tokens for c in more),
        )

    def stream(self, messages: Sequence[Turn], params: GenerationParams = GenerationParams()) -> Iterator[str]:
        import openai

        body = self._body(messages, params, 1)
        chunks = self._call(lambda: self.client.chat.completions.create(**body, stream=True))
        try:
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except (openai.OpenAIError, ValueError) as exc:  # a stream cut midway cannot be retried
            raise self._error(exc) from exc

    def label_logprobs(self, messages: Sequence[Turn], labels: list[str]) -> list[float] | None:
        """First-token log-probs of each label from top_logprobs; None if the server has none."""
        import openai

        if self._logprobs_supported is False:
            return None
        body = self._body(messages, GenerationParams(temperature=0.0, top_p=1.0, max_new_tokens=1), 1)
        body.update(logprobs=True, top_logprobs=20)
        try:
            reply = self._call(lambda: self.client.chat.completions.create(**body))
        except ModelError as exc:
            if isinstance(exc.__cause__, openai.BadRequestError | openai.UnprocessableEntityError):
                self._logprobs_supported = False
                return None
            raise
        content = getattr(getattr(reply.choices[0], "logprobs", None), "content", None) if reply.choices else None
        if not content or not content[0].top_logprobs:
            self._logprobs_supported = False
            return None
        self._logprobs_supported = True
        return _label_scores(labels, [(t.token, t.logprob) for t in content[0].top_logprobs])

    def close(self) -> None:
        self.client.close()


def _label_scores(labels: list[str], top: list[tuple[str, float]]) -> list[float] | None:
    """log-sum-exp over top tokens that start each label (case/space-insensitive); -inf if absent."""
    out = []
    for label in labels:
        want = label.strip().lower()
        hits = [lp for tok, lp in top if (t := tok.strip().lower()) and want.startswith(t)]
        out.append(math.log(sum(math.exp(lp) for lp in hits)) if hits else float("-inf"))
    return None if all(v == float("-inf") for v in out) else out


def _with_seed(params: GenerationParams, seed: int | None) -> GenerationParams:
    from dataclasses import replace

    return replace(params, seed=seed)


def _short(text: str) -> str:
    return " ".join(str(text).split())[:200]
