"""Relevance and NLI discriminators: items, input formats, cross-encoders, LLM judges, profiles.

Heavy libraries (torch, transformers, peft) load inside the functions that need them.
"""

from .base import TASK_LABELS, Discriminator, task_labels
from .cross_encoder import CrossEncoderDiscriminator
from .formats import (
    FORMATS,
    PAPER_NLI_TEMPLATE,
    PAPER_RELEVANCE_TEMPLATE,
    CompactFormat,
    NliItem,
    PaperFormat,
    RelevanceItem,
    get_format,
)
from .judge import JudgeDiscriminator, JudgedProbs
from .meta import GT_MINILM, META_FILE, DiscriminatorMeta, read_meta, write_meta
from .profiles import PROFILE_HELP, DiscriminatorPair, load_profile, with_judge_model

__all__ = [
    "FORMATS",
    "GT_MINILM",
    "META_FILE",
    "PAPER_NLI_TEMPLATE",
    "PAPER_RELEVANCE_TEMPLATE",
    "PROFILE_HELP",
    "TASK_LABELS",
    "CompactFormat",
    "CrossEncoderDiscriminator",
    "Discriminator",
    "DiscriminatorMeta",
    "DiscriminatorPair",
    "JudgeDiscriminator",
    "JudgedProbs",
    "NliItem",
    "PaperFormat",
    "RelevanceItem",
    "get_format",
    "load_profile",
    "read_meta",
    "task_labels",
    "with_judge_model",
    "write_meta",
]

