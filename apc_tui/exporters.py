"""Write a character back out: statements JSON, Character Card V2 as JSON or PNG."""

from __future__ import annotations

import base64
import copy
import json
import os
import tempfile
from pathlib import Path

from engine.errors import InputError
from engine.types import Character

FORMATS = ("statements", "card", "card-png")


def statements_json(character: Character) -> dict:
    return {
        "name": character.name,
        "language": character.language,
        "statements": [s.text for s in character.statements if s.enabled],
        "source": character.source_text,
    }


def card_v2(character: Character) -> dict:
    """A chara_card_v2; an imported card keeps every field and extension it came with."""
    original = copy.deepcopy(character.card) if character.card else {}
    data = original.get("data") if isinstance(original.get("data"), dict) else {}
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": data}
    data.setdefault("description", character.source_text)
    for key in ("personality", "scenario", "first_mes", "mes_example", "creator_notes", "system_prompt", "post_history_instructions"):
        data.setdefault(key, "")
    data.setdefault("alternate_greetings", [])
    data.setdefault("tags", [])
    data.setdefault("creator", "")
    data.setdefault("character_version", "")
    data["name"] = character.name
    ext = data.setdefault("extensions", {})
    ext["apc_workbench"] = {"language": character.language, "statements": [s.text for s in character.statements if s.enabled]}
    return card


def export_character(character: Character, fmt: str, out: Path) -> Path:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "statements":
        payload = json.dumps(statements_json(character), ensure_ascii=False, indent=2).encode("utf-8")
    elif fmt == "card":
        payload = json.dumps(card_v2(character), ensure_ascii=False, indent=2).encode("utf-8")
    else:
        payload = _card_png(card_v2(character))
    _atomic_write(out, payload)
    return out


def _card_png(card: dict) -> bytes:
    from io import BytesIO

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8")).decode("ascii"))
    img = Image.new("RGB", (400, 600), (46, 52, 64))
    buf = BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


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
