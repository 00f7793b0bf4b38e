"""Teach the scorer: human discriminator labels, per-character discriminator versions, and
switching between them. Training (`disc_teach` job) lives in `services/teach_train.py`.

A label is one human verdict on one (statement, query[, response]): relevance yes/no, or NLI
entailed/neutral/contradicted. A version is a character's own relevance + NLI discriminators
(LoRA fine-tuned copies, or few-shot examples for a judge), registered with its lineage; the
active version scores that character everywhere (see ScoringService.active).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.discriminators.data import normalise_label, read_jsonl_text
from engine.discriminators.profiles import DEFAULT_VERSION, valid_version_name
from engine.errors import InputError

from ..storage.characters import CharacterRepo
from ..storage.teach import DiscVersionRepo, LabelRepo, version_to_dict

TASKS = ("relevance", "nli")
LABELS_HELP = {"relevance": "yes | no", "nli": "entailed | neutral | contradicted"}
MAX_IMPORT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class LabelInput:
    """One human label as given (CLI, import row or why panel), before it is checked."""

    task: str
    statement: str  # the text, or a statement id of this character (digits)
    query: str
    label: str
    response: str = ""
    message_id: int | None = None


class TeachService:
    def __init__(self, services):
        self.services = services
        self.store = services.store
        self.characters = CharacterRepo(self.store)
        self.labels = LabelRepo(self.store)
        self.versions = DiscVersionRepo(self.store)

    # -- labels ---------------------------------------------------------------------------------
    def add_label(self, character: str, label: LabelInput, *, source: str = "cli", annotator: str | None = None) -> dict:
        row = self.characters.row(character)
        checked = self._check(row["id"], label, "")
        self.labels.add_many(row["id"], [checked], annotator=annotator or self.services.settings.annotator, source=source)
        return {"character": row["name"], **{k: checked[k] for k in ("task", "statement_id", "statement", "query", "response", "label")}}

    def import_labels(self, character: str, path: Path, *, annotator: str | None = None) -> dict:
        """Rows in the `apc disc eval` format (statement, query, [response], label; task from the
        row's "task" or from the presence of "response"); every bad row is reported by line before
        anything is written."""
        row = self.characters.row(character)
        text = read_jsonl_text(Path(path), MAX_IMPORT_BYTES)
        rows, errors = [], []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}: "
            try:
                rows.append(self._check(row["id"], _row_input(line, row["name"]), where))
            except InputError as exc:
                errors.append(str(exc) if str(exc).startswith(where) else where + str(exc))
        if errors:
            more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            raise InputError(f"{len(errors)} bad row(s), nothing imported: " + " | ".join(errors[:5]) + more)
        if not rows:
            raise InputError(f"{path}: no rows; give one JSON object per line with statement, query, [response,] label")
        n = self.labels.add_many(row["id"], rows, annotator=annotator or self.services.settings.annotator, source="import")
        return {"character": row["name"], "imported": n, "relevance": sum(r["task"] == "relevance" for r in rows),
                "nli": sum(r["task"] == "nli" for r in rows)}  # fmt: skip

    def list_labels(self, character: str, task: str | None = None) -> list[dict]:
        row = self.characters.row(character)
        if task is not None and task not in TASKS:
            raise InputError(f"--task {task!r} is not known; use relevance or nli")
        keys = ("id", "task", "statement_id", "statement", "query", "response", "label", "annotator", "message_id", "source", "created_at")
        return [{"character": row["name"], **{k: r[k] for k in keys}} for r in self.labels.list(row["id"], task)]

    def export_rows(self, character: str) -> list[dict]:
        """Labels as `apc disc eval` rows (re-importable, usable with `apc disc eval --data`)."""
        out = []
        for r in self.list_labels(character):
            row = {"task": r["task"], "character": r["character"], "statement": r["statement"], "query": r["query"]}
            if r["task"] == "nli":
                row["response"] = r["response"]
            out.append({**row, "label": r["label"]})
        return out

    def _check(self, character_id: int, label: LabelInput, where: str) -> dict:
        if label.task not in TASKS:
            raise InputError(f"{where}task {label.task!r} is not known; use relevance or nli")
        value = normalise_label(label.task, label.label)
        if value is None:
            raise InputError(f"{where}label {label.label!r} is not a {label.task} label; use {LABELS_HELP[label.task]}")
        query = (label.query or "").strip()
        if not query:
            raise InputError(f"{where}the query is empty; give the user's utterance the verdict is about")
        response = (label.response or "").strip()
        if label.task == "nli" and not response:
            raise InputError(f"{where}an nli label needs the response it judges; pass --response TEXT")
        statement_id, statement = self._statement(character_id, label.statement, where)
        return {"task": label.task, "statement_id": statement_id, "statement": statement, "query": query,
                "response": response if label.task == "nli" else "", "label": value, "message_id": label.message_id}  # fmt: skip

    def _statement(self, character_id: int, given: str, where: str) -> tuple[int | None, str]:
        text = (given or "").strip()
        if not text:
            raise InputError(f"{where}the statement is empty; give its text or its id (see `apc characters show NAME`)")
        db = self.store.db
        if text.isdigit():
            rows = list(db.query("SELECT id, text FROM statements WHERE id = ? AND character_id = ?", [int(text), character_id]))
            if not rows:
                raise InputError(f"{where}statement id {text} is not one of this character's; see `apc characters show NAME`")
            return rows[0]["id"], rows[0]["text"]
        rows = list(db.query("SELECT id FROM statements WHERE text = ? AND character_id = ?", [text, character_id]))
        return (rows[0]["id"] if rows else None), text  # a statement as shown may have been edited since

    # -- versions --------------------------------------------------------------------------------
    def list_versions(self, character: str | None = None) -> list[dict]:
        """Taught versions with lineage; with a character, its 'default' row first (active when no version is)."""
        cid = self.characters.row(character)["id"] if character else None
        out = [version_to_dict(r) for r in self.versions.list(cid)]
        if character:
            active = self.services.scoring.active(cid)
            default = {"name": DEFAULT_VERSION, "character": self.characters.row(character)["name"], "kind": "profile",
                       "profile": active.profile, "active": active.version == DEFAULT_VERSION}  # fmt: skip
            out.insert(0, default)
        return out

    def use(self, character: str, version: str) -> dict:
        """Make `version` (or 'default') the character's active discriminators."""
        row = self.characters.row(character)
        if version == DEFAULT_VERSION:
            self.versions.set_active(row["id"], None)
        else:
            found = self.versions.find(row["id"], version)
            if found is None:
                known = ", ".join(v["name"] for v in self.versions.list(row["id"])) or "none yet"
                raise InputError(f"no discriminator version {version!r} for {row['name']} (known: default, {known}); see `apc disc list -c NAME`")
            self.versions.set_active(row["id"], found["id"])
        self.services.scoring.forget()
        active = self.services.scoring.active(row["id"])
        return {"character": row["name"], "version": version, "profile": active.profile, "scoring_label": active.label,
                "applies": active.version == version}  # fmt: skip

    # -- from the TUI ------------------------------------------------------------------------------
    def label_message(self, message_id: int, statement: str, task: str, label: str, *, source: str = "why",
                      annotator: str | None = None) -> dict:  # fmt: skip
        """Store a human verdict on `statement` for a stored candidate reply (see `label_message`)."""
        return label_message(self.services, message_id, statement, task, label, source=source, annotator=annotator)

    def queue(self, character: str, *, annotator: str | None = None, limit: int = 200) -> list[dict]:
        """The teach queue (see `teach_queue`)."""
        return teach_queue(self.services, character, annotator=annotator, limit=limit)

    def next_version_name(self, character_id: int) -> str:
        taken = {v["name"] for v in self.versions.list(character_id)}
        n = len(taken) + 1
        while f"v{n}" in taken:
            n += 1
        return f"v{n}"

    def check_version_name(self, character_id: int, name: str) -> str:
        if not valid_version_name(name):
            raise InputError(f"--name {name!r}: use letters, digits, . _ - (up to 80), not 'default'; e.g. v2")
        if self.versions.find(character_id, name) is not None:
            raise InputError(f"discriminator version {name!r} exists already for this character; pick another --name")
        return name


def _row_input(line: str, character: str) -> LabelInput:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg}); one JSON object per line") from exc
    if not isinstance(row, dict):
        raise InputError("expected a JSON object with statement, query, [response,] label")
    for name in ("statement", "query"):
        if not isinstance(row.get(name), (str, int)) or not str(row.get(name)).strip():
            raise InputError(f"field {name!r} is missing or empty; every row needs statement, query, [response,] label")
    if row.get("character") not in (None, character):
        raise InputError(f"row is for character {row['character']!r}, not {character!r}; import it with -c {row['character']!r}")
    task = row.get("task") or ("nli" if row.get("response") else "relevance")
    label = row.get("label")
    if isinstance(label, bool):
        label = "yes" if label else "no"
    return LabelInput(task=str(task), statement=str(row["statement"]), query=str(row["query"]),
                      label=label if isinstance(label, str) else repr(label), response=str(row.get("response") or ""))  # fmt: skip


