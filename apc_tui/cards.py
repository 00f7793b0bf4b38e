"""Character Card V1 / V2 / V3 (SillyTavern `chara_card_v2`, RisuAI `chara_card_v3`) and card PNGs.

A stored card is the file's own JSON, unchanged: a V2/V3 object (`spec`, `spec_version`, `data`, any
other top-level keys) or a V1 object (the fields at the top). Exports start from it, so every field
the workbench does not know (top level, `data`, `extensions`, a lorebook) goes back out as it came in;
only `name`, the V3 dates and `extensions.apc_workbench` are written over.

PNG cards carry the card as base64 UTF-8 JSON in tEXt chunks: `chara` (V2) and `ccv3` (V3; preferred
on import). The image itself is the character's art: on import the PNG is kept with the card chunks
removed (chunk by chunk, never re-encoded), and an export adds fresh chunks to those same bytes.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
import time
import zlib
from pathlib import Path

from engine.errors import InputError
from engine.types import Character

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CARD_CHUNKS = ("chara", "ccv3")
TEXT_CHUNK_TYPES = (b"tEXt", b"zTXt", b"iTXt")

V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
V2_DEFAULTS: dict = {
    "name": "", "description": "", "personality": "", "scenario": "", "first_mes": "", "mes_example": "",
    "creator_notes": "", "system_prompt": "", "post_history_instructions": "", "alternate_greetings": [],
    "tags": [], "creator": "", "character_version": "", "extensions": {},
}  # fmt: skip
"""Every V2 `data` field (`character_book` is optional and kept only when the card has one)."""
V3_DEFAULT_ASSETS = [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}]
"""What the V3 spec says an absent `assets` means: the card's own image is the main icon."""
V3_NEW_FIELDS = ("group_only_greetings", "assets", "nickname", "creator_notes_multilingual", "source",
                 "creation_date", "modification_date")  # fmt: skip
V3_BACKFILL_NOTE = (
    "This character card is Character Card V3, but it is loaded as a Character Card V2. "
    "Please use a Character Card V3 compatible application to use this character card properly."
)


# -- the stored card ---------------------------------------------------------------------------
def card_spec(card: dict | None) -> str:
    """chara_card_v3 | chara_card_v2 | chara_card_v1 | "" (no card: imported from text or statements)."""
    if not card:
        return ""
    spec = card.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3") and isinstance(card.get("data"), dict):
        return str(spec)
    return "chara_card_v1" if spec in (None, "chara_card_v1") else str(spec)


def _parts(card: dict | None) -> tuple[dict, dict]:
    """(top-level fields other than spec/spec_version/data, data fields) of a stored card, deep-copied."""
    if not card:
        return {}, {}
    card = copy.deepcopy(card)
    if isinstance(card.get("data"), dict) and card.get("spec") != "chara_card_v1":
        data = card.pop("data")
        card.pop("spec", None)
        card.pop("spec_version", None)
        return card, data
    if card.get("spec") == "chara_card_v1" and isinstance(card.get("data"), dict):
        card = card["data"]  # an older import stored V1 cards wrapped as {"spec": "chara_card_v1", "data": {...}}
    card.pop("spec", None)
    return card, {k: card[k] for k in card if k in V2_DEFAULTS or k == "character_book"}


def _data(character: Character, data: dict) -> dict:
    out = {**copy.deepcopy(V2_DEFAULTS), **data}
    out["name"] = character.name
    if "description" not in data:  # a character imported from text or statements: its source text
        out["description"] = character.source_text
    if not isinstance(out.get("extensions"), dict):
        out["extensions"] = {}
    out["extensions"]["apc_workbench"] = {
        "language": character.language,
        "statements": [s.text for s in character.statements if s.enabled],
    }
    return out


def _assemble(spec: str, version: str, root: dict, data: dict) -> dict:
    for key in V1_FIELDS:  # a card that mirrored its V1 fields at the top keeps them in step with `data`
        if key in root:
            root[key] = data.get(key, root[key])
    return {**root, "spec": spec, "spec_version": version, "data": data}


def card_v2(character: Character) -> dict:
    """A chara_card_v2 with every V2 field; fields it does not define (V3 ones included) are kept."""
    root, data = _parts(character.card)
    return _assemble("chara_card_v2", "2.0", root, _data(character, data))


