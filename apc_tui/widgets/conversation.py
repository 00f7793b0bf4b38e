"""The conversation tree of a character (every conversation, every branch) and the linear history
of the current path. Both are fed plain dicts by the chat screen."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static, Tree

from .format import printable, signed


def _short(text: str, width: int) -> str:
    text = " ".join(printable(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def message_label(m: dict, width: int = 40) -> Text:
    if m["role"] == "user":
        return Text.assemble(("› ", "bold cyan"), _short(m["content"], width))
    score = m.get("score")
    head = f"{signed(score['delta_apc'])} " if score else "  ·   "
    style = "green" if score and score["delta_apc"] > 0 else "red" if score and score["delta_apc"] < 0 else "dim"
    mark = "✎ " if m.get("origin") == "edited" else ""
    return Text.assemble((head, style), mark, _short(m["content"], width))


class ConversationTree(Tree):
    """Root: the character; children: its conversations; under the current one, its message tree.

    Node data: ("conversation", id) or ("message", id).
    """

    def __init__(self, *, id: str | None = None):
        super().__init__("conversations", id=id)
        self.show_root = False
        self.guide_depth = 2

    def load(self, conversations: list[dict], current: int | None, messages: list[dict], focus_message: int | None) -> None:
        self.clear()
        focus_node = None
        for conv in conversations:
            title = _short(conv.get("title") or conv.get("first_query") or "(empty)", 30)
            node = self.root.add(Text.assemble((f"#{conv['id']} ", "bold"), title), data=("conversation", conv["id"]))
            if conv["id"] != current:
                node.allow_expand = False
                continue
            nodes = {None: node}
            for m in messages:  # ordered by id: parents come first
                parent = nodes.get(m["parent_id"], node)
                nodes[m["id"]] = parent.add(message_label(m), data=("message", m["id"]), expand=True)
            for n in nodes.values():
                if not n.children:
                    n.allow_expand = False
            node.expand()
            focus_node = nodes.get(focus_message, node)
        if focus_node is not None:
            self.call_after_refresh(self.move_cursor, focus_node)


class HistoryView(Static):
    """The turns above the candidates: the path from the root to the current user turn."""

    def show(self, path: list[dict], character: str) -> None:
        if not path:
            self.update(Text("New conversation: type below; two replies come back, scored by APC.", style="dim"))
            return
        out = Text()
        for m in path:
            who = ("you", "bold cyan") if m["role"] == "user" else (character, "bold magenta")
            out.append_text(Text.assemble(who, ": ", printable(m["content"]), "\n"))
        out.rstrip()
        self.update(out)