def read_examples(path: Path) -> dict:
    """A few-shot version's examples file -> {task: [(item, label index)]} for the judge."""
    from engine.discriminators.base import task_labels
    from engine.discriminators.formats import NliItem, RelevanceItem

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: few-shot examples cannot be read ({exc}); retrain with `apc disc train --from-labels`") from exc
    out: dict = {}
    for task in TASKS:
        labels = task_labels(task)
        items = []
        for r in data.get(task, []):
            if task == "nli":
                item = NliItem(r["character"], r["statement"], r["query"], r["response"])
            else:
                item = RelevanceItem(r["character"], r["statement"], r["query"])
            items.append((item, labels.index(r["label"])))
        out[task] = items
    return out


# -- from the TUI: verdicts on a candidate, and the teach queue ----------------------------------------
def label_message(services, message_id: int, statement: str, task: str, label: str, *, source: str = "why",
                  annotator: str | None = None) -> dict:  # fmt: skip
    """Store a human verdict on `statement` for a stored candidate (its query is the user turn it answers)."""
    from ..storage.conversations import ConversationRepo

    repo = ConversationRepo(services.store)
    message = repo.message(message_id)
    if message["role"] != "assistant" or message["parent_id"] is None:
        raise InputError(f"message {message_id} is not a candidate reply; mark verdicts on a reply")
    query = repo.message(message["parent_id"])["content"]
    character = services.teach.characters.get_by_id(repo.row(message["conversation_id"])["character_id"]).name
    verdict = LabelInput(task, statement, query, label, message["content"] if task == "nli" else "", message_id)
    return services.teach.add_label(character, verdict, source=source, annotator=annotator)


