"""Engine fixtures: tiny DeBERTa-v2, XLM-R and BERT classifiers with a tokenizer trained here.

Random weights, tiny configs, saved once per session as safetensors: the real loading, batching,
scoring and training code runs offline in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CORPUS = [
    "Character: Komeiji Koishi",
    "Persona Statement: Komeiji Koishi lives in Chireiden with her sister Komeiji Satori.",
    "User Utterance: Where do you live, Koishi?",
    "Response: I live in Chireiden with my sister, Satori!",
    "Does this user utterance should be responded by including the information in the given persona statement?",
    'Only answer "yes" or "no" without any explanation.',
    "For this response, is the given persona entailed, neutral, or contradict to it in natural language inference?",
    'Only answer "entailed", "neutral" or "contradict" without any explanation.',
    "Alice Liddell likes tea, rabbits, gardens and long walks. Bob Stone hates the sea and loves mountains.",
    "What do you eat? Who is your friend? Do you like music? I have never seen the ocean. I am a painter.",
]
STYLES = {
    # special tokens, and whether the model takes token_type_ids
    "bert": (("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), True),
    "deberta": (("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), False),
    "xlmr": (("<pad>", "<unk>", "<s>", "</s>", "<mask>"), False),
}
ARCHS = tuple(STYLES)


def build_tokenizer(style: str):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    (pad, unk, cls, sep, mask), type_ids = STYLES[style]
    tok = Tokenizer(models.WordPiece(unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS * 4, trainers.WordPieceTrainer(vocab_size=300, special_tokens=[pad, unk, cls, sep, mask], show_progress=False))
    ids = {t: tok.token_to_id(t) for t in (cls, sep)}
    pair = f"{cls} $A {sep} $B:1 {sep}:1" if style != "xlmr" else f"{cls} $A {sep} {sep} $B {sep}"
    tok.post_processor = processors.TemplateProcessing(single=f"{cls} $A {sep}", pair=pair, special_tokens=list(ids.items()))
    names = ["input_ids", "token_type_ids", "attention_mask"] if type_ids else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=pad, unk_token=unk, cls_token=cls, sep_token=sep, mask_token=mask,
        model_max_length=128, model_input_names=names,
    )  # fmt: skip


def build_model(arch: str, num_labels: int, vocab_size: int, pad_id: int, seed: int = 0):
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=num_labels, pad_token_id=pad_id, initializer_range=0.2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    if arch == "bert":
        return BertForSequenceClassification(BertConfig(max_position_embeddings=128, **common))
    if arch == "deberta":
        config = DebertaV2Config(
            max_position_embeddings=128, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=32,
            max_relative_positions=64, type_vocab_size=0, pooler_hidden_size=32, **common,
        )  # fmt: skip
        return DebertaV2ForSequenceClassification(config)
    if arch == "xlmr":
        config = XLMRobertaConfig(max_position_embeddings=132, type_vocab_size=1, **common)
        return XLMRobertaForSequenceClassification(config)
    raise ValueError(arch)


class TinyModels:
    """Builds and caches tiny discriminator directories: `path(arch, task, **meta)`."""

    def __init__(self, root: Path):
        self.root = root
        self._made: dict[tuple, Path] = {}
        self._tokenizers: dict[str, object] = {}  # one per arch: WordPiece training is not reproducible

    def tokenizer(self, arch: str):
        if arch not in self._tokenizers:
            self._tokenizers[arch] = build_tokenizer(arch)
        return self._tokenizers[arch]

    def path(self, arch: str = "bert", task: str = "relevance", *, num_labels: int | None = None,
             meta: dict | None = None, seed: int = 0) -> Path:  # fmt: skip
        labels = 2 if task == "relevance" else 3
        key = (arch, task, num_labels, json.dumps(meta, sort_keys=True), seed)
        if key in self._made:
            return self._made[key]
        out = self.root / f"{arch}-{task}-{len(self._made)}"
        tok = self.tokenizer(arch)
        model = build_model(arch, num_labels or labels, len(tok), tok.pad_token_id, seed=seed)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        if meta is not None:
            from engine.discriminators import META_FILE

            (out / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        self._made[key] = out
        return out


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-discriminators"))


@pytest.fixture(scope="session")
def tiny_pair_paths(tiny_models) -> tuple[Path, Path]:
    """A tiny BERT relevance + NLI pair with no meta file (so: paper format, like hub checkpoints)."""
    return tiny_models.path("bert", "relevance"), tiny_models.path("bert", "nli")


@pytest.fixture(scope="session")
def tiny_profile(tiny_pair_paths) -> str:
    rel, nli = tiny_pair_paths
    return f"rel={rel},nli={nli}"


@pytest.fixture(scope="session")
def tiny_pair(tiny_profile):
    from engine.discriminators import load_profile

    return load_profile(tiny_profile, device="cpu")


class FakeChatModel:
    """A ChatModel double for judges: label log-probs from a lookup, or text answers only."""

    spec = "fake:judge"
    meaningless = False

    def __init__(self, logprobs: dict[str, float] | None = None, answer: str = "yes"):
        self.logprobs = logprobs
        self.answer = answer
        self.calls: list = []

    def label_logprobs(self, messages, labels):
        self.calls.append(("label_logprobs", messages, tuple(labels)))
        if self.logprobs is None:
            return None
        return [self.logprobs.get(label, -20.0) for label in labels]

    def generate(self, messages, n=1, params=None):
        self.calls.append(("generate", messages, n))
        return [self.answer] * n


@pytest.fixture
def fake_chat_model():
    return FakeChatModel
