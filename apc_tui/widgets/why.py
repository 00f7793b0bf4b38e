"""The WHY panel: the statements that separate two replies most (difference of their Δterm),
with the relevance (yes), entailment (ent) and contradiction (con) probabilities as bars."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from .format import bar, printable, prob, signed



def separating_terms(score_a: dict, score_b: dict) -> list[tuple[float, dict, dict]]:
    """(ΔtermA − ΔtermB, term A, term B) per statement both were scored on, largest |difference| first."""
    by_b = {t["statement"]: t for t in score_b.get("terms", [])}
    rows = [(ta["delta_term"] - by_b[ta["statement"]]["delta_term"], ta, by_b[ta["statement"]])
            for ta in score_a.get("terms", []) if ta["statement"] in by_b]  # fmt: skip
    return sorted(rows, key=lambda r: (-abs(r[0]), r[1]["statement"]))


def _p(value: float, style: str, width: int = 4) -> Text:
    return Text.assemble((bar(value, width), style), (prob(value), "dim"))


class WhyTable(DataTable):
    """Fed with two score dicts (engine ApcScore.to_dict shape); empty when either is missing.
    `v` on a statement row asks the screen to open the verdict dialog (teach the scorer)."""

    BINDINGS = [Binding("v", "teach", "Your verdict")]

    class TeachRequested(Message):
        """The user wants to give their own verdict on this statement (screens/teach.py)."""

        def __init__(self, statement: str, term_a: dict, term_b: dict) -> None:
            super().__init__()
            self.statement, self.term_a, self.term_b = statement, term_a, term_b

    def __init__(self, *, id: str | None = None, sides: tuple[str, str] = ("A", "B")):
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        a, b = sides
        self.border_title = f"WHY {a} vs {b}"
        self.columns_ = (f"{a}−{b}", "statement", "yes", f"{a} ent", f"{a} con", f"{b} ent", f"{b} con")

    def on_mount(self) -> None:
        for label in self.columns_:
            self.add_column(label, key=label)

    def show(self, score_a: dict | None, score_b: dict | None, *, statement_width: int = 40, name: str = "") -> None:
        """`name`: the character's name, shortened to its first word in statements that do not fit."""
        self.clear()
        self.terms_: list[tuple[float, dict, dict]] = []
        if not score_a or not score_b:
            self.border_subtitle = "needs two scored replies"
            return
        rows = separating_terms(score_a, score_b)
        self.terms_ = rows
        self.border_subtitle = f"{len(rows)} statements · ΔAPC {self.columns_[0]} {signed(score_a['delta_apc'] - score_b['delta_apc'])}"
        for diff, ta, tb in rows:
            statement = printable(ta["statement"])
            if len(statement) > statement_width and name and len(name.split()) > 1:
                statement = statement.replace(name, name.split()[0])
            if len(statement) > statement_width:
                statement = statement[: statement_width - 1] + "…"
            self.add_row(
                Text(signed(diff), style="bold green" if round(diff, 2) > 0 else "bold red" if round(diff, 2) < 0 else "dim"),
                statement,
                _p(ta["p_yes"], "cyan"),
                _p(ta["p_entailed"], "green"),
                _p(ta["p_contradicted"], "red"),
                _p(tb["p_entailed"], "green"),
                _p(tb["p_contradicted"], "red"),
            )

    def action_teach(self) -> None:
        rows = getattr(self, "terms_", [])
        if 0 <= self.cursor_row < len(rows):
            _, ta, tb = rows[self.cursor_row]
            self.post_message(self.TeachRequested(ta["statement"], ta, tb))
