"""The `tiny` model: a random-weight Llama with a locally trained BPE tokenizer.

It lets every screen and job run end to end offline; its text is meaningless and every output
says so (`meaningless=True`). Built once into the user cache directory, atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .base import ModelSpec

TINY_VERSION = "tiny-llama-v1"  # bump when the recipe below changes: a new directory is built
SEED = 1234
SPECIALS = ["<unk>", "<s>", "<|end|>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_WORDS = (
    "the a an and or but of to in on at with for from by about as is are was were be been being "
    "have has had do does did will would can could should may might must shall I you he she it we "
    "they me him her us them my your his its our their this that these those who what where when why "
    "how which there here not no yes very more most some any all each every other another such only "
    "character persona statement user utterance response relevant irrelevant entailed neutral "
    "contradicted faithful role play story sister brother friend teacher student school castle "
    "shrine forest river mountain city village house room garden library kitchen window door "
    "lives likes loves hates knows remembers believes wants needs says tells asks answers speaks "
    "reads writes walks runs sleeps eats drinks plays sings dances fights travels works studies "
    "happy sad angry quiet loud young old small large strong weak brave shy kind cruel clever wise "
    "red blue green black white golden silver morning evening night day year summer winter spring "
    "Koishi Satori Alice Bob Harry Hermione Beethoven Caesar Socrates Newton Martin Luther King "
    "music piano sword magic dream secret tea cake book letter song name home family mother father"
)
_ZH = "角色 人设 陈述 用户 回答 相关 无关 蕴含 中立 矛盾 姐姐 妹妹 住在 喜欢 朋友 学校 城市 音乐 魔法 梦想"


def _corpus() -> list[str]:
    """A deterministic built-in corpus: every word, and word pairs/triples to give BPE merges."""
    words = _WORDS.split()
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    for step in (3, 7, 11, 13):
        lines.append(" ".join(words[(i * step) % len(words)] for i in range(len(words))))
    lines += [f"{w.capitalize()} {v}s {words[(i * 5) % len(words)]}." for i, (w, v) in enumerate(zip(words, words[40:]))]
    lines.append(_ZH)
    return lines * 3


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|end|>",
        pad_token="<pad>",
        additional_special_tokens=SPECIALS[4:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: Path,
    *,
    seed: int = SEED,
    model_class=None,
    chat_template: str = CHAT_TEMPLATE,
    extra_specials: tuple[str, ...] = (),
    **config,
) -> Path:
    """Write a tiny random causal LM + the tiny tokenizer to `out_dir` (no caching; see `tiny_model_dir`).

    The defaults build the `tiny` Llama. Tests build look-alikes of other families with another
    `model_class` (e.g. GemmaForCausalLM), its `config` keys, template and special tokens."""
    import torch
    from transformers import LlamaForCausalLM

    model_class = model_class or LlamaForCausalLM
    tokenizer = build_tokenizer()
    if extra_specials:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_specials)})
    tokenizer.chat_template = chat_template
    model_config = model_class.config_class(**{
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
        **config,
    })  # fmt: skip
    torch.manual_seed(seed)
    model = model_class(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def cache_root() -> Path:
    """APC_CACHE_DIR, else the platform's user cache directory for the app."""
    import platformdirs

    return Path(os.environ.get("APC_CACHE_DIR") or platformdirs.user_cache_dir("apc-workbench"))


def tiny_model_dir(root: Path | None = None) -> Path:
    """The tiny model's directory, built on first use (temp dir + rename: never half-written)."""
    root = Path(root) if root else cache_root()
    target = root / TINY_VERSION
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{TINY_VERSION}-", dir=root))
    try:
        build_tiny_model(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race: its copy is identical
            if not (target / "config.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tiny(spec: ModelSpec, device: str = "auto", **opts):
    from .hf import HFChatModel

    opts.setdefault("meaningless", True)
    opts.setdefault("suppress_special", True)
    return HFChatModel("tiny", str(tiny_model_dir()), device=device, **opts)
