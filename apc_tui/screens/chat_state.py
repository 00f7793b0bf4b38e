"""What the chat screen shows, as plain data: the loaded conversation, the user turn on display,
the two candidates shown side by side, where the conversation continues, and this session's votes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ChatState:
    character: str | None = None
    conversation_id: int | None = None
    messages: dict[int, dict] = field(default_factory=dict)  # id -> ChatService.show message dict
    turn_id: int | None = None  # the user turn whose candidates are shown
    pair: tuple[int, int] | None = None  # (A, B) message ids
    votes: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)  # pair -> (choice, preference id)
    history: list[tuple[int, int]] = field(default_factory=list)  # voted pairs, oldest first (for undo)

    def load(self, data: dict, turn_id: int | None = None, pair: tuple[int, int] | None = None) -> None:
        self.character = data.get("character", self.character)
        self.conversation_id = data["id"]
        self.messages = {m["id"]: m for m in data["messages"]}
        users = [m["id"] for m in data["messages"] if m["role"] == "user"]
        self.turn_id = turn_id if turn_id in self.messages else (users[-1] if users else None)
        cands = [m["id"] for m in self.candidates()]
        if pair and all(p in self.messages for p in pair):
            self.pair = pair
        elif len(cands) >= 2:
            self.pair = (cands[-2], cands[-1])
        else:
            self.pair = (cands[0], cands[0]) if cands else None

    def ordered(self) -> list[dict]:
        return [self.messages[i] for i in sorted(self.messages)]

    def candidates(self, turn_id: int | None = None) -> list[dict]:
        turn = self.turn_id if turn_id is None else turn_id
        return [m for m in self.ordered() if m["parent_id"] == turn and m["role"] == "assistant"] if turn else []

    def shown(self) -> tuple[dict | None, dict | None]:
        if not self.pair:
            return None, None
        a, b = self.pair
        return self.messages.get(a), (self.messages.get(b) if b != a else None)

    def path(self, message_id: int | None) -> list[dict]:
        out = []
        while message_id is not None and message_id in self.messages:
            out.append(self.messages[message_id])
            message_id = self.messages[message_id]["parent_id"]
        return out[::-1]

    def path_to_turn(self, continuing: bool = False) -> list[dict]:
        """The turns shown above the candidates; `continuing`: up to the reply the next turn follows."""
        if continuing:
            return self.path(self.continue_from())
        return self.path(self.turn_id)

    def continue_from(self) -> int | None:
        """The reply a new user message follows: the preferred one, else A."""
        a, b = self.shown()
        if a is None:
            return self.turn_id
        choice = self.vote_for((a["id"], b["id"])) if b else None
        return b["id"] if choice == "b" and b else a["id"]

    def vote_for(self, pair: tuple[int, int]) -> str | None:
        found = self.votes.get(pair)
        return found[0] if found else None

    def record_vote(self, pair: tuple[int, int], choice: str | None, preference_id: int | None) -> None:
        if choice is None:
            self.votes.pop(pair, None)
            self.history = [p for p in self.history if p != pair]
            return
        self.votes[pair] = (choice, preference_id)
        self.history = [p for p in self.history if p != pair] + [pair]

    def restore_vote(self, pair: tuple[int, int], choice: str | None, preference_id: int | None) -> None:
        """After an undo: the vote it replaced is current again (kept in the undo history), or none."""
        if choice is None:
            self.record_vote(pair, None, None)
        else:
            self.votes[pair] = (choice, preference_id)

    def last_vote(self) -> tuple[tuple[int, int], int] | None:
        if not self.history:
            return None
        pair = self.history[-1]
        return pair, self.votes[pair][1]

    def cycle(self, step: int) -> None:
        """Show the next (or previous) pair of sibling candidates."""
        cands = [m["id"] for m in self.candidates()]
        if len(cands) < 3 or not self.pair:
            return
        i = cands.index(self.pair[0]) if self.pair[0] in cands else 0
        j = (i + step) % len(cands)
        self.pair = (cands[j], cands[(j + 1) % len(cands)])

    def focus_message(self, message_id: int) -> None:
        m = self.messages.get(message_id)
        if m is None:
            return
        if m["role"] == "user":
            self.turn_id = message_id
            cands = [c["id"] for c in self.candidates()]
            self.pair = (cands[-2], cands[-1]) if len(cands) >= 2 else ((cands[0], cands[0]) if cands else None)
            return
        self.turn_id = m["parent_id"]
        others = [c["id"] for c in self.candidates() if c["id"] != message_id]
        self.pair = (message_id, others[-1]) if others else (message_id, message_id)


class DeltaThrottle:
    """Streamed replies to UI updates: at most one per candidate per `interval` seconds (the first
    at once); `finish(i)` always sends candidate i's complete text, marked done."""

    def __init__(self, send: Callable[[int, str, bool], None], interval: float = 0.05, clock: Callable[[], float] = time.monotonic):
        self.send = send  # send(index, text_so_far, done)
        self.interval = interval
        self.clock = clock
        self.sent_at: dict[int, float] = {}
        self.latest: dict[int, str] = {}

    def __call__(self, index: int, text: str) -> None:
        self.latest[index] = text
        now = self.clock()
        if index not in self.sent_at or now - self.sent_at[index] >= self.interval:
            self.sent_at[index] = now
            self.send(index, text, False)

    def finish(self, index: int) -> None:
        self.send(index, self.latest.get(index, ""), True)


def prompt_text(m: dict) -> str:
    """The exact prompt of a reply, with how it was made."""
    lines = [
        f"model {m.get('model_spec') or '?'} · method {m.get('method') or '?'}" + (f" · k {m['k']}" if m.get("k") else ""),
        f"params {m.get('params') or {}}",
    ]
    if m.get("origin") == "edited":
        lines.append("this reply was written by hand (an ideal response); the prompt is the one of the reply it replaced")
    if m.get("retrieved"):
        lines.append("retrieved statements:")
        lines += [f"  • {s}" for s in m["retrieved"]]
    lines.append("")
    for turn in m.get("prompt") or []:
        lines.append(f"── {turn['role']} " + "─" * 40)
        lines.append(turn["content"])
    if not m.get("prompt"):
        lines.append("(no prompt stored for this reply)")
    return "\n".join(lines)
