"""Read character files by content: wiki text, statements JSON, Character Card V2/V3 (JSON or PNG).

Every problem raises InputError with one line naming the file and the fix. Nothing here writes
to the database: parsing finishes before storage is touched, so a bad file changes nothing.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError

from .cards import art_from_png
from .validation import MAX_STATEMENT, language_field, statement_list, text_field

MAX_BYTES = 50 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CARD_SPECS = {"chara_card_v2", "chara_card_v3"}


@dataclass
class ParsedCharacter:
    name: str
    language: str = "en"
    source_text: str = ""
    passages: list[str] = field(default_factory=list)
    statements: list[tuple[str, str, int | None]] = field(default_factory=list)  # (text, origin, passage index)
    card: dict | None = None
    kind: str = ""
    art: bytes | None = None  # a card PNG's image without its card chunks (cards.art_from_png)
    describes: int | None = None  # passages[:describes] describe the character: drafts come only from them (None: all)


def read_character_file(path: Path, *, name: str | None = None, language: str | None = None) -> list[ParsedCharacter]:
    """Parse one file into one or more characters (a statements JSON may hold a list)."""
    raw = _read_bytes(path)
    if raw.startswith(PNG_MAGIC):
        parsed = [_from_card(_card_from_png(path, raw), path)]
        parsed[0].art = art_from_png(path, raw)
    else:
        text = _decode(path, raw)
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            parsed = _from_json(path, text)
        elif _json_scalar(stripped):
            raise InputError(f"{path}: holds a bare JSON value ({stripped[:20]!r}), not a character; give a wiki text, statements JSON or card")
        else:
            parsed = [_from_wiki(path, text)]
    if name and len(parsed) > 1:
        raise InputError(f"{path}: --name applies to one character but the file holds {len(parsed)}; drop --name")
    for p in parsed:
        if name:
            p.name = name
        if language:
            p.language = language_field("--language", language)
        elif p.kind != "statements":
            p.language = p.language or guess_language(p.source_text + " ".join(s for s, _, _ in p.statements))
        p.name = _clean_name(path, p.name)
        if not p.statements and p.passages:
            p.statements = draft_statements(p.passages if p.describes is None else p.passages[: p.describes], p.language)
        for text, _, _ in p.statements:
            if len(text) > MAX_STATEMENT:
                raise InputError(f"{path}: a statement of {len(text)} characters ({text[:40]!r}...); "
                                 f"keep a statement to one short fact (< {MAX_STATEMENT} characters) or split the text into sentences")  # fmt: skip
    return parsed


def _json_scalar(text: str) -> bool:
    if len(text) > 200:
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# -- reading --------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); check the path and permissions") from None
    if path.is_dir():
        raise InputError(f"{path}: is a directory; pass the files inside it (e.g. {path}/*.txt)")
    if size > MAX_BYTES:
        raise InputError(f"{path}: {size / 1e6:.0f} MB is over the 50 MB limit; split the text into smaller files")
    if size == 0:
        raise InputError(f"{path}: file is empty; give a wiki text, statements JSON or character card")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror}); check permissions") from None


def _decode(path: Path, raw: bytes) -> str:
    if b"\x00" in raw[:8192]:
        raise InputError(f"{path}: looks binary, not text; give a UTF-8 wiki text, a statements JSON or a card (.json/.png)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 (bad byte at offset {exc.start}); re-save it as UTF-8, e.g. iconv -f GBK -t UTF-8"
        ) from None
    if not text.strip():
        raise InputError(f"{path}: holds only whitespace; give a wiki text, statements JSON or character card")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean_name(path: Path, name: str) -> str:
    name = text_field(f"{path}: name", name, required=False)
    if not name:
        raise InputError(f"{path}: no character name found; pass --name NAME")
    if len(name) > 200:
        raise InputError(f"{path}: character name is {len(name)} characters long; pass a shorter --name")
    return name


# -- wiki text ------------------------------------------------------------------------------
def name_from_filename(path: Path) -> str:
    stem = unicodedata.normalize("NFC", path.stem)
    stem = re.sub(r"^wiki[_\- ]", "", stem, flags=re.IGNORECASE)
    stem = re.sub(r"[_\- ]wiki$", "", stem, flags=re.IGNORECASE)
    return stem.replace("_", " ").strip()


def split_passages(text: str) -> list[str]:
    return [" ".join(p.split()) if "\n" not in p.strip() else p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _from_wiki(path: Path, text: str) -> ParsedCharacter:
    passages = split_passages(text)
    return ParsedCharacter(
        name=name_from_filename(path), language="", source_text="\n\n".join(passages), passages=passages, kind="wiki"
    )


# -- statements JSON ------------------------------------------------------------------------
def _load_json(path: Path, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); fix the file") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to read; a character file is a flat object, fix the file") from None


def _from_json(path: Path, text: str) -> list[ParsedCharacter]:
    data = _load_json(path, text)
    if isinstance(data, dict) and (data.get("spec") in CARD_SPECS or "data" in data and isinstance(data["data"], dict)):
        return [_from_card(data, path)]
    if isinstance(data, dict) and "statements" in data:
        return [_from_statements_obj(path, data, 0)]
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        return [_from_statements_obj(path, d, i) for i, d in enumerate(data)]
    if isinstance(data, dict) and "name" in data and ("description" in data or "personality" in data):
        v1 = _from_card(data, path)  # a V1 card: fields at the top, stored as it came (unknown fields too)
        v1.kind = "chara_card_v1"
        return [v1]
    raise InputError(
        f'{path}: JSON is neither a statements file ({{"name", "statements": [...]}}) nor a character card (spec chara_card_v2/v3)'
    )


def _from_statements_obj(path: Path, obj: dict, index: int) -> ParsedCharacter:
    where = f"{path} (item {index})" if index else str(path)
    cleaned = statement_list(f'{where}: "statements"', obj.get("statements"))
    if not cleaned and not obj.get("source"):
        raise InputError(f'{where}: "statements" is empty; add at least one statement')
    source = text_field(f'{where}: "source"', obj.get("source"), max_len=MAX_BYTES, required=False) if obj.get("source") else ""
    passages = split_passages(source) if source else []
    name = text_field(f"{where}: name", obj.get("name"), required=False)
    language = language_field(f"{where}: language", obj.get("language"))
    return ParsedCharacter(
        name=name,
        language=language or guess_language(" ".join(cleaned) + source),
        source_text=source,
        passages=passages,
        statements=[(s, "import", None) for s in dict.fromkeys(cleaned)],
        kind="statements",
    )


# -- character cards ------------------------------------------------------------------------
def _card_from_png(path: Path, raw: bytes) -> dict:
    from io import BytesIO

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(BytesIO(raw)) as img:
            img.load()
            chunks = dict(getattr(img, "text", {}) or img.info)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: PNG is truncated or corrupt ({exc}); export the card again") from None
    payload = chunks.get("ccv3") or chunks.get("chara")
    if not payload:
        raise InputError(f"{path}: PNG has no character card (no 'chara' or 'ccv3' text chunk); export it as a V2/V3 card")
    try:
        decoded = base64.b64decode(payload, validate=False).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: the card in the PNG is not valid base64 UTF-8 ({exc}); export the card again") from None
    data = _load_json(path, decoded)
    if not isinstance(data, dict):
        raise InputError(f"{path}: the card in the PNG is not a JSON object; export the card again")
    return data


CARD_TEXT_FIELDS = ("description", "personality", "scenario")
CARD_DESCRIBING_FIELDS = ("description", "personality")
"""Card fields about the character itself; a scenario ("A customer walks into her workshop.") or a
first message is context, never a persona statement, so drafts come only from these."""


def _from_card(card: dict, path: Path) -> ParsedCharacter:
    data = card.get("data") if isinstance(card.get("data"), dict) else card
    name = text_field(f"{path}: card name", data.get("name") or card.get("name") or "", required=False)
    for f in CARD_TEXT_FIELDS:
        if data.get(f) is not None and not isinstance(data.get(f), str):
            raise InputError(f"{path}: card field {f!r} is a {type(data.get(f)).__name__}, not text; give it as a string")
    parts = [str(data.get(f) or "").strip() for f in CARD_TEXT_FIELDS]
    passages = [p for part in parts if part for p in split_passages(part)]
    describes = sum(len(split_passages(part)) for f, part in zip(CARD_TEXT_FIELDS, parts, strict=True) if part and f in CARD_DESCRIBING_FIELDS)
    ext = data.get("extensions") if isinstance(data.get("extensions"), dict) else {}
    apc_ext = ext.get("apc_workbench") if isinstance(ext.get("apc_workbench"), dict) else {}
    statements = [(s, "import", None) for s in statement_list(f"{path}: extensions.apc_workbench.statements", apc_ext.get("statements"))]
    language = language_field(f"{path}: extensions.apc_workbench.language", apc_ext.get("language"))
    return ParsedCharacter(
        name=name,
        language=language,
        source_text="\n\n".join(passages),
        passages=passages,
        statements=statements,
        card=card,
        kind=str(card.get("spec") or "card"),
        describes=describes,
    )


# -- offline statement drafting --------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")


def split_sentences(passage: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(passage) if s and s.strip()]


def draft_statements(passages: list[str], language: str) -> list[tuple[str, str, int | None]]:
    """One draft statement per sentence (origin 'split'), for the user to edit or a teacher to redo."""
    out: dict[str, tuple[str, str, int | None]] = {}
    for i, passage in enumerate(passages):
        for sentence in split_sentences(passage):
            sentence = " ".join(sentence.split())
            if len(sentence) >= 8:
                out.setdefault(sentence, (sentence, "split", i))
    return list(out.values())


def guess_language(text: str) -> str:
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if letters and cjk / letters > 0.3 else "en"
