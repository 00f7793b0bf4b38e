"""The OpenAI backend against a real local HTTP server: n, streaming, retries, errors, logprobs,
and one test per quirk of real OpenAI-compatible servers (see the README's matrix)."""

from __future__ import annotations

import pytest

from engine.backends import load_model
from engine.errors import ModelError
from engine.types import GenerationParams, Turn
from tests.openai_server import KEY

MSGS = [Turn("system", "You are Alice."), Turn("user", "Where do you live?")]
P = GenerationParams(seed=5, max_new_tokens=16)


def model(name, **kw):
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


def test_429_then_success_is_retried_by_the_sdk(fake_openai):
    fake_openai.flaky_failures = 2
    fake_openai.retry_after = "0.05"
    texts = model("flaky").generate(MSGS, 1, P)
    assert texts[0].startswith("echo 0")
    assert len(fake_openai.calls("flaky")) == 3  # two 429s, then the answer


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(fake_openai, status):
    fake_openai.flaky_failures = 1
    fake_openai.flaky_status = status
    fake_openai.retry_after = "1"
    assert model("flaky").generate(MSGS, 1, P)[0].startswith("echo 0")
    (_, first), (_, second) = fake_openai.times
    assert second - first >= 0.95  # the server asked for 1 s (the SDK's own backoff starts at ~0.4 s)


def test_500_gives_up_after_bounded_retries(fake_openai):
    fake_openai.retry_after = "0.01"
    with pytest.raises(ModelError, match="server error 500 .* after 3 tries") as info:
        model("broken", max_retries=2).generate(MSGS, 1, P)
    assert len(fake_openai.calls("broken")) == 3
    assert "\n" not in str(info.value)


def test_timeout_names_the_setting_to_raise(fake_openai):
    fake_openai.slow_seconds = 1.5
    with pytest.raises(ModelError) as info:
        model("slow", timeout=0.3, max_retries=1, timeout_hint="--timeout, APC_TIMEOUT or `timeout` in the config").generate(MSGS, 1, P)
    msg = str(info.value)
    assert "did not answer within 0.3 s (2 tries)" in msg and "raise the timeout (--timeout, APC_TIMEOUT" in msg


def test_bad_timeout_is_refused():
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="timeout -1 must be a positive number"):
        model("echo", base_url="http://127.0.0.1:9/v1", timeout=-1)


@pytest.mark.parametrize("name", ["nrefused", "nrefused400"])
def test_n_refused_falls_back_to_one_request_per_candidate(fake_openai, name):
    m = model(name)
    texts = m.generate(MSGS, 3, P)
    assert len(texts) == 3 and len(set(texts)) == 3  # other seeds per candidate
    calls = fake_openai.calls(name)
    assert [c.get("n", 1) for c in calls] == [3, 1, 1, 1]  # one refused probe, no retries, then singles
    fake_openai.reset()
    assert len(m.generate(MSGS, 2, P)) == 2  # remembered: no second probe
    assert [c.get("n", 1) for c in fake_openai.calls(name)] == [1, 1]


def test_n_ignored_is_filled_and_remembered(fake_openai):
    m = model("single")
    assert len(m.generate(MSGS, 3, P)) == 3
    fake_openai.reset()
    assert len(m.generate(MSGS, 2, P)) == 2
    assert [c.get("n", 1) for c in fake_openai.calls("single")] == [1, 1]


def test_base_url_without_v1_tries_v1(fake_openai):
    root = fake_openai.url.removesuffix("/v1")
    m = model("echo", base_url=root, api_key=KEY)
    assert m.generate(MSGS, 1, P)[0].startswith("echo 0")
    assert m.base_url == fake_openai.url  # kept for the next calls


def test_wrong_base_url_says_to_check_it(fake_openai):
    root = fake_openai.url.removesuffix("/v1") + "/api"
    m = model("echo", base_url=root, api_key=KEY)
    with pytest.raises(ModelError, match=rf"wrong base URL \(404 at {root} and at {root}/v1\).*OPENAI_BASE_URL"):
        m.generate(MSGS, 1, P)
    assert m.base_url == root


def test_null_content_is_a_failed_reply_with_its_reason(fake_openai):
    with pytest.raises(ModelError, match="only reasoning, no reply .finish_reason length.*raise --max-new-tokens"):
        model("null").generate(MSGS, 2, P)


def test_structured_output_asks_for_the_schema(fake_openai):
    from engine.backends import complete

    schema = {"name": "apc_queries", "schema": {"type": "object", "properties": {"utterances": {"type": "array"}}}}
    out = complete(model("echo"), MSGS, 1, P, schema=schema)
    assert out.texts[0].startswith("echo 0")
    sent = fake_openai.calls("echo")[0]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {**schema, "strict": True}}


def test_structured_output_refused_falls_back_and_is_remembered(fake_openai):
    from engine import synthesis as syn
    from engine.backends import complete

    m = model("teacher-noschema")
    msgs = syn.query_messages("Alice", "en", "Alice lives in Paris.")
    for _ in range(2):
        reply = complete(m, msgs, 1, P, schema=syn.reply_schema("queries")).texts[0]
        assert syn.parse_queries(reply) == ["Question 1 about paris?", "Question 2 about paris?", "Question 3 about paris?"]
    assert ["response_format" in c for c in fake_openai.calls("teacher-noschema")] == [True, False, False]


def test_structured_teacher_replies_parse(fake_openai):
    from engine import synthesis as syn
    from engine.backends import complete

    msgs = syn.query_messages("Alice", "en", "Alice lives in Paris.")
    reply = complete(model("teacher"), msgs, 1, P, schema=syn.reply_schema("queries")).texts[0]
    assert reply.startswith('{"utterances": [')
    assert len(syn.parse_queries(reply)) == 3


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
