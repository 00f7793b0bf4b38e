"""Teacher-driven dataset synthesis, the pure part: prompts, tolerant reply parsing, validation.

Stages (the paper's pipeline): 1 passage -> statements, 2 statement -> utterances, 3 relevance
labels, 4 NLI responses written per label and then re-labelled. Calling the teacher, storage,
concurrency and resumption live in the app's synthesis service; this module has no I/O.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any

from engine.prompts import teacher_prompt
from engine.types import NLI_LABELS, Turn

STAGES = ("statements", "queries", "relevance", "nli")
N_QUERIES = 3  # utterances written per statement
N_OTHERS = 5  # utterances of other statements labelled against each statement
EVAL_FRACTION = 0.2

_PRONOUNS = {
    "he", "she", "it", "they", "his", "her", "hers", "its", "their", "theirs", "him", "them",
    "i", "my", "me", "we", "our", "us", "you", "your", "this", "these",
}
_ZH_PRONOUNS = ("他们", "她们", "它们", "他", "她", "它", "我", "你", "其")


class ReplyError(ValueError):
    """A teacher reply that cannot be parsed; the caller records it (status 'unparsed')."""


# -- tolerant JSON -----------------------------------------------------------------------
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The first JSON value in a reply: inside a code fence if any, leading/trailing prose ignored."""
    if not isinstance(text, str) or not text.strip():
        raise ReplyError("empty reply")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        try:  # the whole text: also accepts a bare JSON string, a single object or a list
            return json.loads(cand.strip())
        except json.JSONDecodeError:
            pass
        starts = [i for i, ch in enumerate(cand) if ch in "[{"][:50]
        for i in starts:
            try:
                value, _ = decoder.raw_decode(cand, i)
            except json.JSONDecodeError:
                continue
            return value
    raise ReplyError("no JSON value in the reply")


def _strings(value: Any, keys: tuple[str, ...] = ()) -> list[str]:
    """A list of strings from a list, a single string, or an object holding a list under `keys`."""
    if isinstance(value, dict):
        for k in keys:
            if k in value:
                return _strings(value[k])
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return _strings(lists[0])
        strings = [v for v in value.values() if isinstance(v, str)]
        if strings:
            return strings
        raise ReplyError("a JSON object where a list of strings was expected")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out = []
        for v in value:
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, dict):
                out.extend(_strings(v, keys))
        return out
    raise ReplyError(f"expected a list of strings, got {type(value).__name__}")


def _bullets(text: str) -> list[str]:
    """Fallback for replies written as '- item' or '1. item' lines (the paper's format)."""
    items = []
    for line in text.splitlines():
        m = re.match(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)\s*$", line)
        if m:
            items.append(m.group(1).strip().strip('"'))
    return items


def string_list(reply: str, keys: tuple[str, ...] = ()) -> list[str]:
    try:
        items = _strings(extract_json(reply), keys)
    except ReplyError:
        items = _bullets(reply)
        if not items:
            raise
    return [" ".join(s.split()) for s in items if isinstance(s, str) and s.strip()]


# -- stage 1: statements -----------------------------------------------------------------
def statement_messages(name: str, language: str, passage: str) -> list[Turn]:
    return teacher_prompt("statements", language).messages(name=name, passage=passage)


def statement_problem(text: str, name: str) -> str | None:
    """Why a statement is unusable, or None: it must name the character and not open with a pronoun."""
    if not text:
        return "empty"
    if len(text) > 600:
        return "longer than 600 characters"
    lowered = text.lower()
    first = re.split(r"[\s,.;:'\"]+", lowered.strip(), maxsplit=1)[0]
    if first in _PRONOUNS or any(text.startswith(p) for p in _ZH_PRONOUNS):
        return "starts with a pronoun"
    parts = [p for p in re.split(r"[\s·・.,]+", name.lower()) if len(p) >= 3]
    if name.lower() not in lowered and not any(re.search(rf"\b{re.escape(p)}\b", lowered) for p in parts):
        return f"does not name {name!r}"
    return None


