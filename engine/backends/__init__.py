"""Chat model backends, chosen by a spec string (one registry, one parse function).

    tiny                         a random tiny Llama built locally; its text is meaningless
    hf:ID_OR_PATH                a transformers causal LM (hub id or local directory)
    hf:ID_OR_PATH+lora:PATH      the same with a peft LoRA adapter on top
    openai:MODEL                 an OpenAI-compatible chat-completions server
"""

from __future__ import annotations

from collections.abc import Callable

from engine.errors import ConfigError

from .base import BaseChatModel, ChatModel, Completion, ModelSpec, complete

__all__ = ["BaseChatModel", "ChatModel", "Completion", "ModelSpec", "complete", "is_meaningless", "load_model", "parse_spec", "BACKENDS"]


def _load_tiny(spec: ModelSpec, device: str, **opts) -> ChatModel:
    from .tiny import load_tiny

    return load_tiny(spec, device=device, **opts)


def _load_hf(spec: ModelSpec, device: str, **opts) -> ChatModel:
    from .hf import HFChatModel

    return HFChatModel(spec.raw, spec.name, adapter=spec.adapter, device=device, **opts)


def _load_openai(spec: ModelSpec, device: str, **opts) -> ChatModel:
    from .openai_backend import OpenAIChatModel

    return OpenAIChatModel(spec.name, **opts)


# scheme -> loader(spec, device, **opts); backends import their heavy libraries lazily.
BACKENDS: dict[str, Callable[..., ChatModel]] = {
    "tiny": _load_tiny,
    "hf": _load_hf,
    "openai": _load_openai,
}

_USAGE = "use tiny, hf:ID_OR_PATH[+lora:ADAPTER_PATH] or openai:MODEL"


def parse_spec(spec: str) -> ModelSpec:
    raw = (spec or "").strip()
    if not raw:
        raise ConfigError(f"empty model spec; {_USAGE}")
    if raw == "tiny":
        return ModelSpec("tiny", "tiny", raw=raw)
    scheme, sep, rest = raw.partition(":")
    if not sep or scheme not in BACKENDS or scheme == "tiny":
        raise ConfigError(f"model spec {raw!r}: unknown scheme {scheme!r}; {_USAGE}")
    rest = rest.strip()
    adapter = None
    if scheme == "hf" and "+lora:" in rest:
        rest, _, adapter = rest.partition("+lora:")
        rest, adapter = rest.strip(), adapter.strip()
        if not adapter:
            raise ConfigError(f"model spec {raw!r}: empty adapter path after +lora:; {_USAGE}")
    if not rest:
        raise ConfigError(f"model spec {raw!r}: nothing after {scheme}:; {_USAGE}")
    return ModelSpec(scheme, rest, adapter, raw)


def is_meaningless(spec: str | None) -> bool:
    """Whether a stored model spec names the tiny smoke model (random weights: text means nothing)."""
    return (spec or "").strip() == "tiny"


def load_model(spec: str, device: str = "auto", **opts) -> ChatModel:
    """Build the backend for `spec`. Options are backend-specific (see each backend's __init__)."""
    parsed = parse_spec(spec)
    return BACKENDS[parsed.scheme](parsed, device, **opts)
