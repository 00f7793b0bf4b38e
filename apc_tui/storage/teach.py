"""Human discriminator labels (disc_labels) and per-character discriminator versions
(disc_versions, disc_active): what "teach the scorer" stores."""

from __future__ import annotations

import hashlib
import json

from engine.errors import InputError

from .db import Store, now

LABEL_FIELDS = ("task", "statement", "query", "response", "label")


class LabelRepo:
    def __init__(self, store: Store):
        self.store = store

    def add_many(self, character_id: int, rows: list[dict], *, annotator: str, source: str) -> int:
        """Insert (or replace: same statement, query, response and annotator) labels in one
        transaction; rows carry task, statement, query, response, label and optionally
        statement_id and message_id. Returns the number of rows written."""
        ts = now()
        with self.store.transaction() as db:
            for r in rows:
                db.execute(
                    """
                    INSERT INTO disc_labels (character_id, task, statement_id, statement, query, response, label,
                                             annotator, message_id, source, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (character_id, task, statement, query, response, annotator) DO UPDATE SET
                        label = excluded.label, statement_id = excluded.statement_id, message_id = excluded.message_id,
                        source = excluded.source, created_at = excluded.created_at
                    """,
                    [character_id, r["task"], r.get("statement_id"), r["statement"], r["query"], r.get("response") or "",
                     r["label"], annotator, r.get("message_id"), source, ts],
                )  # fmt: skip
        return len(rows)

    def list(self, character_id: int, task: str | None = None) -> list[dict]:
        where, params = "character_id = ?", [character_id]
        if task is not None:
            where, params = where + " AND task = ?", [*params, task]
        return list(self.store.db.query(f"SELECT * FROM disc_labels WHERE {where} ORDER BY id", params))

    def for_message(self, message_id: int) -> list[dict]:
        return list(self.store.db.query("SELECT * FROM disc_labels WHERE message_id = ? ORDER BY id", [message_id]))

    def count(self, character_id: int) -> int:
        return self.store.db.execute("SELECT COUNT(*) FROM disc_labels WHERE character_id = ?", [character_id]).fetchone()[0]


def labels_hash(rows: list[dict]) -> str:
    """sha256 over the labels' content (order-independent): the lineage of a taught version."""
    keys = sorted(json.dumps([r[k] or "" for k in LABEL_FIELDS], ensure_ascii=False) for r in rows)
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()


class DiscVersionRepo:
    def __init__(self, store: Store):
        self.store = store

    def add(self, character_id: int, name: str, *, profile: str, parent: str, kind: str, rel_path: str | None,
            nli_path: str | None, labels_hash: str, n_labels: int, recipe: dict, metrics: dict,
            job_id: int | None = None) -> int:  # fmt: skip
        if self.find(character_id, name) is not None:
            raise InputError(f"discriminator version {name!r} exists already for this character; pick another --name")
        with self.store.transaction() as db:
            return db["disc_versions"].insert(
                {"character_id": character_id, "name": name, "profile": profile, "parent": parent, "kind": kind,
                 "rel_path": rel_path, "nli_path": nli_path, "labels_hash": labels_hash, "n_labels": n_labels,
                 "recipe_json": json.dumps(recipe), "metrics_json": json.dumps(metrics), "job_id": job_id,
                 "created_at": now()}
            ).last_pk  # fmt: skip

    def find(self, character_id: int, name: str) -> dict | None:
        rows = list(self.store.db.query("SELECT * FROM disc_versions WHERE character_id = ? AND name = ?", [character_id, name]))
        return rows[0] if rows else None

    def list(self, character_id: int | None = None) -> list[dict]:
        sql = """
        SELECT v.*, c.name AS character, (a.version_id IS NOT NULL) AS active
        FROM disc_versions v JOIN characters c ON c.id = v.character_id
        LEFT JOIN disc_active a ON a.version_id = v.id
        """
        params: list = []
        if character_id is not None:
            sql, params = sql + " WHERE v.character_id = ?", [character_id]
        return list(self.store.db.query(sql + " ORDER BY c.name, v.id", params))

    def active(self, character_id: int) -> dict | None:
        sql = "SELECT v.* FROM disc_active a JOIN disc_versions v ON v.id = a.version_id WHERE a.character_id = ?"
        rows = list(self.store.db.query(sql, [character_id]))
        return rows[0] if rows else None

    def set_active(self, character_id: int, version_id: int | None) -> None:
        """Make a version the character's active one; None: back to the profile's own discriminators."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM disc_active WHERE character_id = ?", [character_id])
            if version_id is not None:
                db.execute("INSERT INTO disc_active (character_id, version_id, updated_at) VALUES (?, ?, ?)",
                           [character_id, version_id, now()])  # fmt: skip


def version_to_dict(row: dict) -> dict:
    out = {k: row[k] for k in ("id", "name", "profile", "parent", "kind", "rel_path", "nli_path", "labels_hash",
                               "n_labels", "job_id", "created_at") if k in row}  # fmt: skip
    out["recipe"] = json.loads(row.get("recipe_json") or "{}")
    out["metrics"] = json.loads(row.get("metrics_json") or "{}")
    if "character" in row:
        out["character"] = row["character"]
    if "active" in row:
        out["active"] = bool(row["active"])
    return out
