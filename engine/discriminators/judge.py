"""LLM-judge discriminators: a chat model asked with the paper's templates.

Probabilities come from the label log-probs the backend reports (next-token logits for HF,
logprobs for OpenAI-compatible servers). When a backend cannot report them, the text answer is
parsed instead and every such row is flagged on the result and counted on the judge.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from engine.types import GenerationParams, Turn

from .base import BatchedDiscriminator, softmax, task_labels
from engine.concurrency import map_ordered

from .formats import Item, render_judge_prompt

# the words each template asks the judge to answer with, in the task's label order
ANSWER_WORDS = {"relevance": ("no", "yes"), "nli": ("contradict", "neutral", "entailed")}
_ANSWER_RE = {
    "relevance": re.compile(r"\b(yes|no)\b"),
    "nli": re.compile(r"\b(entail\w*|neutral\w*|contradict\w*)\b"),
}
SYSTEM_PROMPTS = {
    "relevance": "You help build role-playing AI characters. Decide whether the user's utterance should be "
    "answered with the information in the given persona statement.",
    "nli": "You help build role-playing AI characters. Decide whether the given persona statement is entailed, "
    "neutral or contradicted by the response, in the sense of natural language inference.",
}
ANSWER_PARAMS = GenerationParams(temperature=0.0, top_p=1.0, max_new_tokens=8, seed=0)


class JudgedProbs(np.ndarray):
    """Probabilities with `how`: per row 'logprobs', 'text' (parsed answer) or 'unparsed' (uniform)."""

    how = None

    @property
    def used_fallback(self) -> bool:
        return self.how is not None and any(h != "logprobs" for h in self.how)


class JudgeDiscriminator(BatchedDiscriminator):
    """A chat model as a discriminator; `model` is any engine.backends ChatModel."""

    format = "paper"
    progress_text = "judge"

    def __init__(self, model, task: str, *, concurrency: int = 4, examples: Sequence[tuple[Item, int]] = ()):
        """`examples`: (item, label index) pairs shown before each question as solved cases, in order
        (a character's human labels: "teach the scorer" for judges)."""
        self.model = model
        self.task = task
        self.labels = task_labels(task)
        self.words = ANSWER_WORDS[task]
        self.concurrency = max(1, concurrency)
        self.examples = tuple(examples)
        for item, label in self.examples:
            if not 0 <= label < len(self.labels):
                raise ValueError(f"few-shot label index {label} is out of range for {task}")
        shots = f"|shots:{examples_digest(self.examples)}" if self.examples else ""
        self.identity = f"judge:{getattr(model, 'spec', type(model).__name__)}{shots}"
        self.logprob_calls = 0
        self.fallback_calls = 0  # answers read from text because the backend gave no log-probs
        self.unparsed = 0  # text answers naming no label: scored uniform, counted here
        self._count_lock = threading.Lock()

    def messages(self, item: Item) -> list[Turn]:
        turns = [Turn("system", SYSTEM_PROMPTS[self.task])]
        for example, label in self.examples:  # solved cases first, as earlier turns of the dialogue
            turns += [Turn("user", render_judge_prompt(example)), Turn("assistant", self.words[label])]
        return [*turns, Turn("user", render_judge_prompt(item))]

    def _judge_one(self, item: Item):
        messages = self.messages(item)
        logprobs = self.model.label_logprobs(messages, list(self.words))
        if logprobs is not None:
            with self._count_lock:
                self.logprob_calls += 1
            return softmax(logprobs), "logprobs"
        answer = self.model.generate(messages, 1, ANSWER_PARAMS)[0]
        index = parse_answer(self.task, answer)
        with self._count_lock:
            self.fallback_calls += 1
            self.unparsed += index is None
        if index is None:
            return [1.0 / len(self.labels)] * len(self.labels), "unparsed"
        return [float(i == index) for i in range(len(self.labels))], "text"

    def _predict(self, items: list[Item], batches: Iterator[tuple[int, int]]):
        rows: list = [None] * len(items)
        how: list[str] = [""] * len(items)
        for start, end in batches:  # daemon workers: Ctrl-C is not held up by calls in flight
            for j, (probs, kind) in enumerate(map_ordered(self._judge_one, items[start:end], self.concurrency, name="judge")):
                rows[start + j], how[start + j] = probs, kind
        out = np.array(rows, dtype=np.float64).reshape(len(items), len(self.labels)).view(JudgedProbs)
        out.how = np.array(how, dtype=object)
        return out

    def describe(self) -> dict:
        return {
            "task": self.task,
            "source": self.identity,
            "format": self.format,
            "labels": list(self.labels),
            "logprob_calls": self.logprob_calls,
            "fallback_calls": self.fallback_calls,
            "unparsed": self.unparsed,
            "examples": len(self.examples),
        }


def examples_digest(examples: Sequence[tuple[Item, int]]) -> str:
    """A short stable digest of few-shot examples (part of the judge's identity: the relevance cache key)."""
    import hashlib
    from dataclasses import astuple

    text = "\n".join("\t".join((*astuple(item), str(label))) for item, label in examples)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def parse_answer(task: str, text: str) -> int | None:
    """Label index named first in a free-text answer, or None."""
    match = _ANSWER_RE[task].search(text.lower())
    if not match:
        return None
    word = match.group(1)
    if task == "relevance":
        return ("no", "yes").index(word)
    return 0 if word.startswith("contradict") else 1 if word.startswith("neutral") else 2
