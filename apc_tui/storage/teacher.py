"""Teacher synthesis rows: teacher-written statements and utterances, labels, and every call made.

A unit of work is done when an 'ok' teacher_calls row with its item key exists; results and that
row are written in one transaction, and UNIQUE constraints make a rerun add nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.secrets import redact

from .db import Store, now


@dataclass(frozen=True)
class CallRecord:
    """One teacher call, as stored in teacher_calls."""

    stage: str
    item_key: str
    teacher: str
    status: str  # ok | failed | unparsed
    raw_reply: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class TeacherRepo:
    def __init__(self, store: Store):
        self.store = store

    # -- calls -------------------------------------------------------------------------
    def done_keys(self, character_id: int, stage: str) -> set[str]:
        sql = "SELECT DISTINCT item_key FROM teacher_calls WHERE character_id = ? AND stage = ? AND status = 'ok'"
        return {r["item_key"] for r in self.store.db.query(sql, [character_id, stage])}

    def record(self, character_id: int, call: CallRecord, db=None) -> None:
        row = {"character_id": character_id, "created_at": now(), **call.__dict__}
        row["raw_reply"], row["error"] = redact(row["raw_reply"]), redact(row["error"])  # a server may echo the key
        if db is not None:
            db["teacher_calls"].insert(row)
            return
        with self.store.transaction() as tx:
            tx["teacher_calls"].insert(row)

    def failures(self, character_id: int, limit: int = 20) -> list[dict]:
        sql = """SELECT id, stage, item_key, status, error, substr(raw_reply, 1, 300) AS raw_reply, created_at
                 FROM teacher_calls WHERE character_id = ? AND status != 'ok' ORDER BY id DESC LIMIT ?"""
        return list(self.store.db.query(sql, [character_id, limit]))

    def call_counts(self, character_id: int) -> dict[str, dict]:
        sql = """SELECT stage, status, COUNT(*) AS n, COALESCE(SUM(prompt_tokens), 0) AS pt, COALESCE(SUM(completion_tokens), 0) AS ct
                 FROM teacher_calls WHERE character_id = ? GROUP BY stage, status"""
        out: dict[str, dict] = {}
        for r in self.store.db.query(sql, [character_id]):
            d = out.setdefault(r["stage"], {"ok": 0, "failed": 0, "unparsed": 0, "prompt_tokens": 0, "completion_tokens": 0})
            d[r["status"]] = r["n"]
            d["prompt_tokens"] += r["pt"]
            d["completion_tokens"] += r["ct"]
        return out

    # -- results (each with its 'ok' call, in one transaction) --------------------------
    def save_statements(self, character_id: int, passage_id: int, texts: list[str], call: CallRecord) -> int:
        added = 0
        with self.store.transaction() as db:
            pos = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM statements WHERE character_id = ?", [character_id]).fetchone()[0]
            for text in texts:
                cur = db.execute(
                    "INSERT OR IGNORE INTO statements (character_id, position, text, passage_id, origin, enabled, created_at) "
                    "VALUES (?, ?, ?, ?, 'teacher', 1, ?)",
                    [character_id, pos, text, passage_id, now()],
                )
                added += cur.rowcount
                pos += cur.rowcount
            self.record(character_id, call, db)
        return added

    def save_queries(self, character_id: int, statement_id: int, rows: list[tuple[str, str]], call: CallRecord) -> int:
        """rows: (utterance, split)."""
        added = 0
        with self.store.transaction() as db:
            for text, split in rows:
                cur = db.execute(
                    "INSERT OR IGNORE INTO queries (character_id, statement_id, text, split, origin, created_at) VALUES (?, ?, ?, ?, 'teacher', ?)",
                    [character_id, statement_id, text, split, now()],
                )
                added += cur.rowcount
            self.record(character_id, call, db)
        return added

    def save_labels(self, character_id: int, task: str, rows: list[dict], call: CallRecord) -> int:
        """rows: {statement_id, query_id, response, intended, label}; existing rows are kept."""
        added = 0
        with self.store.transaction() as db:
            for r in rows:
                cur = db.execute(
                    "INSERT OR IGNORE INTO teacher_labels (task, character_id, statement_id, query_id, response, intended, label, teacher, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [task, character_id, r["statement_id"], r["query_id"], r.get("response", ""), r.get("intended"), r.get("label"), call.teacher, now()],
                )
                added += cur.rowcount
            self.record(character_id, call, db)
        return added

    def set_label(self, character_id: int, label_id: int, label: str, call: CallRecord) -> int:
        with self.store.transaction() as db:
            cur = db.execute("UPDATE teacher_labels SET label = ? WHERE id = ? AND label IS NULL", [label, label_id])
            self.record(character_id, call, db)
        return cur.rowcount

    # -- reads -------------------------------------------------------------------------
    def passages(self, character_id: int) -> list[dict]:
        return list(self.store.db.query("SELECT id, text FROM passages WHERE character_id = ? ORDER BY position", [character_id]))

    def statements(self, character_id: int) -> list[dict]:
        sql = "SELECT id, text FROM statements WHERE character_id = ? AND enabled ORDER BY position, id"
        return list(self.store.db.query(sql, [character_id]))

    def queries(self, character_id: int) -> list[dict]:
        sql = "SELECT id, statement_id, text, split FROM queries WHERE character_id = ? ORDER BY id"
        return list(self.store.db.query(sql, [character_id]))

    def unlabelled_nli(self, character_id: int) -> list[dict]:
        sql = """SELECT l.id, l.response, l.intended, s.text AS statement, q.text AS query
                 FROM teacher_labels l JOIN statements s ON s.id = l.statement_id JOIN queries q ON q.id = l.query_id
                 WHERE l.character_id = ? AND l.task = 'nli' AND l.label IS NULL ORDER BY l.id"""
        return list(self.store.db.query(sql, [character_id]))

    def export_rows(self, character_id: int, task: str) -> list[dict]:
        sql = """SELECT c.name AS character, s.text AS statement, q.text AS query, l.response, l.label, l.intended, q.split
                 FROM teacher_labels l JOIN statements s ON s.id = l.statement_id JOIN queries q ON q.id = l.query_id
                 JOIN characters c ON c.id = l.character_id
                 WHERE l.character_id = ? AND l.task = ? AND l.label IS NOT NULL ORDER BY l.id"""
        return list(self.store.db.query(sql, [character_id, task]))

    def counts(self, character_id: int) -> dict:
        db = self.store.db

        def one(sql: str) -> int:
            return db.execute(sql, [character_id]).fetchone()[0]

        nli_rows = list(db.query(
            "SELECT intended, label, COUNT(*) AS n FROM teacher_labels WHERE character_id = ? AND task = 'nli' GROUP BY intended, label",
            [character_id]))  # fmt: skip
        labelled = sum(r["n"] for r in nli_rows if r["label"])
        agree = sum(r["n"] for r in nli_rows if r["label"] and r["label"] == r["intended"])
        return {
            "passages": one("SELECT COUNT(*) FROM passages WHERE character_id = ?"),
            "statements": one("SELECT COUNT(*) FROM statements WHERE character_id = ? AND enabled"),
            "teacher_statements": one("SELECT COUNT(*) FROM statements WHERE character_id = ? AND origin = 'teacher'"),
            "queries": one("SELECT COUNT(*) FROM queries WHERE character_id = ?"),
            "queries_eval": one("SELECT COUNT(*) FROM queries WHERE character_id = ? AND split = 'eval'"),
            "relevance_labels": one("SELECT COUNT(*) FROM teacher_labels WHERE character_id = ? AND task = 'relevance'"),
            "relevance_yes": one("SELECT COUNT(*) FROM teacher_labels WHERE character_id = ? AND task = 'relevance' AND label = 'yes'"),
            "nli_responses": sum(r["n"] for r in nli_rows),
            "nli_labelled": labelled,
            "nli_agreement": (agree / labelled) if labelled else None,
        }