def card_v3(character: Character, *, created_at: float | None = None, now: float | None = None) -> dict:
    """A chara_card_v3 with every V3 field. `created_at` (Unix seconds) fills `creation_date` when the
    card has none; `modification_date` is the export time (`now`), as the spec asks."""
    root, data = _parts(character.card)
    previous_name = data.get("name")
    data = _data(character, data)
    data.setdefault("group_only_greetings", [])
    data.setdefault("assets", copy.deepcopy(V3_DEFAULT_ASSETS))
    if data.get("nickname") in (None, previous_name):  # the spec reads an absent nickname as the name,
        data["nickname"] = character.name  # so a defaulted one follows a rename
    data.setdefault("creator_notes_multilingual", {})
    data.setdefault("source", [])
    if not isinstance(data.get("creation_date"), (int, float)):
        data["creation_date"] = int(created_at or 0)  # 0: unknown, as the spec allows
    data["modification_date"] = int(time.time() if now is None else now)
    return _assemble("chara_card_v3", "3.0", root, data)


def card_same_spec(character: Character, **dates) -> dict:
    """The card in the spec it was imported as: a V3 card stays V3; V1, V2 and non-card characters go out as V2."""
    return card_v3(character, **dates) if card_spec(character.card) == "chara_card_v3" else card_v2(character)


def png_card_chunks(character: Character, **dates) -> dict[str, str]:
    """The two tEXt chunks of a card PNG: `chara` (V2, for older readers) and `ccv3` (V3)."""
    v2 = card_v2(character)
    if card_spec(character.card) == "chara_card_v3":  # a V3 card backfilled as V2 says so (CCv3 spec)
        notes = v2["data"].get("creator_notes") or ""
        v2["data"]["creator_notes"] = V3_BACKFILL_NOTE + ("\n\n" + notes if notes else "")
    return {"chara": _b64_json(v2), "ccv3": _b64_json(card_v3(character, **dates))}


def _b64_json(obj: dict) -> str:
    return base64.b64encode(json.dumps(obj, ensure_ascii=False).encode("utf-8")).decode("ascii")


# -- PNG chunks --------------------------------------------------------------------------------
def png_chunks(raw: bytes, where: str = "PNG") -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, in order. Raises InputError on a truncated or corrupt stream."""
    if not raw.startswith(PNG_MAGIC):
        raise InputError(f"{where}: not a PNG file; give a .png card")
    chunks, pos = [], len(PNG_MAGIC)
    while pos < len(raw):
        if pos + 8 > len(raw):
            raise InputError(f"{where}: PNG is truncated inside a chunk header; export the card again")
        length, ctype = struct.unpack(">I4s", raw[pos : pos + 8])
        end = pos + 12 + length
        if end > len(raw):
            raise InputError(f"{where}: PNG is truncated inside a {ctype.decode('latin-1')!r} chunk; export the card again")
        chunks.append((ctype, raw[pos + 8 : pos + 8 + length]))
        pos = end
        if ctype == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise InputError(f"{where}: PNG has no IHDR/IEND chunk; export the card again")
    return chunks


def _chunk_bytes(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def _keyword(data: bytes) -> str:
    return data.split(b"\x00", 1)[0].decode("latin-1")


def strip_card_chunks(raw: bytes, where: str = "PNG") -> bytes:
    """The PNG without its card text chunks (`chara`, `ccv3`): the art alone, pixels untouched."""
    kept = [c for c in png_chunks(raw, where) if not (c[0] in TEXT_CHUNK_TYPES and _keyword(c[1]) in CARD_CHUNKS)]
    return PNG_MAGIC + b"".join(_chunk_bytes(t, d) for t, d in kept)


def with_text_chunks(raw: bytes, texts: dict[str, str]) -> bytes:
    """`raw` with one tEXt chunk per item (replacing chunks of the same keyword), placed before IEND."""
    chunks = [c for c in png_chunks(raw) if not (c[0] in TEXT_CHUNK_TYPES and _keyword(c[1]) in texts)]
    added = [(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")) for key, value in texts.items()]
    chunks = chunks[:-1] + added + chunks[-1:]
    return PNG_MAGIC + b"".join(_chunk_bytes(t, d) for t, d in chunks)


def default_art() -> bytes:
    """The plain 400x600 image of a character that came with no art."""
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (400, 600), (46, 52, 64)).save(buf, format="PNG")
    return buf.getvalue()


def card_png(character: Character, art: bytes | None = None, **dates) -> bytes:
    """A card PNG: the character's art (or the plain image) with `chara` and `ccv3` chunks."""
    return with_text_chunks(art or default_art(), png_card_chunks(character, **dates))


def art_from_png(path: Path, raw: bytes) -> bytes:
    """The art of an imported card PNG (its card chunks removed), to keep with the character."""
    return strip_card_chunks(raw, str(path))
