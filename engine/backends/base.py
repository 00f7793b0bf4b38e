"""The ChatModel protocol every generation backend implements, and the parsed model spec."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from engine.types import GenerationParams, Turn


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec string: `tiny`, `hf:ID_OR_PATH[+lora:PATH]`, `openai:MODEL`."""

    scheme: str
    name: str = ""
    adapter: str | None = None
    raw: str = ""


@dataclass(frozen=True)
class Completion:
    """The texts of one generation call plus the token usage it cost (0 when unknown)."""

    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict = field(default_factory=dict)


@runtime_checkable
class ChatModel(Protocol):
    spec: str
    meaningless: bool  # True for models whose text means nothing (the tiny smoke model)

    def generate(self, messages: Sequence[Turn], n: int = 1, params: GenerationParams = GenerationParams()) -> list[str]:
        """n sampled replies to `messages`, in one call where the backend allows it."""
        ...

    def stream(self, messages: Sequence[Turn], params: GenerationParams = GenerationParams()) -> Iterator[str]:
        """One reply, yielded as text deltas."""
        ...


class BaseChatModel:
    """Shared plumbing: `generate` is `complete(...).texts`; no label log-probs unless overridden."""

    spec: str = ""
    meaningless: bool = False

    def complete(self, messages: Sequence[Turn], n: int = 1, params: GenerationParams = GenerationParams()) -> Completion:
        raise NotImplementedError

    def generate(self, messages: Sequence[Turn], n: int = 1, params: GenerationParams = GenerationParams()) -> list[str]:
        return self.complete(messages, n, params).texts

    def stream(self, messages: Sequence[Turn], params: GenerationParams = GenerationParams()) -> Iterator[str]:
        yield from self.generate(messages, 1, params)

    def label_logprobs(self, messages: Sequence[Turn], labels: list[str]) -> list[float] | None:
        """log P(label | messages) for each label as the reply's first token(s); None if unsupported."""
        return None

    def close(self) -> None:
        """Release what the backend holds (HTTP clients, GPU memory)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def complete(
    model: ChatModel, messages: Sequence[Turn], n: int = 1, params: GenerationParams = GenerationParams(), *, schema: dict | None = None
) -> Completion:
    """`model.complete` when the backend reports usage, else `generate` with usage unknown.

    `schema` (a JSON schema of the reply) is asked as structured output from backends that offer
    it (`complete_structured`); others get the prompt alone and their reply is parsed tolerantly.
    """
    if schema is not None and hasattr(model, "complete_structured"):
        return model.complete_structured(messages, n, params, schema)
    fn = getattr(model, "complete", None)
    if fn is not None:
        return fn(messages, n, params)
    return Completion(list(model.generate(messages, n, params)))


def check_messages(messages: Sequence[Turn]) -> None:
    """Refuse an empty conversation early with a clear message (backends would fail obscurely)."""
    from engine.errors import InputError

    if not messages:
        raise InputError("no messages to send to the model; give at least one user turn")
    for t in messages:
        if t.role not in ("system", "user", "assistant"):
            raise InputError(f"message role {t.role!r} is not one of system, user, assistant")
