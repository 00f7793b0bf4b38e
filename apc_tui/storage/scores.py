"""APC scores with every per-statement term (apc_scores + apc_terms)."""

from __future__ import annotations

from engine.errors import InputError
from engine.types import ApcScore

from .convert import score_from_rows, score_to_rows
from .db import Store, now


class ScoreRepo:
    def __init__(self, store: Store):
        self.store = store

    def save(
        self,
        score: ApcScore,
        *,
        query: str,
        character_id: int | None = None,
        message_id: int | None = None,
        statement_ids: list[int | None] | None = None,
    ) -> int:
        """Store a score and all its terms in one transaction; returns the score id.

        A message keeps one score per profile: rescoring it with the same profile replaces the old one.
        """
        head, terms = score_to_rows(score, statement_ids)
        with self.store.transaction() as db:
            if message_id is not None:
                db.execute("DELETE FROM apc_scores WHERE message_id = ? AND profile = ?", [message_id, score.profile])
            score_id = db["apc_scores"].insert(
                {**head, "query": query, "character_id": character_id, "message_id": message_id, "created_at": now()}
            ).last_pk
            db["apc_terms"].insert_all([{**t, "score_id": score_id} for t in terms])
        return score_id

    def save_many(self, scores: list[ApcScore], *, query: str, character_id: int | None = None,
                  statement_ids: list[int | None] | None = None) -> list[int]:  # fmt: skip
        with self.store.transaction():
            return [self.save(s, query=query, character_id=character_id, statement_ids=statement_ids) for s in scores]

    def row(self, score_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM apc_scores WHERE id = ?", [score_id]))
        if not rows:
            raise InputError(f"no APC score with id {score_id}")
        return rows[0]

    def get(self, score_id: int) -> ApcScore:
        return self._load(self.row(score_id))

    def _load(self, head: dict) -> ApcScore:
        terms = list(self.store.db.query("SELECT * FROM apc_terms WHERE score_id = ? ORDER BY position", [head["id"]]))
        return score_from_rows(head, terms)

    def latest_for_message(self, message_id: int, profile: str | None = None) -> ApcScore | None:
        return self.latest_for_messages([message_id], profile).get(message_id)

    def latest_for_messages(self, message_ids: list[int], profile: str | None = None) -> dict[int, ApcScore]:
        """The newest score of each message (of `profile`, or of any profile)."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        where = f"message_id IN ({marks})" + (" AND profile = ?" if profile is not None else "")
        params = [*message_ids, *([profile] if profile is not None else [])]
        sql = f"""
        SELECT * FROM apc_scores WHERE id IN (
            SELECT MAX(id) FROM apc_scores WHERE {where} GROUP BY message_id
        )
        """
        return {row["message_id"]: self._load(row) for row in self.store.db.query(sql, params)}

    def for_character(self, character_id: int, limit: int = 50) -> list[dict]:
        """Score heads (no terms), newest first, for lists."""
        sql = "SELECT * FROM apc_scores WHERE character_id = ? ORDER BY id DESC LIMIT ?"
        return list(self.store.db.query(sql, [character_id, limit]))
