"""Annotation queues for the TUI: blind pairs of sibling replies still to be labelled by an
annotator, and the labelled pairs where APC and the human disagree most.

Labels are written through `TrainingService.record_preference` (which keeps the DPO set in step);
this module only reads.
"""

from __future__ import annotations

from itertools import combinations

from ..storage.characters import CharacterRepo
from ..storage.conversations import ConversationRepo
from ..storage.convert import message_to_dict
from ..storage.pairs import PairRepo
from ..storage.scores import ScoreRepo


class AnnotationService:
    def __init__(self, services):
        self.store = services.store
        self.characters = CharacterRepo(self.store)
        self.pairs = PairRepo(self.store)
        self.scores = ScoreRepo(self.store)
        self.conversations = ConversationRepo(self.store)

    def _all_pairs(self, character_id: int) -> list[tuple[dict, dict]]:
        return [(a, b) for group in self.pairs.sibling_groups(character_id) for a, b in combinations(group, 2)]

    def queue(self, character: str, annotator: str) -> list[dict]:
        """Sibling-reply pairs `annotator` has not labelled yet, oldest turn first."""
        cid = self.characters.row(character)["id"]
        done = {_key(p["message_a_id"], p["message_b_id"]) for p in self.pairs.preferences(cid) if p["annotator"] == annotator}
        todo = [(a, b) for a, b in self._all_pairs(cid) if _key(a["id"], b["id"]) not in done]
        return self._items(todo)

    def progress(self, character: str, annotator: str) -> tuple[int, int]:
        """(pairs labelled by `annotator`, all sibling pairs) for the character."""
        cid = self.characters.row(character)["id"]
        keys = {_key(a["id"], b["id"]) for a, b in self._all_pairs(cid)}
        done = {_key(p["message_a_id"], p["message_b_id"]) for p in self.pairs.preferences(cid) if p["annotator"] == annotator}
        return len(keys & done), len(keys)

    def disagreements(self, character: str, limit: int = 100) -> list[dict]:
        """Labelled pairs where the latest human choice goes against APC, biggest APC gap first."""
        cid = self.characters.row(character)["id"]
        latest: dict[tuple[int, int], dict] = {}
        for p in self.pairs.preferences(cid):  # oldest first: the latest label per pair wins
            latest[_key(p["message_a_id"], p["message_b_id"])] = p
        ids = sorted({i for k in latest for i in k})
        scores = self.scores.latest_for_messages(ids)
        found = []
        for p in latest.values():
            sa, sb = scores.get(p["message_a_id"]), scores.get(p["message_b_id"])
            if p["choice"] not in ("a", "b") or sa is None or sb is None or sa.apc == sb.apc:
                continue
            apc_choice = "a" if sa.apc > sb.apc else "b"
            if apc_choice != p["choice"]:
                found.append((abs(sa.apc - sb.apc), p))
        found.sort(key=lambda t: -t[0])
        rows = [(self.pairs.message(p["message_a_id"]), self.pairs.message(p["message_b_id"])) for _, p in found[:limit]]
        items = self._items(rows)
        for item, (gap, p) in zip(items, found, strict=False):
            item.update(human=p["choice"], annotator=p["annotator"], apc_gap=gap, preference_id=p["id"])
        return items

    def labels_for(self, message_ids: list[int], annotator: str) -> dict[tuple[int, int], dict]:
        """The latest label by `annotator` on each pair of these messages: (a id, b id) -> preference row."""
        ids = set(message_ids)
        if not ids:
            return {}
        conversation = self.conversations.row(self.pairs.message(min(ids))["conversation_id"])
        out: dict[tuple[int, int], dict] = {}
        for p in self.pairs.preferences(conversation["character_id"]):
            if p["annotator"] == annotator and p["message_a_id"] in ids and p["message_b_id"] in ids:
                out[(p["message_a_id"], p["message_b_id"])] = p
        return out

    def _items(self, pairs: list[tuple[dict, dict]]) -> list[dict]:
        from engine.backends import is_meaningless

        scores = self.scores.latest_for_messages(sorted({m["id"] for pair in pairs for m in pair}))
        out = []
        for a, b in pairs:
            msgs = []
            for m in (a, b):
                d = message_to_dict(m)
                d["meaningless"] = is_meaningless(m.get("model_spec"))
                s = scores.get(m["id"])
                d["score"] = {**s.to_dict(), "n_statements": s.n_statements, "profile": s.profile} if s else None
                msgs.append(d)
            history = [{"role": m["role"], "content": m["content"]} for m in self.conversations.path(a["parent_id"])]
            out.append({"a": msgs[0], "b": msgs[1], "history": history, "query": history[-1]["content"] if history else ""})
        return out


def _key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)
