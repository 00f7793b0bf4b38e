"""OpenAI-compatible chat-completions backend: `openai:MODEL` (OpenAI, vLLM, Ollama, llama.cpp ...).

The key and base URL come from explicit arguments, else OPENAI_API_KEY / OPENAI_BASE_URL; the
engine never reads the app's config. Retries are the openai SDK's own (429, 5xx, time-outs; it
honours `Retry-After`), and every failure ends in one line that names the fix.

What differs between servers, learnt once per backend instance and remembered:
  - `n > 1` refused (llama.cpp: "Only one completion choice is allowed") or ignored (Ollama):
    one request per candidate, sent concurrently;
  - `response_format` (JSON schema) refused: the prompt alone, the reply parsed tolerantly;
  - a base URL without `/v1` that 404s: `/v1` is tried once and kept if it answers.
A choice with no text (`content: null`, e.g. a reasoning model that spent its token budget) is a
failed reply with its finish reason, never an empty string.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from engine.concurrency import map_ordered
from engine.errors import ConfigError, ModelError
from engine.types import GenerationParams, Turn

from .base import BaseChatModel, Completion, check_messages

DEFAULT_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 120.0
DEFAULT_TIMEOUT_HINT = "the backend's `timeout` option"
_N_REFUSED = re.compile(r"completion choice|\bn\b|number of (choices|completions)", re.I)
_SCHEMA_REFUSED = re.compile(r"response_format|json_schema|schema|structured|grammar", re.I)


class OpenAIChatModel(BaseChatModel):
    meaningless = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        timeout_hint: str = DEFAULT_TIMEOUT_HINT,
        max_retries: int = 2,
        fill_workers: int = 8,
        structured: bool = True,
        **_ignored,
    ):
        import openai

        self.model = model
        self.spec = f"openai:{model}"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self.base_url == DEFAULT_URL:
            raise ConfigError(f"{self.spec}: no API key; set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)")
        if timeout is not None and not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"{self.spec}: timeout {timeout!r} must be a positive number of seconds; {timeout_hint}")
        self.timeout = float(timeout or DEFAULT_TIMEOUT)
        self.timeout_hint = timeout_hint
        self.max_retries = max_retries
        self.fill_workers = fill_workers
        # learnt from the server, per instance (None: not known yet)
        self._logprobs_supported: bool | None = None
        self._n_supported: bool | None = None
        self._schema_supported: bool | None = None if structured else False
        self._v1_tried = False
        # local servers (vLLM, Ollama) accept any key; the client insists on one
        self._key = key or "not-needed"
        self.client = self._client(self.base_url)

    def _client(self, base_url: str):
        import openai

        return openai.OpenAI(base_url=base_url, api_key=self._key, timeout=self.timeout, max_retries=self.max_retries)

    # -- errors ------------------------------------------------------------------------
    def _error(self, exc: Exception, tries: int) -> ModelError:
        import openai

        err = self._describe(exc, tries)
        # a bad key or an unknown model fails every later call too: callers stop at once
        err.fatal = isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError | openai.NotFoundError)  # type: ignore[attr-defined]
        return err

    def _describe(self, exc: Exception, tries: int) -> ModelError:
        import openai

        url = self.base_url
        times = f"{tries} tries" if tries > 1 else "1 try"
        if isinstance(exc, openai.AuthenticationError):
            return ModelError(f"{self.spec}: the server at {url} rejected the API key (401); set OPENAI_API_KEY to a valid key")
        if isinstance(exc, openai.PermissionDeniedError):
            return ModelError(f"{self.spec}: access denied by {url} (403); check the key's permissions for model {self.model!r}")
        if isinstance(exc, openai.NotFoundError):
            if self._v1_tried:
                return ModelError(
                    f"{self.spec}: unknown model {self.model!r} or wrong base URL (404 at {url} and at {url}/v1); "
                    f"check the name (the server's /models lists them) and the base URL (OPENAI_BASE_URL, usually ending in /v1)"
                )
            return ModelError(f"{self.spec}: unknown model {self.model!r} at {url} (404); check the name (the server's /models lists them)")
        if isinstance(exc, openai.APITimeoutError):
            return ModelError(
                f"{self.spec}: the server at {url} did not answer within {self.timeout:g} s ({times}); "
                f"retry later or raise the timeout ({self.timeout_hint})"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(f"{self.spec}: cannot connect to {url}; is the server running at {url}? (set OPENAI_BASE_URL)")
        if isinstance(exc, openai.RateLimitError):
            return ModelError(f"{self.spec}: rate limited by {url} (429) after {times}; lower --concurrency or retry later")
        if isinstance(exc, openai.APIStatusError):
            return ModelError(f"{self.spec}: server error {exc.status_code} from {url} after {times}: {_short(exc.message)}")
        if isinstance(exc, openai.APIResponseValidationError | ValueError):
            return ModelError(f"{self.spec}: malformed reply from {url} ({_short(str(exc))}); is it an OpenAI-compatible server?")
        return ModelError(f"{self.spec}: request to {url} failed: {_short(str(exc))}")

    # -- sending -----------------------------------------------------------------------
    def _send(self, body: dict, *, retries: bool = True, **extra):
        """One chat-completions request; errors become one-line ModelErrors (the SDK's exception as cause)."""
        import openai

        client = self.client if retries else self.client.with_options(max_retries=0)
        try:
            return client.chat.completions.create(**body, **extra)
        except (openai.OpenAIError, ValueError) as exc:
            if isinstance(exc, openai.NotFoundError) and not self._v1_tried and not self._ends_in_v1():
                return self._retry_with_v1(body, retries, extra)
            raise self._error(exc, self.max_retries + 1 if retries else 1) from exc

    def _ends_in_v1(self) -> bool:
        return urlsplit(self.base_url).path.rstrip("/").endswith("/v1")

    def _retry_with_v1(self, body: dict, retries: bool, extra: dict):
        """A base URL without /v1 that 404s: the request once more with /v1 appended (vLLM, LM Studio, Ollama
        serve there), kept when it answers; if that 404s too, the original URL is restored and named."""
        original, old_client = self.base_url, self.client
        self._v1_tried = True
        self.base_url = original + "/v1"
        self.client = self._client(self.base_url)
        import openai

        try:
            reply = self._send(body, retries=retries, **extra)
        except ModelError as err:
            if not isinstance(err.__cause__, openai.NotFoundError):  # /v1 exists (it answered otherwise): keep it
                old_client.close()
                raise
            self.client.close()
            self.base_url, self.client = original, old_client
            raise self._error(err.__cause__, 1) from err.__cause__
        old_client.close()
        return reply

    def _probe(self, body: dict, refused: Callable[[Exception], bool]):
        """Send a request using a feature the server may not have: None when it is refused.

        Sent without retries, so a refusal answered with a 500 (llama.cpp) is not retried; any
        other transient failure is resent with the SDK's retries.
        """
        try:
            return self._send(body, retries=False)
        except ModelError as err:
            if refused(err.__cause__):
                return None
            if _retryable(err.__cause__):
                return self._send(body)
            raise

    # -- requests ----------------------------------------------------------------------
    def _body(self, messages: Sequence[Turn], params: GenerationParams, n: int, schema: dict | None = None) -> dict:
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
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {**schema, "strict": True}}
        return body

    def _post(self, messages: Sequence[Turn], params: GenerationParams, n: int, schema: dict | None) -> tuple[object, bool]:
        """The raw reply of one request, and whether the schema was sent with it."""
        if schema is not None and self._schema_supported is not False:
            body = self._body(messages, params, n, schema)
            if self._schema_supported:
                return self._send(body), True
            reply = self._probe(body, _refuses(_SCHEMA_REFUSED))
            if reply is not None:
                self._schema_supported = True
                return reply, True
            self._schema_supported = False  # refused: the prompt alone from now on, parsed tolerantly
        return self._send(self._body(messages, params, n)), False

    def _choices(self, reply) -> tuple[list[str], list[str], int, int]:
        """(texts, failures, prompt tokens, completion tokens) of one reply."""
        choices = getattr(reply, "choices", None)
        if not isinstance(choices, list):
            raise ModelError(f"{self.spec}: malformed reply from {self.base_url} (no choices); is it an OpenAI-compatible server?")
        texts, failures = [], []
        for c in choices:
            text = (getattr(c.message, "content", None) or "").strip() if c.message is not None else ""
            if text:
                texts.append(text)
            else:
                failures.append(self._empty_reason(c))
        usage = getattr(reply, "usage", None)
        return texts, failures, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0

    def _empty_reason(self, choice) -> str:
        finish = getattr(choice, "finish_reason", None) or "unknown"
        reasoning = getattr(choice.message, "reasoning_content", None) or getattr(choice.message, "reasoning", None)
        what = "only reasoning, no reply" if reasoning else "no text"
        if finish == "length":
            return f"{what} (finish_reason length: the model spent its max_new_tokens budget); raise --max-new-tokens"
        if finish == "content_filter":
            return f"{what} (finish_reason content_filter: the server filtered the reply); rephrase the prompt"
        return f"{what} (finish_reason {finish})"

    def _singles(self, messages, params: GenerationParams, count: int, first_seed_offset: int, schema):
        """`count` one-choice requests at once (servers without n), other seeds than the first."""
        seeds = [None if params.seed is None else params.seed + first_seed_offset + i for i in range(count)]

        def one(seed):
            reply, _ = self._post(messages, replace(params, seed=seed), 1, schema)
            return self._choices(reply)

        return map_ordered(one, seeds, self.fill_workers, name="openai-fill")

    def _complete(self, messages: Sequence[Turn], n: int, params: GenerationParams, schema: dict | None) -> Completion:
        parts: list[tuple[list[str], list[str], int, int]] = []
        if n > 1 and self._n_supported is False:
            parts = self._singles(messages, params, n, 0, schema)
        else:
            if n > 1 and self._n_supported is None:
                body = self._body(messages, params, n, schema if self._schema_supported else None)
                reply = self._probe(body, _refuses(_N_REFUSED, any_bad_request=True))
                if reply is None:  # refused n > 1 (llama.cpp): one request per candidate from now on
                    self._n_supported = False
                    try:
                        return self._complete(messages, n, params, schema)
                    except ModelError:  # single requests fail too: the 400 was about something else
                        self._n_supported = None
                        raise
            else:
                reply, _ = self._post(messages, params, n, schema)
            first = self._choices(reply)
            parts = [first]
            returned = len(first[0]) + len(first[1])
            if n > 1 and self._n_supported is None:
                self._n_supported = returned >= n  # fewer choices: the server ignores n (Ollama)
            if returned < n:
                parts += self._singles(messages, params, n - returned, returned, schema)
        texts = [t for p in parts for t in p[0]][:n]
        failures = [f for p in parts for f in p[1]]
        if not texts:
            raise ModelError(f"{self.spec}: the server at {self.base_url} answered with {failures[0] if failures else 'no choices'}")
        extra = {"failed": failures} if failures else {}
        return Completion(texts, prompt_tokens=sum(p[2] for p in parts), completion_tokens=sum(p[3] for p in parts), extra=extra)

    def complete(self, messages: Sequence[Turn], n: int = 1, params: GenerationParams = GenerationParams()) -> Completion:
        return self._complete(messages, n, params, None)

    def complete_structured(self, messages: Sequence[Turn], n: int, params: GenerationParams, schema: dict) -> Completion:
        """Like `complete`, asking for JSON that follows `schema` ({"name", "schema"}) where the server can."""
        return self._complete(messages, n, params, schema)

    def stream(self, messages: Sequence[Turn], params: GenerationParams = GenerationParams()) -> Iterator[str]:
        import openai

        chunks = self._send(self._body(messages, params, 1), stream=True)
        try:
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except (openai.OpenAIError, ValueError) as exc:  # a stream cut midway cannot be retried
            raise self._error(exc, 1) from exc

    def label_logprobs(self, messages: Sequence[Turn], labels: list[str]) -> list[float] | None:
        """First-token log-probs of each label from top_logprobs; None if the server has none."""
        import openai

        if self._logprobs_supported is False:
            return None
        body = self._body(messages, GenerationParams(temperature=0.0, top_p=1.0, max_new_tokens=1), 1)
        body.update(logprobs=True, top_logprobs=20)
        try:
            reply = self._send(body)
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


def _retryable(exc: BaseException | None) -> bool:
    import openai

    if isinstance(exc, openai.RateLimitError | openai.APITimeoutError | openai.APIConnectionError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _refuses(pattern: re.Pattern, any_bad_request: bool = False) -> Callable[[Exception], bool]:
    """Whether an error is the server refusing a feature: 400/422 (any, or naming it), or a 500/501 naming it."""

    def check(exc: Exception) -> bool:
        import openai

        if not isinstance(exc, openai.APIStatusError):
            return False
        named = bool(pattern.search(str(exc.message)))
        if exc.status_code in (400, 422):
            return any_bad_request or named
        return exc.status_code in (500, 501) and named

    return check


def _label_scores(labels: list[str], top: list[tuple[str, float]]) -> list[float] | None:
    """log-sum-exp over top tokens that start each label (case/space-insensitive); -inf if absent."""
    out = []
    for label in labels:
        want = label.strip().lower()
        hits = [lp for tok, lp in top if (t := tok.strip().lower()) and want.startswith(t)]
        out.append(math.log(sum(math.exp(lp) for lp in hits)) if hits else float("-inf"))
    return None if all(v == float("-inf") for v in out) else out


def _short(text: str) -> str:
    return " ".join(str(text).split())[:200]
