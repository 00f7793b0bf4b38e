"""DPO preference pairs (`preference_pairs`), human preferences (`preferences`), and the reads the
pair builder needs: queries by split and the branches of conversation trees (sibling replies)."""

from __future__ import annotations

from engine.dpo import pair_key, prompt_json
from engine.errors import InputError
from engine.types import PreferencePair, Turn

from .convert import pair_from_row, turns_from_json
from .db import Store, now

CHOICES = ("a", "b", "tie", "both_bad")


class PairRepo:
    def __init__(self, store: Store):
        self.store = store

    # -- preference_pairs ----------------------------------------------------------------
    def insert(
        self,
        character_id: int,
        pair: PreferencePair,
        *,
        chosen_message_id: int | None = None,
        rejected_message_id: int | None = None,
        preference_id: int | None = None,
        query_id: int | None = None,
    ) -> int | None:
        """Store a pair unless the same two replies to the same prompt are stored; returns the id or None."""
        row = {
            "character_id": character_id,
            "pair_key": pair_key(pair.prompt, pair.chosen, pair.rejected),
            "prompt_json": prompt_json(pair.prompt),
            "chosen": pair.chosen,
            "rejected": pair.rejected,
            "source": pair.source,
            "chosen_apc": pair.chosen_apc,
            "rejected_apc": pair.rejected_apc,
            "annotator": pair.annotator,
            "model_spec": pair.model_spec,
            "method": pair.method,
            "weight": pair.weight,
            "chosen_message_id": chosen_message_id,
            "rejected_message_id": rejected_message_id,
            "preference_id": preference_id,
            "query_id": query_id,
            "created_at": now(),
        }
        with self.store.transaction() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO preference_pairs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            return cur.lastrowid if cur.rowcount else None

    def scorer_profiles(self, character_id: int) -> list[str]:
        """The discriminator profiles behind the character's APC-ranked pairs: those of the scores of
        conversation replies that became pairs, and those of its `pairs` jobs."""
        sql = """
        SELECT s.profile FROM apc_scores s JOIN preference_pairs p
          ON s.message_id IN (p.chosen_message_id, p.rejected_message_id)
        WHERE p.character_id = ?
        UNION
        SELECT json_extract(j.config_json, '$.profile') FROM jobs j
        WHERE j.kind = 'pairs' AND j.character_id = ? AND json_extract(j.config_json, '$.profile') IS NOT NULL
          AND EXISTS (SELECT 1 FROM preference_pairs p WHERE p.character_id = ? AND p.source = 'apc' AND p.query_id IS NOT NULL)
        """
        return sorted({r[0] for r in self.store.db.execute(sql, [character_id] * 3).fetchall() if r[0]})

    def rows(self, character_id: int, source: str | None = None) -> list[dict]:
        sql = "SELECT * FROM preference_pairs WHERE character_id = ?" + (" AND source = ?" if source else "") + " ORDER BY id"
        return list(self.store.db.query(sql, [character_id, *([source] if source else [])]))

    def by_ids(self, ids: list[int]) -> list[tuple[int, PreferencePair]]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        found = {r["id"]: r for r in self.store.db.query(f"SELECT * FROM preference_pairs WHERE id IN ({marks})", ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError(f"preference pair {missing[0]} no longer exists; start a new training instead of resuming")
        return [(i, pair_from_row(found[i])) for i in ids]

    def training_pairs(self, character_id: int) -> list[tuple[int, PreferencePair]]:
        return [(r["id"], pair_from_row(r)) for r in self.rows(character_id)]

    def derived_rows(self, character_id: int) -> list[dict]:
        """Pairs that come from conversations or human labels (rebuilt by sync, never by hand)."""
        return list(
            self.store.db.query(
                "SELECT * FROM preference_pairs WHERE character_id = ? AND "
                "(chosen_message_id IS NOT NULL OR rejected_message_id IS NOT NULL OR preference_id IS NOT NULL)",
                [character_id],
            )
        )

    def delete(self, ids: list[int]) -> None:
        if not ids:
            return
        with self.store.transaction() as db:
            db.execute(f"DELETE FROM preference_pairs WHERE id IN ({','.join('?' * len(ids))})", ids)

    def delete_keys(self, character_id: int, keys: list[str]) -> int:
        if not keys:
            return 0
        with self.store.transaction() as db:
            cur = db.execute(
                f"DELETE FROM preference_pairs WHERE character_id = ? AND pair_key IN ({','.join('?' * len(keys))})",
                [character_id, *keys],
            )
            return cur.rowcount

    def query_ids_with_pairs(self, character_id: int) -> set[int]:
        return {r["query_id"] for r in self.store.db.query(
            "SELECT DISTINCT query_id FROM preference_pairs WHERE character_id = ? AND query_id IS NOT NULL", [character_id])}

    # -- preferences (human labels) ----------------------------------------------------------
    # One current vote per (pair of replies, annotator): a re-vote supersedes the current one (kept
    # as history, `superseded_by` = the vote that replaced it); undo brings the superseded one back.
    def add_preference(self, row: dict) -> int:
        if row["choice"] not in CHOICES:
            raise InputError(f"choice {row['choice']!r} is not one of {', '.join(CHOICES)}")
        lo, hi = sorted((row["message_a_id"], row["message_b_id"]))
        with self.store.transaction() as db:
            current = db.execute(
                "SELECT id FROM preferences WHERE superseded_by IS NULL AND annotator = ? "
                "AND min(message_a_id, message_b_id) = ? AND max(message_a_id, message_b_id) = ?",
                [row["annotator"], lo, hi],
            ).fetchone()
            if current is not None:  # free the one-current slot first (unique index), then point at the new vote
                db.execute("UPDATE preferences SET superseded_by = -1 WHERE id = ?", [current[0]])
            pid = db["preferences"].insert({**row, "created_at": now()}).last_pk
            if current is not None:
                db.execute("UPDATE preferences SET superseded_by = ? WHERE id = ?", [pid, current[0]])
            return pid

    def preference(self, preference_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM preferences WHERE id = ?", [preference_id]))
        if not rows:
            raise InputError(f"no preference with id {preference_id}")
        return rows[0]

    def delete_preference(self, preference_id: int) -> dict | None:
        """Remove a vote; the vote it superseded (if any) becomes current again and is returned."""
        gone = self.preference(preference_id)
        with self.store.transaction() as db:
            db.execute("DELETE FROM preference_pairs WHERE preference_id = ?", [preference_id])
            db.execute("DELETE FROM preferences WHERE id = ?", [preference_id])
            if gone["superseded_by"] is not None:  # a vote from the history: the chain skips it
                db.execute("UPDATE preferences SET superseded_by = ? WHERE superseded_by = ?", [gone["superseded_by"], preference_id])
                return None
            previous = db.execute("SELECT max(id) FROM preferences WHERE superseded_by = ?", [preference_id]).fetchone()[0]
            if previous is None:
                return None
            db.execute("UPDATE preferences SET superseded_by = NULL WHERE id = ?", [previous])
        return self.preference(previous)

    def preferences(self, character_id: int | None = None, *, history: bool = False) -> list[dict]:
        """Current votes (one per pair and annotator), oldest first; `history`: superseded ones too."""
        where = [] if history else ["superseded_by IS NULL"]
        if character_id is not None:
            where.append("character_id = ?")
        else:
            where.append("character_id IN (SELECT id FROM characters WHERE deleted_at IS NULL)")
        sql = "SELECT * FROM preferences" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return list(self.store.db.query(sql, [character_id] if character_id is not None else []))

    # -- messages (conversation trees) ----------------------------------------------------------
    def message(self, message_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM messages WHERE id = ?", [message_id]))
        if not rows:
            raise InputError(f"no message with id {message_id}")
        return rows[0]

    def sibling_groups(self, character_id: int) -> list[list[dict]]:
        """Assistant replies sharing a parent (same history, different replies), groups of 2+."""
        rows = self.store.db.query(
            """SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conversation_id
               WHERE c.character_id = ? AND m.role = 'assistant' AND m.parent_id IS NOT NULL
               ORDER BY m.parent_id, m.id""",
            [character_id],
        )
        groups: dict[int, list[dict]] = {}
        for r in rows:
            groups.setdefault(r["parent_id"], []).append(r)
        return [g for g in groups.values() if len(g) >= 2]

    def prompt_of(self, message: dict) -> tuple[Turn, ...]:
        """The exact prompt a reply was generated from; else its history (root .. parent)."""
        if message.get("prompt_json"):
            return turns_from_json(message["prompt_json"])
        path, parent = [], message["parent_id"]
        while parent is not None:
            row = self.message(parent)
            path.append(Turn(row["role"], row["content"]))
            parent = row["parent_id"]
        return tuple(reversed(path))

    def query_of(self, message: dict) -> str:
        """The user utterance a reply answers (its parent's content)."""
        return self.message(message["parent_id"])["content"] if message["parent_id"] else ""

    # -- queries ------------------------------------------------------------------------------
    def queries(self, character_id: int, split: str) -> list[tuple[int, str]]:
        return [(r["id"], r["text"]) for r in self.store.db.query(
            "SELECT id, text FROM queries WHERE character_id = ? AND split = ? ORDER BY id", [character_id, split])]

    def query_statements(self, character_id: int) -> list[tuple[str, str]]:
        """(train query, statement text it was written for); eval queries stay unseen by training."""
        return [(r["q"], r["s"]) for r in self.store.db.query(
            """SELECT q.text AS q, s.text AS s FROM queries q JOIN statements s ON s.id = q.statement_id
               WHERE q.character_id = ? AND s.enabled AND q.split = 'train' ORDER BY q.id""", [character_id])]

    def entailed_replies(self, character_id: int) -> list[tuple[str, str]]:
        """(query, reply) from teacher NLI rows written to be entailed (and not relabelled otherwise)."""
        return [(r["q"], r["response"]) for r in self.store.db.query(
            """SELECT q.text AS q, t.response FROM teacher_labels t JOIN queries q ON q.id = t.query_id
               JOIN statements s ON s.id = t.statement_id
               WHERE t.character_id = ? AND t.task = 'nli' AND t.intended = 'entailed'
                 AND (t.label IS NULL OR t.label = 'entailed') AND s.enabled AND q.split = 'train'
               ORDER BY t.id""", [character_id])]
