"""The OpenAI backend against a real local HTTP server: n, streaming, retries, errors, logprobs."""

from __future__ import annotations

import pytest

from engine.backends import load_model
from engine.errors import ModelError
from engine.types import GenerationParams, Turn

MSGS = [Turn("system", "You are Alice."), Turn("user", "Where do you live?")]
P = GenerationParams(seed=5, max_new_tokens=16)


def model(name, **kw):
    kw.setdefault("backoff", 0.01)
    return load_model(f"openai:{name}", **kw)


def test_n_in_one_request_with_usage(fake_openai):
    out = model("echo").complete(MSGS, 3, P)
    assert [t.split(":")[0] for t in out.texts] == ["echo 0 seed=5", "echo 1 seed=5", "echo 2 seed=5"]
    assert len(fake_openai.calls("echo")) == 1 and fake_openai.calls()[0]["n"] == 3
    assert out.prompt_tokens > 0 and out.completion_tokens == 15


def test_fewer_choices_are_filled_with_parallel_requests(fake_openai):
    texts = model("single").generate(MSGS, 3, P)
    assert len(texts) == 3
    assert len(fake_openai.calls("single")) == 3
    assert len(set(texts)) == 3  # the fill requests use other seeds


def test_streaming_sse(fake_openai):
    deltas = list(model("echo").stream(MSGS, P))
    assert len(deltas) > 2 and "".join(deltas) == "echo 0 seed=5: Where do you live?"


def test_429_then_success_is_retried(fake_openai):
    fake_openai.flaky_failures = 2
    sleeps = []
    texts = model("flaky", sleep=sleeps.append, backoff=0.5).generate(MSGS, 1, P)
    assert texts[0].startswith("echo 0")
    assert sleeps == [0.5, 1.0]  # exponential backoff, bounded by max_retries


def test_500_gives_up_after_bounded_retries(fake_openai):
    with pytest.raises(ModelError, match="server error 500") as info:
        model("broken", max_retries=2).generate(MSGS, 1, P)
    assert len(fake_openai.calls("broken")) == 3
    assert "\n" not in str(info.value)


def test_timeout(fake_openai):
    fake_openai.slow_seconds = 1.5
    with pytest.raises(ModelError, match="timed out"):
        model("slow", timeout=0.3, max_retries=1).generate(MSGS, 1, P)


def test_malformed_json(fake_openai):
    with pytest.raises(ModelError, match="malformed"):
        model("malformed").generate(MSGS, 1, P)


def test_bad_key_is_401_with_fix(fake_openai):
    with pytest.raises(ModelError, match="401.*OPENAI_API_KEY"):
        model("echo", api_key="wrong").generate(MSGS, 1, P)


def test_unknown_model_is_404(fake_openai):
    with pytest.raises(ModelError, match="unknown model 'gpt-nope'.*404"):
        model("gpt-nope").generate(MSGS, 1, P)


def test_connection_refused_names_the_url():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ModelError, match=f"is the server running at {url}"):
        model("echo", base_url=url, api_key="k", max_retries=1).generate(MSGS, 1, P)


def test_label_logprobs(fake_openai):
    lp = model("judge").label_logprobs(MSGS, ["no", "yes"])
    assert lp == pytest.approx([-2.4, -0.1])
    assert model("echo").label_logprobs(MSGS, ["no", "yes"]) is None  # server without logprobs


def test_explicit_args_beat_environment(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert model("echo", base_url=fake_openai.url).generate(MSGS, 1, P)[0].startswith("echo")
