"""The numpy BERT runtime of the embedded discriminators computes what transformers + peft compute."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine.discriminators.cross_encoder import CrossEncoderDiscriminator, _load_adapter_model, _load_tokenizer
from engine.discriminators.formats import NliItem
from engine.discriminators.meta import DiscriminatorMeta, read_meta, write_meta
from engine.discriminators.numpy_bert import NumpyBertClassifier, gelu


def test_gelu_is_the_erf_gelu():
    x = np.linspace(-9, 9, 2001, dtype=np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    assert gelu(x).dtype == np.float32
    assert np.abs(gelu(x) - exact).max() < 2e-6


@pytest.fixture(scope="module")
def tiny_lora_nli(tiny_models, tmp_path_factory):
    """A tiny BERT base (saved as a bare BertModel, like the MiniLM package) and a peft LoRA adapter over it
    with non-zero B matrices and trained-looking heads: the shape of the shipped embedded discriminators."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    root = tmp_path_factory.mktemp("tiny-lora")
    tok = tiny_models.tokenizer("bert")
    seq = BertForSequenceClassification.from_pretrained(tiny_models.path("bert", "nli"))
    seq.bert.save_pretrained(root / "base")  # keys without the "bert." prefix
    tok.save_pretrained(root / "base")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier", "pooler"],
                        task_type="SEQ_CLS", init_lora_weights=False)  # fmt: skip
    torch.manual_seed(3)
    model = get_peft_model(BertForSequenceClassification.from_pretrained(root / "base", num_labels=3), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(root / "adapter")
    tok.save_pretrained(root / "adapter")
    labels = ("contradicted", "neutral", "entailed")
    write_meta(root / "adapter", DiscriminatorMeta(task="nli", labels=labels, format="compact", base_model=str(root / "base"), adapter=True))
    return root / "adapter"


ITEMS = [
    NliItem("Ada", "Ada lives in a lighthouse.", "Where do you live?", "In the lighthouse, of course."),
    NliItem("Ada", "Ada has two brothers.", "Any family?", "No, I am an only child and I like it."),
    NliItem("Ada", "Ada was born in 1901.", "How old are you?", "Old enough " * 40),  # long: truncated, padded rows beside it
    NliItem("阿达", "阿达住在灯塔里。", "你住哪儿？", "灯塔。"),
]


def test_numpy_runtime_matches_transformers_and_peft(tiny_lora_nli):
    ours = CrossEncoderDiscriminator.load(str(tiny_lora_nli), "nli", device="cpu")
    assert isinstance(ours.model, NumpyBertClassifier)
    meta = read_meta(tiny_lora_nli)
    reference = CrossEncoderDiscriminator(
        _load_adapter_model(str(tiny_lora_nli), "nli", meta, False, use_peft=True).eval(),
        _load_tokenizer(str(tiny_lora_nli), "tiny", meta), task="nli", format="compact", labels=meta.labels, meta=meta,
    )  # fmt: skip
    assert ours.encode(ITEMS) == reference.encode(ITEMS)  # same ids, type ids and truncation
    got, want = ours.predict(ITEMS, batch_size=3), reference.predict(ITEMS, batch_size=3)
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(want - 1 / 3).max() > 0.05  # the adapter does something: the test could fail


def test_non_plain_lora_falls_back_to_transformers(tiny_lora_nli, tmp_path):
    import shutil

    shutil.copytree(tiny_lora_nli, tmp_path / "dora")
    cfg = json.loads((tmp_path / "dora" / "adapter_config.json").read_text())
    (tmp_path / "dora" / "adapter_config.json").write_text(json.dumps({**cfg, "use_rslora": True}))
    disc = CrossEncoderDiscriminator.load(str(tmp_path / "dora"), "nli", device="cpu")
    assert not isinstance(disc.model, NumpyBertClassifier)
    assert disc.predict(ITEMS).shape == (len(ITEMS), 3)


def test_pair_tokenizer_is_safe_to_share_between_threads(tiny_lora_nli):
    """The TUI scores and retrieves at once with one discriminator: concurrent encodes must not collide."""
    from concurrent.futures import ThreadPoolExecutor

    disc = CrossEncoderDiscriminator.load(str(tiny_lora_nli), "nli", device="cpu")
    want = disc.encode(ITEMS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: disc.encode(ITEMS * 50), range(16)))
    assert all(r["input_ids"][: len(ITEMS)] == want["input_ids"] for r in results)


def test_runtime_choice(tiny_lora_nli):
    from engine.errors import ConfigError

    forced = CrossEncoderDiscriminator.load(str(tiny_lora_nli), "nli", device="cpu", runtime="torch")
    assert not isinstance(forced.model, NumpyBertClassifier) and forced.describe()["runtime"] == "torch"
    assert CrossEncoderDiscriminator.load(str(tiny_lora_nli), "nli", device="cpu").describe()["runtime"] == "numpy"
    assert forced.identity == CrossEncoderDiscriminator.load(str(tiny_lora_nli), "nli", device="cpu").identity  # same numbers
    with pytest.raises(ConfigError, match="runtime 'onnx' is not known"):
        CrossEncoderDiscriminator.load(str(tiny_lora_nli), "nli", device="cpu", runtime="onnx")