def teach_queue(services, character: str, *, annotator: str | None = None, limit: int = 200) -> list[dict]:
    """Per-statement verdicts worth a human look first, over the character's scored sibling pairs.

    Pairs where APC and the latest human preference disagree come first; within each group,
    priority = uncertainty x influence: uncertainty is the largest normalised entropy among the
    statement's relevance verdict and the two replies' NLI verdicts; influence is how much the
    statement moves the pair's ΔAPC gap (|Δterm A - Δterm B|). Statements whose verdicts the
    annotator has all given are left out."""
    from itertools import combinations

    from ..storage.pairs import PairRepo
    from ..storage.scores import ScoreRepo

    teach = services.teach
    cid = teach.characters.row(character)["id"]
    who = annotator or services.settings.annotator
    pairs_repo, scores_repo = PairRepo(services.store), ScoreRepo(services.store)
    done = {(r["task"], r["statement"], r["query"], r["response"]) for r in teach.labels.list(cid) if r["annotator"] == who}
    human: dict[tuple[int, int], str] = {}
    for p in pairs_repo.preferences(cid):  # oldest first: the latest choice wins
        a, b = p["message_a_id"], p["message_b_id"]
        human[(min(a, b), max(a, b))] = {"a": str(a), "b": str(b)}.get(p["choice"], "")
    items = []
    for group in pairs_repo.sibling_groups(cid):
        scores = scores_repo.latest_for_messages([m["id"] for m in group])
        query = pairs_repo.message(group[0]["parent_id"])["content"]
        for a, b in combinations(group, 2):
            sa, sb = scores.get(a["id"]), scores.get(b["id"])
            if sa is None or sb is None or sa.profile != sb.profile:
                continue
            preferred = human.get((min(a["id"], b["id"]), max(a["id"], b["id"])), "")
            apc_pick = str(a["id"] if sa.apc > sb.apc else b["id"]) if sa.apc != sb.apc else ""
            disagree = bool(preferred and apc_pick and preferred != apc_pick)
            by_b = {t.statement: t for t in sb.terms}
            for ta in sa.terms:
                tb = by_b.get(ta.statement)
                if tb is None:
                    continue
                influence = abs(ta.delta_term - tb.delta_term)
                uncertainty = max(_entropy((1 - ta.p_yes, ta.p_yes)), _entropy(_nli(ta)), _entropy(_nli(tb)))
                todo = [k for k in (("relevance", ""), ("nli", a["content"]), ("nli", b["content"]))
                        if (k[0], ta.statement, query, k[1]) not in done]  # fmt: skip
                if not todo:
                    continue
                items.append({
                    "priority": uncertainty * influence, "uncertainty": uncertainty,
                    "influence": influence, "disagree": disagree, "statement": ta.statement, "query": query,
                    "a": {"message_id": a["id"], "text": a["content"], "term": ta.to_dict(), "apc": sa.apc},
                    "b": {"message_id": b["id"], "text": b["content"], "term": tb.to_dict(), "apc": sb.apc},
                    "profile": sa.profile,
                })  # fmt: skip
    items.sort(key=lambda it: (not it["disagree"], -it["priority"], it["statement"]))
    return items[:limit]


def _nli(term) -> tuple[float, float, float]:
    return (term.p_contradicted, term.p_neutral, term.p_entailed)


def _entropy(probs) -> float:
    """Entropy normalised to [0, 1] (1 = uniform: the scorer cannot tell)."""
    import math

    ps = [p for p in probs if p > 0]
    return -sum(p * math.log(p) for p in ps) / math.log(len(probs)) if len(probs) > 1 else 0.0
