"""Write a character back out: statements JSON, a Character Card (V2 or V3) as JSON, or a card PNG.

`card` keeps the spec the card came in (a V3 card stays V3; anything else goes out as V2);
`card-v2` / `card-v3` force one; `card-png` carries both (`chara` V2 and `ccv3` V3 chunks) on the
character's own art. The card logic itself lives in `cards.py`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from engine.errors import InputError
from engine.types import Character

from .cards import card_png, card_same_spec, card_v2, card_v3

FORMATS = ("statements", "card", "card-v2", "card-v3", "card-png")
FORMAT_HELP = "statements | card (the imported spec) | card-v2 | card-v3 | card-png (V2 + V3 chunks, the card's art)"


def statements_json(character: Character) -> dict:
    return {
        "name": character.name,
        "language": character.language,
        "statements": [s.text for s in character.statements if s.enabled],
        "source": character.source_text,
    }


def export_character(character: Character, fmt: str, out: Path, *, art: bytes | None = None,
                     created_at: float | None = None) -> Path:  # fmt: skip
    """Write `character` as `fmt`. `art`: the PNG kept from an imported card PNG (card-png reuses it);
    `created_at`: Unix seconds, the V3 `creation_date` of a card that has none."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "statements":
        payload = _json_bytes(statements_json(character))
    elif fmt == "card":
        payload = _json_bytes(card_same_spec(character, created_at=created_at))
    elif fmt == "card-v2":
        payload = _json_bytes(card_v2(character))
    elif fmt == "card-v3":
        payload = _json_bytes(card_v3(character, created_at=created_at))
    else:
        payload = card_png(character, art, created_at=created_at)
    _atomic_write(out, payload)
    return out


def _json_bytes(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=2).encode("utf-8")


def _atomic_write(out: Path, payload: bytes) -> None:
    out = out.expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, out)
    except OSError as exc:
        raise InputError(f"{out}: cannot write ({exc.strerror}); choose a writable --out path") from None
