"""Discriminator items and the input formats that turn them into model text.

The paper's two templates are a wire format: the published checkpoints were trained on exactly
these bytes (the line of four spaces and the grammar mistakes included). Do not edit them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import ConfigError

PAPER_RELEVANCE_TEMPLATE = (
    "Character: {character}\n"
    "    \n"
    "Persona Statement: {statement}\n"
    "\n"
    "User Utterance: {query}\n"
    "\n"
    'Does this user utterance should be responded by including the information in the given persona statement? Only answer "yes" or "no" without any explanation.'
)

PAPER_NLI_TEMPLATE = (
    "Character: {character}\n"
    "    \n"
    "Persona Statement: {statement}\n"
    "\n"
    "User Utterance: {query}\n"
    "\n"
    "Response: {response}\n"
    "\n"
    'For this response, is the given persona entailed, neutral, or contradict to it in natural language inference? Only answer "entailed", "neutral" or "contradict" without any explanation.'
)


@dataclass(frozen=True)
class RelevanceItem:
    """Should `query` be answered with the information in `statement`?"""

    character: str
    statement: str
    query: str


@dataclass(frozen=True)
class NliItem:
    """Is `statement` entailed by, neutral to or contradicted by `response` to `query`?"""

    character: str
    statement: str
    query: str
    response: str


Item = RelevanceItem | NliItem
Rendered = str | tuple[str, str]  # one text, or a (text, text_pair) for a pair encoder


_FIELD = re.compile(r"\{(character|statement|query|response)\}")


def _fill(template: str, item: Item) -> str:
    # one pass over the template: braces inside a statement or response stay literal
    return _FIELD.sub(lambda m: getattr(item, m.group(1)), template)


class PaperFormat:
    """The paper's templates, one text per item (what the published checkpoints expect)."""

    name = "paper"

    def render(self, item: Item) -> Rendered:
        template = PAPER_NLI_TEMPLATE if isinstance(item, NliItem) else PAPER_RELEVANCE_TEMPLATE
        return _fill(template, item)


class CompactFormat:
    """Our short pair format for small encoders: ("character: statement", "query [SEP] response").

    No instruction text: a fine-tuned cross-encoder learns the task from its head, and the
    shorter input is most of the speed of the embedded profile.
    """

    name = "compact"
    sep = " [SEP] "

    def render(self, item: Item) -> Rendered:
        first = f"{item.character}: {item.statement}"
        if isinstance(item, NliItem):
            return first, f"{item.query}{self.sep}{item.response}"
        return first, item.query


FORMATS = {"paper": PaperFormat(), "compact": CompactFormat()}


def get_format(name: str):
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"input format {name!r} is not known; use one of: {', '.join(FORMATS)}") from None


def render_judge_prompt(item: Item) -> str:
    """What a judge LLM is asked: always the paper's template, whatever the format."""
    return PaperFormat().render(item)  # type: ignore[return-value]
