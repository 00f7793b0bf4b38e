"""Model fixtures: the tiny Llama (`tiny` spec), a tiny Gemma-style model (no system role in its
chat template), a model without a chat template, and a real local OpenAI-compatible server."""

from __future__ import annotations

import os
from pathlib import Path

# huggingface_hub reads this once at import: set it before any test imports transformers
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """The directory of the `tiny` model (built once into the user cache, reused across runs)."""
    from engine.backends.tiny import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    """The `tiny` ChatModel on CPU, loaded once per session."""
    from engine.backends import load_model

    return load_model("tiny", device="cpu")


def _save_with_template(tokenizer, model, out: Path, template: str | None) -> Path:
    tokenizer.chat_template = template
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if template is None:  # make sure no template file survives from the tokenizer's defaults
        for name in ("chat_template.jinja", "chat_template.json"):
            (out / name).unlink(missing_ok=True)
    return out


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> Path:
    """A tiny random GemmaForCausalLM whose chat template rejects the system role (like Gemma's)."""
    from transformers import GemmaForCausalLM

    from engine.backends.tiny import build_tiny_model

    return build_tiny_model(
        tmp_path_factory.mktemp("tiny-gemma"), seed=7, model_class=GemmaForCausalLM, chat_template=GEMMA_TEMPLATE,
        extra_specials=("<start_of_turn>", "<end_of_turn>"), num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
    )  # fmt: skip


@pytest.fixture(scope="session")
def no_template_dir(tmp_path_factory, tiny_dir) -> Path:
    """The tiny Llama saved without any chat template (a base model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    return _save_with_template(tok, model, tmp_path_factory.mktemp("no-template"), None)


@pytest.fixture(scope="session")
def openai_server():
    """A real local OpenAI-compatible server (see tests/openai_server.py), shared per session."""
    from tests.openai_server import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(openai_server, monkeypatch):
    """The shared server, reset, with OPENAI_BASE_URL / OPENAI_API_KEY pointing at it."""
    from tests.openai_server import KEY

    openai_server.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return openai_server
