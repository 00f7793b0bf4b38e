"""How much to trust an APC score: the scorer profile, and for the shipped `embedded` scorer what
was measured on characters it never saw (data/discriminators/REPORT.json), per language.

Plain data and text, no UI imports: the CLI and the TUI show the same badge and caveat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

SWITCH = ('For scores you can trust more: APC_PROFILE=multilingual apc (en + zh), APC_PROFILE=paper apc (English), '
          'APC_PROFILE=judge:openai:MODEL apc (an LLM judge), or profile = "..." in config.toml')  # fmt: skip
CHANCE = 1 / 3  # three replies ranked: chance of putting the faithful one first


@lru_cache(maxsize=1)
def embedded_report() -> dict:
    """The recorded held-out measurements of the shipped embedded discriminators ({} when absent)."""
    from engine.resources import data_path

    path = data_path("discriminators", "REPORT.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


@dataclass(frozen=True)
class Trust:
    profile: str
    language: str
    badge: str  # short: "scorer embedded ⚠" / "scorer multilingual"
    caveat: str  # one or two sentences; "" when there is nothing to say
    short: str  # the caveat in about two 80-column lines (screens); "" when nothing to say
    line: str  # badge and measured quality in one short line (narrow panes)
    warn_training: bool  # building pairs or training on these scores is not advised

    def warning(self, action: str) -> str:
        """The line shown before `action` (e.g. "building DPO pairs") when warn_training is set."""
        return f"{self.caveat} {action.capitalize()} on these scores would teach noise." if self.warn_training else ""


def trust_for(profile: str | None, language: str | None) -> Trust:
    profile = (profile or "embedded").strip()
    language = (language or "en").strip() or "en"
    if profile != "embedded":
        return Trust(profile, language, f"scorer {profile}", "", "", f"scorer {profile}", False)
    ranking = (embedded_report().get("ranking") or {}).get("most_faithful_first") or {}
    first = ranking.get(language)
    lang = {"en": "English", "zh": "Chinese"}.get(language, language)
    if first is None:
        measured = f"it was not measured on {lang} characters"
        short = f"not measured on {lang}"
        line = f"scorer embedded ⚠ · not measured on {lang}"
        weak = True
    else:
        measured = (f"on {lang} characters it never saw it ranks the faithful of three replies first "
                    f"{first:.0%} of the time (chance {CHANCE:.0%})")  # fmt: skip
        short = f"puts the faithful reply first {first:.0%} on unseen {lang} characters (chance {CHANCE:.0%})"
        line = f"scorer embedded ⚠ · faithful first {first:.0%} ({language}, chance {CHANCE:.0%})"
        weak = first < CHANCE + 0.1
    caveat = f"embedded scorer (small offline model): {measured}; it can read a faithful reply as a contradiction. {SWITCH}"
    short = f"⚠ embedded scorer {short} · try APC_PROFILE=multilingual (or paper, judge:…)"
    return Trust(profile, language, "scorer embedded ⚠", caveat, short, line, weak)
