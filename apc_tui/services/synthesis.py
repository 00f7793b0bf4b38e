"""Teacher synthesis use cases: run a stage (resumable, concurrent), status, export.

Stages: statements (per passage), queries (per statement), relevance (per statement: its own
utterances + N_OTHERS of other statements), nli = nli_write (per statement and own utterance)
then nli_label (per written response). `run_stage` is what the jobs runner calls.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from engine import synthesis as syn
from engine.errors import ConfigError, InputError
from engine.types import GenerationParams

from ..storage import Store
from ..storage.characters import CharacterRepo
from ..storage.teacher import TeacherRepo
from .teacher_runner import WorkItem, run_items

STAGES = ("statements", "queries", "relevance", "nli", "all")
SUBSTAGES = {"statements": ("statements",), "queries": ("queries",), "relevance": ("relevance",), "nli": ("nli_write", "nli_label")}
ORDER = ("statements", "queries", "relevance", "nli")
WRITE = GenerationParams(temperature=1.0, top_p=1.0, max_new_tokens=1024)  # the paper samples writing at T=1
LABEL = GenerationParams(temperature=0.0, top_p=1.0, max_new_tokens=64)  # and labels greedily
PARAMS = {"statements": WRITE, "queries": WRITE, "relevance": LABEL, "nli_write": WRITE, "nli_label": LABEL}


class SynthesisService:
    def __init__(self, settings, store: Store, models):
        self.settings = settings
        self.store = store
        self.models = models
        self.repo = TeacherRepo(store)
        self.characters = CharacterRepo(store)

    def teacher(self, teacher=None):
        """A ChatModel: the one given, or loaded from a spec (default: settings.teacher)."""
        if teacher is not None and not isinstance(teacher, str):
            return teacher
        spec = teacher or self.settings.teacher
        if not spec:
            raise ConfigError("no teacher model; pass --teacher SPEC (e.g. openai:gpt-4o) or set `teacher` in the config file")
        return self.models.get(spec)

    # -- running -----------------------------------------------------------------------
    def run_stage(
        self,
        character: str,
        stage: str,
        teacher=None,
        concurrency: int = 8,
        limit: int | None = None,
        progress: Callable[[int, int, str], None] | None = None,
        stop: threading.Event | None = None,
    ) -> dict:
        """Run one stage (or `all`, in order); returns per-substage reports. Raises Cancelled when stopped."""
        if stage not in STAGES:
            raise InputError(f"stage {stage!r} is unknown; use one of {', '.join(STAGES)}")
        if concurrency < 1 or (limit is not None and limit < 1):
            raise InputError("--concurrency and --limit must be at least 1")
        row = self.characters.row(character)
        model = self.teacher(teacher)
        reports = []
        for st in ORDER if stage == "all" else (stage,):
            for sub in SUBSTAGES[st]:
                items, done = self._items(sub, row)
                total = len(items) + done
                items = items[:limit] if limit else items
                report = run_items(
                    self.repo, row["id"], sub, model, items, params=PARAMS[sub], already_done=done, total=total,
                    concurrency=concurrency, progress=progress, stop=stop,
                )  # fmt: skip
                reports.append(report.to_dict())
        return {"character": row["name"], "teacher": model.spec, "meaningless_teacher": bool(model.meaningless), "stages": reports}

    def _items(self, sub: str, row: dict) -> tuple[list[WorkItem], int]:
        """The work items of a substage not yet done, and how many are done already."""
        build = {"statements": self._statement_items, "queries": self._query_items, "relevance": self._relevance_items,
                 "nli_write": self._nli_write_items, "nli_label": self._nli_label_items}[sub]  # fmt: skip
        return build(row)

    def _pending(self, row: dict, stage: str, candidates: list[WorkItem]) -> tuple[list[WorkItem], int]:
        done = self.repo.done_keys(row["id"], stage)
        todo = [it for it in candidates if it.key not in done]
        return todo, len(candidates) - len(todo)

    def _statement_items(self, row):
        name, lang, cid = row["name"], row["language"], row["id"]

        def save(pid):
            def _save(reply, call):
                accepted, rejected = syn.parse_statements(reply, name)
                if rejected and not accepted:
                    raise syn.ReplyError(f"every statement was rejected, e.g. {rejected[0][0]!r}: {rejected[0][1]}")
                if rejected:  # kept visible in teacher_calls; the accepted ones are stored
                    call = replace(call, error=f"rejected {len(rejected)}: " + "; ".join(f"{t!r} ({why})" for t, why in rejected[:5]))
                return self.repo.save_statements(cid, pid, accepted, call)

            return _save

        schema = syn.reply_schema("statements")
        items = [WorkItem(syn.item_key(p["id"], p["text"]), syn.statement_messages(name, lang, p["text"]), save(p["id"]), schema=schema)
                 for p in self.repo.passages(cid)]  # fmt: skip
        return self._pending(row, "statements", items)

    def _query_items(self, row):
        name, lang, cid = row["name"], row["language"], row["id"]

        def save(sid):
            def _save(reply, call):
                queries = syn.parse_queries(reply, syn.N_QUERIES)
                return self.repo.save_queries(cid, sid, [(q, syn.split_of(f"{name}\x1f{q}")) for q in queries], call)

            return _save

        schema = syn.reply_schema("queries")
        items = [WorkItem(syn.item_key(s["id"], s["text"]), syn.query_messages(name, lang, s["text"]), save(s["id"]), schema=schema)
                 for s in self.repo.statements(cid)]  # fmt: skip
        return self._pending(row, "queries", items)

    def _by_statement(self, cid: int) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {}
        for q in self.repo.queries(cid):
            out.setdefault(q["statement_id"], []).append(q)
        return out

    def _relevance_items(self, row):
        name, lang, cid = row["name"], row["language"], row["id"]
        qmap = self._by_statement(cid)
        items = []
        for s in self.repo.statements(cid):
            own = qmap.get(s["id"], [])
            if not own:
                continue
            pool = [q for sid, qs in qmap.items() if sid != s["id"] for q in qs]
            utts = own + syn.pick_others(f"{cid}:{s['id']}:{s['text']}", pool, syn.N_OTHERS)

            def save(reply, call, sid=s["id"], utts=utts):
                labels = syn.parse_relevance(reply, len(utts))
                rows = [{"statement_id": sid, "query_id": q["id"], "label": lab} for q, lab in zip(utts, labels, strict=True)]
                return self.repo.save_labels(cid, "relevance", rows, call)

            key = syn.item_key(s["id"], s["text"], *[q["text"] for q in utts])
            msgs = syn.relevance_messages(name, lang, s["text"], [q["text"] for q in utts])
            items.append(WorkItem(key, msgs, save, schema=syn.reply_schema("relevance", len(utts))))
        return self._pending(row, "relevance", items)

    def _nli_write_items(self, row):
        name, lang, cid = row["name"], row["language"], row["id"]
        qmap = self._by_statement(cid)
        items = []
        for s in self.repo.statements(cid):
            for q in qmap.get(s["id"], []):

                def save(reply, call, sid=s["id"], qid=q["id"]):
                    written = syn.parse_nli_responses(reply)
                    rows = [{"statement_id": sid, "query_id": qid, "response": text, "intended": lab} for lab, text in written.items()]
                    return self.repo.save_labels(cid, "nli", rows, call)

                key = syn.item_key(s["id"], q["id"], s["text"], q["text"])
                msgs = syn.nli_write_messages(name, lang, s["text"], q["text"])
                items.append(WorkItem(key, msgs, save, schema=syn.reply_schema("nli_write")))
        return self._pending(row, "nli_write", items)

    def _nli_label_items(self, row):
        name, lang, cid = row["name"], row["language"], row["id"]
        items = []
        for r in self.repo.unlabelled_nli(cid):

            def save(reply, call, label_id=r["id"]):
                return self.repo.set_label(cid, label_id, syn.parse_nli_label(reply), call)

            msgs = syn.nli_label_messages(name, lang, r["statement"], r["query"], r["response"])
            items.append(WorkItem(syn.item_key(r["id"], r["response"]), msgs, save, schema=syn.reply_schema("nli_label")))
        done = self.repo.counts(cid)["nli_labelled"]
        return items, done

    # -- status and export -------------------------------------------------------------
    def status(self, character: str) -> dict:
        row = self.characters.row(character)
        pending = {sub: len(self._items(sub, row)[0]) for st in ORDER for sub in SUBSTAGES[st]}
        return {
            "character": row["name"],
            "counts": self.repo.counts(row["id"]),
            "pending": pending,
            "calls": self.repo.call_counts(row["id"]),
            "recent_failures": self.repo.failures(row["id"], 10),
        }

    def export(self, character: str, task: str, out: Path) -> dict:
        """Labelled rows as JSONL in the `apc disc eval` format; written atomically."""
        if task not in ("relevance", "nli"):
            raise InputError(f"--task {task!r}: use relevance or nli")
        row = self.characters.row(character)
        rows = self.repo.export_rows(row["id"], task)
        if not rows:
            raise InputError(f"{row['name']!r} has no labelled {task} rows yet; run `apc synth {task} --character {row['name']!r}` first")
        out = Path(out).expanduser()
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                for r in rows:
                    d = {"character": r["character"], "statement": r["statement"], "query": r["query"], "label": r["label"]}
                    if task == "nli":
                        d["response"] = r["response"]
                        d["intended"] = r["intended"]
                    d["split"] = r["split"]
                    fh.write(json.dumps(d, ensure_ascii=False) + "\n")
            os.replace(tmp, out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InputError(f"cannot write {out}: {exc.strerror}; pick a writable --out path") from exc
        return {"character": row["name"], "task": task, "rows": len(rows), "out": str(out)}
