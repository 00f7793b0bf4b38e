"""The help screen (? / F1): what APC means and every key of the screen it was opened from."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown

ABOUT = """\
## About APC

**APC** (Active-Passive-Constraint) scores how faithful a reply is to the character's persona
statements: a *relevant* statement must be **entailed**, an irrelevant one must only not be
**contradicted**. APC grows with the number of statements, so it is shown beside the count.
**ΔAPC** = APC minus the score of a reply neutral to every statement: near 0 for an uninformative
reply, positive for a faithful one, negative for a contradicting one.

The **WHY** panel lists the statements that separate two candidates most (difference of their
per-statement Δterm) with the relevance (yes), entailment (ent) and contradiction (con)
probabilities behind each.

Screens: **F2** characters · **F3** chat · **F4** annotate · **F5** train · **F6** evaluate.
**Ctrl+P** opens the command palette (every key below is there too), **Ctrl+Q** quits.
Long work runs in the background; training and evaluation run as jobs that survive the app
(`apc jobs list` shows them too).
"""


def keys_table(screen: Screen) -> str:
    rows, seen = [], set()
    generic = {"tab", "shift+tab", "ctrl+c", "super+c", "ctrl+p"}
    actives = [a for a in screen.active_bindings.values()
               if (a.node is screen or a.node is screen.app) and a.binding.key not in generic]  # fmt: skip
    actives.sort(key=lambda a: a.node is screen.app)  # the screen's own keys first
    for active in actives:
        b = active.binding
        if not b.description or b.description in seen:
            continue
        seen.add(b.description)
        key = b.key_display or b.key.replace("question_mark", "?")
        rows.append(f"- `{key}` {b.tooltip or b.description}")
    return "\n".join(rows)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,f1,question_mark", "close", "Close help"),
    ]

    def __init__(self, under: Screen):
        super().__init__(id="help")
        self.under = under

    def compose(self) -> ComposeResult:
        title = getattr(self.under, "LABEL", "") or "the workbench"
        with VerticalScroll(id="help-body"):
            yield Markdown(f"## Keys on {title}\n\n" + keys_table(self.under) + "\n\n" + ABOUT)

    def action_close(self) -> None:
        self.dismiss(None)
