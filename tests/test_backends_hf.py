"""HF backend on tiny local models: one generate call for n, seeds, templates, errors."""

from __future__ import annotations

import pytest

from engine.backends import load_model, parse_spec
from engine.errors import ConfigError, ModelError
from engine.types import GenerationParams, Turn

MSGS = [Turn("system", "You are Komeiji Koishi."), Turn("user", "Where do you live?")]
FAST = GenerationParams(max_new_tokens=8, seed=11)


def test_parse_spec_forms():
    assert parse_spec("tiny").scheme == "tiny"
    s = parse_spec("hf:/models/base+lora:/adapters/a1")
    assert (s.scheme, s.name, s.adapter) == ("hf", "/models/base", "/adapters/a1")
    assert parse_spec("openai:gpt-4o").name == "gpt-4o"
    with pytest.raises(ConfigError, match="unknown scheme"):
        parse_spec("vllm:foo")
    with pytest.raises(ConfigError, match="empty"):
        parse_spec("")
    with pytest.raises(ConfigError, match="nothing after"):
        parse_spec("hf:")


def test_tiny_is_meaningless_and_samples_n_in_one_call(tiny_model, monkeypatch):
    assert tiny_model.meaningless and tiny_model.spec == "tiny"
    calls = []
    real = tiny_model.model.generate

    def counting(*a, **kw):
        calls.append(kw.get("num_return_sequences"))
        return real(*a, **kw)

    monkeypatch.setattr(tiny_model.model, "generate", counting)
    texts = tiny_model.generate(MSGS, n=3, params=FAST)
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)
    assert calls == [3]


def test_seed_determinism(tiny_model):
    a = tiny_model.generate(MSGS, n=2, params=FAST)
    b = tiny_model.generate(MSGS, n=2, params=FAST)
    c = tiny_model.generate(MSGS, n=2, params=GenerationParams(max_new_tokens=8, seed=12))
    assert a == b and a != c


def test_stream_matches_generate(tiny_model):
    streamed = "".join(tiny_model.stream(MSGS, FAST)).strip()
    assert streamed == tiny_model.generate(MSGS, n=1, params=FAST)[0]


def test_label_logprobs(tiny_model):
    lp = tiny_model.label_logprobs(MSGS, ["yes", "no", "neutral"])
    assert len(lp) == 3 and all(v < 0 for v in lp)


def test_tiny_dir_is_a_normal_hf_directory(tiny_dir):
    from transformers import AutoTokenizer

    assert (tiny_dir / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    text = tok.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], tokenize=False)
    assert "<|system|>S" in text and tok.eos_token and tok.pad_token


def test_gemma_template_merges_system_into_first_user_turn(tiny_gemma_dir):
    model = load_model(f"hf:{tiny_gemma_dir}", device="cpu")
    assert model.supports_system is False
    prompt = model.render(MSGS)
    assert "<start_of_turn>user\nYou are Komeiji Koishi.\n\nWhere do you live?" in prompt
    assert len(model.generate(MSGS, n=2, params=FAST)) == 2


def test_missing_template_is_a_clear_error(no_template_dir):
    with pytest.raises(ModelError, match="no chat template.*--template"):
        load_model(f"hf:{no_template_dir}", device="cpu")


def test_explicit_template_option(no_template_dir):
    model = load_model(f"hf:{no_template_dir}", device="cpu", template="{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    assert model.supports_system and "[system] You are" in model.render(MSGS)


def test_4bit_on_cpu_is_a_config_error(tiny_dir):
    with pytest.raises(ConfigError, match="4-bit.*CUDA"):
        load_model(f"hf:{tiny_dir}", device="cpu", load_in_4bit=True)


def test_cuda_without_cuda_is_a_config_error(tiny_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="(?i)cuda"):
        load_model(f"hf:{tiny_dir}", device="cuda")


def test_hub_id_offline_is_one_line_model_error():
    with pytest.raises(ModelError, match="needs a download") as info:
        load_model("hf:nobody-here/not-a-model-xyz", device="cpu")
    assert "\n" not in str(info.value)


def test_missing_adapter_path(tiny_dir, tmp_path):
    from engine.errors import InputError

    with pytest.raises(InputError, match="no LoRA adapter"):
        load_model(f"hf:{tiny_dir}+lora:{tmp_path / 'nope'}", device="cpu")


def test_lora_adapter_loads(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "adapter")
    model = load_model(f"hf:{tiny_dir}+lora:{tmp_path / 'adapter'}", device="cpu")
    assert len(model.generate(MSGS, n=2, params=FAST)) == 2


def test_abandoned_stream_stops_generating_and_frees_the_model(tiny_model):
    gen = tiny_model.stream(MSGS, GenerationParams(max_new_tokens=2000, seed=1))
    assert next(gen)
    gen.close()  # the TUI cancelled: generation must stop, not run 2000 tokens holding the lock
    assert tiny_model._lock.acquire(timeout=5)
    tiny_model._lock.release()