def parse_statements(reply: str, name: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(accepted statements, [(rejected statement, reason)]); raises ReplyError if nothing parses."""
    accepted, rejected = [], []
    for s in string_list(reply, ("statements", "persona_statements")):
        problem = statement_problem(s, name)
        if problem:
            rejected.append((s, problem))
        elif s not in accepted:
            accepted.append(s)
    return accepted, rejected


# -- stage 2: utterances -----------------------------------------------------------------
def query_messages(name: str, language: str, statement: str, n: int = N_QUERIES) -> list[Turn]:
    return teacher_prompt("queries", language).messages(name=name, statement=statement, n=n)


def parse_queries(reply: str, n: int = N_QUERIES) -> list[str]:
    items = [q for q in string_list(reply, ("utterances", "queries")) if len(q) <= 1000]
    if not items:
        raise ReplyError("no utterances in the reply")
    return list(dict.fromkeys(items))[: max(n, 1) * 2]


def split_of(text: str, eval_fraction: float = EVAL_FRACTION) -> str:
    """Deterministic train/eval split by a hash of the utterance (stable across reruns and machines)."""
    h = int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16)
    return "eval" if h / 0xFFFFFFFF < eval_fraction else "train"


# -- stage 3: relevance ------------------------------------------------------------------
def pick_others(key: str, pool: list, k: int = N_OTHERS) -> list:
    """k items of `pool`, chosen deterministically from `key` (the same on every rerun)."""
    rng = random.Random(hashlib.sha1(key.encode("utf-8")).hexdigest())
    return rng.sample(pool, min(k, len(pool)))


def relevance_messages(name: str, language: str, statement: str, utterances: list[str]) -> list[Turn]:
    numbered = "\n".join(f"{i}. {u}" for i, u in enumerate(utterances, 1))
    return teacher_prompt("relevance", language).messages(name=name, statement=statement, utterances=numbered)


def _yes_no(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    word = str(value).strip().strip(".!\"'").lower()
    if word in {"yes", "y", "true", "relevant", "是"}:
        return "yes"
    if word in {"no", "n", "false", "irrelevant", "否"}:
        return "no"
    raise ReplyError(f"label {value!r} is neither yes nor no")


def parse_relevance(reply: str, n: int) -> list[str]:
    """n yes/no labels from {"1": "yes", ...}, ["yes", ...] or [{"id": 1, "label": "yes"}, ...]."""
    value = extract_json(reply)
    labels: dict[int, str] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).strip().isdigit():
                labels[int(k)] = _yes_no(v)
    elif isinstance(value, list):
        for i, v in enumerate(value, 1):
            if isinstance(v, dict):
                idx = next((v[k] for k in ("id", "number", "utterance", "index") if isinstance(v.get(k), int)), i)
                lab = next((v[k] for k in ("label", "relevant", "answer") if k in v), None)
                labels[int(idx)] = _yes_no(lab)
            else:
                labels[i] = _yes_no(v)
    missing = [i for i in range(1, n + 1) if i not in labels]
    if missing:
        raise ReplyError(f"no label for utterance(s) {missing}")
    return [labels[i] for i in range(1, n + 1)]


# -- stage 4: NLI ------------------------------------------------------------------------
def nli_write_messages(name: str, language: str, statement: str, query: str) -> list[Turn]:
    return teacher_prompt("nli_write", language).messages(name=name, statement=statement, query=query)


def parse_nli_responses(reply: str) -> dict[str, str]:
    """{label: response} for the labels the teacher wrote (keys matched loosely: 'Contradiction' ok)."""
    value = extract_json(reply)
    if not isinstance(value, dict):
        raise ReplyError("expected a JSON object with entailed/neutral/contradicted")
    out = {}
    for k, v in value.items():
        label = normalize_nli(str(k))
        if label and isinstance(v, str) and v.strip():
            out[label] = " ".join(v.split())
    if not out:
        raise ReplyError("none of entailed/neutral/contradicted in the reply")
    return out


def nli_label_messages(name: str, language: str, statement: str, query: str, response: str) -> list[Turn]:
    return teacher_prompt("nli_label", language).messages(name=name, statement=statement, query=query, response=response)


_NLI_WORDS = {"entail": "entailed", "neutral": "neutral", "contradict": "contradicted", "蕴含": "entailed", "中立": "neutral", "矛盾": "contradicted", "违背": "contradicted"}


def normalize_nli(text: str) -> str | None:
    """The NLI label a word or short reply names first, or None."""
    lowered = text.lower()
    hits = [(lowered.find(w), lab) for w, lab in _NLI_WORDS.items() if w in lowered]
    return min(hits)[1] if hits else None


def parse_nli_label(reply: str) -> str:
    if not isinstance(reply, str) or not reply.strip():
        raise ReplyError("empty reply")
    text = reply
    try:
        value = extract_json(reply)
        if isinstance(value, dict):
            text = str(value.get("label") or value.get("answer") or next(iter(value.values()), ""))
        elif isinstance(value, str):
            text = value
    except ReplyError:
        pass
    label = normalize_nli(text)
    if label not in NLI_LABELS:
        raise ReplyError(f"reply names none of {', '.join(NLI_LABELS)}")
    return label


# -- structured output ---------------------------------------------------------------------
def _object(properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


_STRINGS = {"type": "array", "items": {"type": "string"}}


def reply_schema(stage: str, n_utterances: int = 0) -> dict:
    """The JSON schema a teacher reply of `stage` must follow, asked as structured output.

    Strict-mode compatible (objects only, every property required, no extra ones); each shape is
    one the tolerant parsers above already read, so a server without structured output (or one
    that ignores it) still works.
    """
    if stage == "statements":
        schema = _object({"statements": _STRINGS})
    elif stage == "queries":
        schema = _object({"utterances": _STRINGS})
    elif stage == "relevance":
        schema = _object({str(i): {"type": "string", "enum": ["yes", "no"]} for i in range(1, n_utterances + 1)})
    elif stage == "nli_write":
        schema = _object({label: {"type": "string"} for label in NLI_LABELS})
    elif stage == "nli_label":
        schema = _object({"label": {"type": "string", "enum": list(NLI_LABELS)}})
    else:
        raise ValueError(f"no reply schema for stage {stage!r}")
    return {"name": f"apc_{stage}", "schema": schema}


def item_key(*parts) -> str:
    """A stable key for one unit of teacher work: ids plus a short hash of the texts they stand for."""
    ids = [str(p) for p in parts if isinstance(p, int)]
    texts = "\x1f".join(str(p) for p in parts if not isinstance(p, int))
    digest = hashlib.sha1(texts.encode("utf-8")).hexdigest()[:10] if texts else ""
    return ":".join(ids + ([digest] if digest else []))
