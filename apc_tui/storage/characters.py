"""Characters, their source passages and statements."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from engine.errors import InputError
from engine.types import Character

from .convert import character_from_row, statement_from_row
from .db import Store, now


@dataclass(frozen=True)
class StatementChange:
    """What an import did to a character's statements."""

    character_id: int
    created: bool
    added: int
    disabled: int
    kept: int


class CharacterRepo:
    def __init__(self, store: Store):
        self.store = store

    # -- reads -------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [r["name"] for r in self.store.db.query("SELECT name FROM characters WHERE deleted_at IS NULL ORDER BY name")]

    def summaries(self) -> list[dict]:
        """One row per character: counts and the latest APC score, for lists."""
        sql = """
        SELECT c.id, c.name, c.language, c.source_file,
               (SELECT COUNT(*) FROM statements s WHERE s.character_id = c.id) AS statements,
               (SELECT COUNT(*) FROM statements s WHERE s.character_id = c.id AND s.enabled) AS enabled,
               (SELECT COUNT(*) FROM passages p WHERE p.character_id = c.id) AS passages,
               (SELECT a.delta_apc FROM apc_scores a WHERE a.character_id = c.id ORDER BY a.id DESC LIMIT 1) AS last_delta_apc,
               c.updated_at
        FROM characters c WHERE c.deleted_at IS NULL ORDER BY c.name
        """
        return list(self.store.db.query(sql))

    def row(self, name: str) -> dict:
        rows = list(self.store.db.query("SELECT * FROM characters WHERE name = ?", [name]))
        if rows and rows[0]["deleted_at"] is not None:
            raise InputError(f"character {name!r} was deleted; bring it back with `apc characters restore {name!r}`")
        if not rows:
            known = ", ".join(self.names()[:8]) or "none yet: run `apc characters import FILE`"
            raise InputError(f"no character named {name!r} (known: {known})")
        return rows[0]

    def get(self, name: str) -> Character:
        row = self.row(name)
        return self._load(row)

    def get_by_id(self, character_id: int) -> Character:
        rows = list(self.store.db.query("SELECT * FROM characters WHERE id = ?", [character_id]))
        if not rows:
            raise InputError(f"no character with id {character_id}")
        return self._load(rows[0])

    def _load(self, row: dict) -> Character:
        db = self.store.db
        passages = {p["id"]: p["text"] for p in db.query("SELECT id, text FROM passages WHERE character_id = ?", [row["id"]])}
        stmts = [
            statement_from_row(s, passages.get(s["passage_id"]))
            for s in db.query("SELECT * FROM statements WHERE character_id = ? ORDER BY position, id", [row["id"]])
        ]
        return character_from_row(row, stmts)

    def passages(self, name: str) -> list[dict]:
        cid = self.row(name)["id"]
        return list(self.store.db.query("SELECT * FROM passages WHERE character_id = ? ORDER BY position", [cid]))

    # -- writes ------------------------------------------------------------------------
    def upsert(self, name: str, **fields) -> tuple[int, bool]:
        """`import_character`, returning (id, created)."""
        change = self.import_character(name, **fields)
        return change.character_id, change.created

    def import_character(
        self,
        name: str,
        *,
        language: str,
        source_text: str,
        passages: list[str],
        statements: list[tuple[str, str, int | None]],
        card: dict | None = None,
        source_file: str | None = None,
        art: bytes | None = None,
    ) -> StatementChange:
        """Create or update a character in one transaction: re-import means replace.

        statements: (text, origin, passage index or None). The enabled statement set becomes the
        file's: unchanged statements keep their ids (scores and labels stay attached), new ones are
        added, and statements no longer in the file are disabled (kept, for the scores and labels
        that refer to them). `art` (a card PNG's image) replaces the stored art; None keeps it,
        so re-importing the JSON of a PNG-imported card keeps its art.
        """
        ts = now()
        with self.store.transaction() as db:
            existing = list(db.query("SELECT id, deleted_at FROM characters WHERE name = ?", [name]))
            if existing and existing[0]["deleted_at"] is not None:
                raise InputError(f"character {name!r} was deleted; run `apc characters restore {name!r}` first, "
                                 f"or `apc characters delete {name!r} --purge` to drop it for good")  # fmt: skip
            fields = {
                "language": language,
                "source_text": source_text,
                "card_json": json.dumps(card, ensure_ascii=False) if card is not None else None,
                "source_file": source_file,
                "updated_at": ts,
            }
            if existing:
                cid = existing[0]["id"]
                db["characters"].update(cid, fields)
            else:
                cid = db["characters"].insert({"name": name, "created_at": ts, **fields}).last_pk
            passage_ids = self._replace_passages(db, cid, passages)
            added, disabled, kept = self._merge_statements(db, cid, statements, passage_ids, ts)
            if art is not None:
                db.execute(
                    "INSERT OR REPLACE INTO character_art (character_id, png, sha256, updated_at) VALUES (?, ?, ?, ?)",
                    [cid, art, hashlib.sha256(art).hexdigest(), ts],
                )
        return StatementChange(cid, not existing, added, disabled, kept)

    def art(self, character_id: int) -> bytes | None:
        """The art kept from the character's card PNG, or None."""
        row = self.store.db.execute("SELECT png FROM character_art WHERE character_id = ?", [character_id]).fetchone()
        return bytes(row[0]) if row else None

    def _replace_passages(self, db, cid: int, passages: list[str]) -> list[int]:
        rows = {r["position"]: r for r in db.query("SELECT * FROM passages WHERE character_id = ?", [cid])}
        ids = []
        for i, text in enumerate(passages):
            if i in rows:
                if rows[i]["text"] != text:
                    db["passages"].update(rows[i]["id"], {"text": text})
                ids.append(rows[i]["id"])
            else:
                ids.append(db["passages"].insert({"character_id": cid, "position": i, "text": text}).last_pk)
        db.execute("DELETE FROM passages WHERE character_id = ? AND position >= ?", [cid, len(passages)])
        return ids

    def _merge_statements(self, db, cid, statements, passage_ids, ts) -> tuple[int, int, int]:
        """(added, disabled, kept): the enabled set becomes `statements`."""
        have = {r["text"]: r for r in db.query("SELECT id, text, enabled FROM statements WHERE character_id = ?", [cid])}
        next_pos = (db.execute("SELECT COALESCE(MAX(position), -1) FROM statements WHERE character_id = ?", [cid]).fetchone()[0]) + 1
        added = kept = 0
        wanted: set[str] = set()
        for text, origin, pidx in statements:
            if text in wanted:
                continue
            wanted.add(text)
            pid = passage_ids[pidx] if pidx is not None and pidx < len(passage_ids) else None
            if text in have:
                fields = {"enabled": 1} | ({"passage_id": pid} if pid is not None else {})
                db["statements"].update(have[text]["id"], fields)
                kept += 1
                continue
            db["statements"].insert(
                {"character_id": cid, "position": next_pos, "text": text, "passage_id": pid, "origin": origin, "enabled": 1, "created_at": ts}
            )
            added += 1
            next_pos += 1
        gone = [r["id"] for text, r in have.items() if text not in wanted and r["enabled"]]
        for sid in gone:
            db["statements"].update(sid, {"enabled": 0})
        return added, len(gone), kept

    def add_teacher_rows(self, name: str, rows: list[dict], teacher: str) -> int:
        """Shipped teacher rows ({statement, query, entailed, neutral, contradicted}) -> queries + NLI labels.

        Idempotent (UNIQUE constraints + INSERT OR IGNORE); the train/eval split is the synthesis one.
        """
        from engine.synthesis import split_of

        cid = self.row(name)["id"]
        ts = now()
        added = 0
        with self.store.transaction() as db:
            ids = {r["text"]: r["id"] for r in db.query("SELECT id, text FROM statements WHERE character_id = ?", [cid])}
            for r in rows:
                sid = ids.get(r.get("statement"))
                if sid is None:
                    continue
                db.execute(
                    "INSERT OR IGNORE INTO queries (character_id, statement_id, text, split, origin, created_at) VALUES (?, ?, ?, ?, 'shipped', ?)",
                    [cid, sid, r["query"], split_of(r["query"]), ts],
                )
                qid = db.execute("SELECT id FROM queries WHERE character_id = ? AND statement_id = ? AND text = ?", [cid, sid, r["query"]]).fetchone()[0]
                for label in ("entailed", "neutral", "contradicted"):
                    if r.get(label):
                        cur = db.execute(
                            "INSERT OR IGNORE INTO teacher_labels (task, character_id, statement_id, query_id, response, intended, label, teacher, created_at)"
                            " VALUES ('nli', ?, ?, ?, ?, ?, ?, ?, ?)",
                            [cid, sid, qid, r[label], label, label, teacher, ts],
                        )
                        added += cur.rowcount
        return added

    def deletion_counts(self, name: str) -> dict[str, int]:
        """What `delete` takes away with the character (shown before asking)."""
        cid = self.row(name)["id"]
        one = lambda sql: self.store.db.execute(sql, [cid]).fetchone()[0]  # noqa: E731
        return {
            "statements": one("SELECT COUNT(*) FROM statements WHERE character_id = ?"),
            "conversations": one("SELECT COUNT(*) FROM conversations WHERE character_id = ?"),
            "messages": one("SELECT COUNT(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.character_id = ?"),
            "labels": one("SELECT COUNT(*) FROM preferences WHERE character_id = ?"),
            "pairs": one("SELECT COUNT(*) FROM preference_pairs WHERE character_id = ?"),
            "teacher_calls": one("SELECT COUNT(*) FROM teacher_calls WHERE character_id = ?"),
            "teacher_tokens": one("SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM teacher_calls WHERE character_id = ?"),
        }

    def delete(self, name: str) -> None:
        """Soft delete: hidden everywhere, everything kept until `restore` or `purge`."""
        cid = self.row(name)["id"]
        with self.store.transaction() as db:
            db["characters"].update(cid, {"deleted_at": now()})

    def deleted(self) -> list[dict]:
        sql = """SELECT c.id, c.name, c.language, c.deleted_at,
                        (SELECT COUNT(*) FROM statements s WHERE s.character_id = c.id) AS statements
                 FROM characters c WHERE c.deleted_at IS NOT NULL ORDER BY c.deleted_at DESC"""
        return list(self.store.db.query(sql))

    def _deleted_row(self, name: str) -> dict:
        rows = list(self.store.db.query("SELECT * FROM characters WHERE name = ? AND deleted_at IS NOT NULL", [name]))
        if not rows:
            listed = ", ".join(r["name"] for r in self.deleted()[:8]) or "none"
            raise InputError(f"no deleted character named {name!r} (deleted: {listed}); list them with `apc characters restore`")
        return rows[0]

    def restore(self, name: str) -> None:
        cid = self._deleted_row(name)["id"]
        with self.store.transaction() as db:
            db["characters"].update(cid, {"deleted_at": None, "updated_at": now()})

    def purge(self, name: str) -> None:
        """Drop a deleted character and everything attached to it, for good."""
        cid = self._deleted_row(name)["id"]
        with self.store.transaction() as db:
            db.execute("DELETE FROM characters WHERE id = ?", [cid])

    def add_statement(self, name: str, text: str, origin: str = "manual") -> int:
        text = _clean_statement(text)
        cid = self.row(name)["id"]
        with self.store.transaction() as db:
            if list(db.query("SELECT id FROM statements WHERE character_id = ? AND text = ?", [cid, text])):
                raise InputError(f"{name!r} already has the statement {text!r}")
            pos = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM statements WHERE character_id = ?", [cid]).fetchone()[0]
            sid = db["statements"].insert(
                {"character_id": cid, "position": pos, "text": text, "origin": origin, "enabled": 1, "created_at": now()}
            ).last_pk
            db["characters"].update(cid, {"updated_at": now()})
        return sid

    def statement_row(self, statement_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM statements WHERE id = ?", [statement_id]))
        if not rows:
            raise InputError(f"no statement with id {statement_id} (see `apc characters show NAME`)")
        return rows[0]

    def edit_statement(self, statement_id: int, text: str) -> None:
        row = self.statement_row(statement_id)
        text = _clean_statement(text)
        with self.store.transaction() as db:
            clash = list(db.query("SELECT id FROM statements WHERE character_id = ? AND text = ? AND id != ?", [row["character_id"], text, statement_id]))
            if clash:
                raise InputError(f"statement {clash[0]['id']} already says {text!r}")
            # a hand-written statement stays "manual"; an imported, drafted or teacher one becomes "edited"
            db["statements"].update(statement_id, {"text": text, "origin": "manual" if row["origin"] == "manual" else "edited"})

    def set_enabled(self, statement_id: int, enabled: bool) -> None:
        self.statement_row(statement_id)
        with self.store.transaction() as db:
            db["statements"].update(statement_id, {"enabled": int(enabled)})


def _clean_statement(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise InputError("a statement cannot be empty; give the text, e.g. \"Alice lives in Paris.\"")
    if len(text) > 2000:
        raise InputError(f"statement is {len(text)} characters; keep a statement to one short fact (< 2000 characters)")
    return text
