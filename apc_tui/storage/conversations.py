"""Conversations as a tree of messages: siblings (same parent) are alternative candidates."""

from __future__ import annotations

from engine.errors import InputError
from engine.types import Turn

from .convert import candidate_to_row
from .db import Store, now
from .scores import ScoreRepo


class ConversationRepo:
    def __init__(self, store: Store):
        self.store = store
        self.scores = ScoreRepo(store)

    # -- conversations -----------------------------------------------------------------
    def create(self, character_id: int, title: str = "") -> int:
        with self.store.transaction() as db:
            return db["conversations"].insert({"character_id": character_id, "title": title, "created_at": now()}).last_pk

    def row(self, conversation_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM conversations WHERE id = ?", [conversation_id]))
        if not rows:
            raise InputError(f"no conversation with id {conversation_id} (see `apc conversations list`)")
        return rows[0]

    def summaries(self, character_id: int | None = None, limit: int = 50) -> list[dict]:
        where = "WHERE ch.deleted_at IS NULL" + (" AND c.character_id = ?" if character_id is not None else "")
        sql = f"""
        SELECT c.id, c.title, ch.name AS character, c.created_at,
               (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS messages,
               (SELECT m.content FROM messages m WHERE m.conversation_id = c.id AND m.role = 'user'
                ORDER BY m.id LIMIT 1) AS first_query,
               (SELECT MAX(m.created_at) FROM messages m WHERE m.conversation_id = c.id) AS last_at
        FROM conversations c JOIN characters ch ON ch.id = c.character_id
        {where} ORDER BY c.id DESC LIMIT ?
        """
        params = ([character_id] if character_id is not None else []) + [limit]
        return list(self.store.db.query(sql, params))

    def delete(self, conversation_id: int) -> None:
        self.row(conversation_id)
        with self.store.transaction() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    # -- messages ------------------------------------------------------------------------
    def message(self, message_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM messages WHERE id = ?", [message_id]))
        if not rows:
            raise InputError(f"no message with id {message_id} (see `apc conversations show ID`)")
        return rows[0]

    def messages(self, conversation_id: int) -> list[dict]:
        return list(self.store.db.query("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", [conversation_id]))

    def children(self, conversation_id: int, parent_id: int | None) -> list[dict]:
        if parent_id is None:
            sql, params = "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS NULL ORDER BY id", [conversation_id]
        else:
            sql, params = "SELECT * FROM messages WHERE parent_id = ? ORDER BY id", [parent_id]
        return list(self.store.db.query(sql, params))

    def siblings(self, message_id: int) -> list[dict]:
        m = self.message(message_id)
        return self.children(m["conversation_id"], m["parent_id"])

    def path(self, message_id: int) -> list[dict]:
        """Messages from the root down to `message_id` (inclusive)."""
        self.message(message_id)
        sql = """
        WITH RECURSIVE up(id, parent_id, depth) AS (
            SELECT id, parent_id, 0 FROM messages WHERE id = ?
            UNION ALL SELECT m.id, m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.parent_id
        )
        SELECT messages.* FROM up JOIN messages ON messages.id = up.id ORDER BY up.depth DESC
        """
        return list(self.store.db.query(sql, [message_id]))

    def turns(self, message_id: int | None) -> list[Turn]:
        return [] if message_id is None else [Turn(m["role"], m["content"]) for m in self.path(message_id)]

    def latest_leaf(self, conversation_id: int) -> int | None:
        """Where a conversation continues by default: the first candidate of its newest turn."""
        rows = list(self.store.db.query("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT 1", [conversation_id]))
        if not rows:
            return None
        return self.children(conversation_id, rows[0]["parent_id"])[0]["id"] if rows[0]["role"] == "assistant" else rows[0]["id"]

    def add_user(self, conversation_id: int, parent_id: int | None, content: str) -> int:
        with self.store.transaction() as db:
            return db["messages"].insert(
                {"conversation_id": conversation_id, "parent_id": parent_id, "role": "user", "content": content,
                 "origin": "user", "created_at": now()}
            ).last_pk  # fmt: skip

    def add_candidates(
        self,
        conversation_id: int,
        parent_id: int,
        candidates: list,
        *,
        k: int | None,
        query: str,
        character_id: int | None,
        statement_ids: list[int | None] | None,
    ) -> list[int]:
        """Store every candidate and its APC score (all terms) in one transaction."""
        ids = []
        with self.store.transaction() as db:
            for c in candidates:
                row = {**candidate_to_row(c, k), "conversation_id": conversation_id, "parent_id": parent_id, "created_at": now()}
                mid = db["messages"].insert(row).last_pk
                if c.score is not None:
                    self.scores.save(c.score, query=query, character_id=character_id, message_id=mid, statement_ids=statement_ids)
                ids.append(mid)
        return ids

    def add_edited(self, original_id: int, content: str) -> int:
        """An ideal response written by the user: a new sibling of `original_id` with origin 'edited'."""
        orig = self.message(original_id)
        if orig["role"] != "assistant":
            raise InputError(f"message {original_id} is a user turn; edit an assistant reply (or branch with a new query)")
        keep = ("conversation_id", "parent_id", "model_spec", "method", "k", "params_json", "prompt_json", "retrieved_json")
        with self.store.transaction() as db:
            return db["messages"].insert(
                {**{key: orig[key] for key in keep}, "role": "assistant", "content": content, "origin": "edited", "created_at": now()}
            ).last_pk
