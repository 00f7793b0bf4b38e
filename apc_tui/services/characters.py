"""Character use cases: import, list, show, edit statements, export, delete, demo seeding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.resources import data_path
from engine.types import Character

from ..exporters import export_character
from ..importers import read_character_file
from ..storage import Store
from ..storage.characters import CharacterRepo

DEMO_ON_FIRST_RUN = ("maelle_kervran", "kaito_renn", "gu_minglan")


@dataclass(frozen=True)
class ImportResult:
    path: str
    name: str
    created: bool
    statements: int
    drafted: int
    kind: str
    added: int = 0  # statements new in this import
    disabled: int = 0  # statements no longer in the file: disabled, kept
    kept: int = 0  # statements unchanged (same ids)

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def deletion_summary(counts: dict[str, int]) -> str:
    """One line: what goes with a character (the CLI prompt and the TUI dialog say the same)."""
    paid = f"{counts['teacher_calls']} teacher calls ({counts['teacher_tokens']} tokens paid for)"
    return (f"{counts['statements']} statements, {counts['conversations']} conversations with {counts['messages']} messages, "
            f"{counts['labels']} labels, {counts['pairs']} training pairs, {paid}")  # fmt: skip


class CharacterService:
    def __init__(self, store: Store):
        self.store = store
        self.repo = CharacterRepo(store)

    def import_files(self, paths: list[Path], *, name: str | None = None, language: str | None = None) -> list[ImportResult]:
        """Parse every file first, then store: one bad file stores nothing."""
        if name and len(paths) > 1:
            raise InputError("--name applies to a single file; import the files one at a time to name each")
        parsed = [(p, c) for p in paths for c in read_character_file(p, name=name, language=language)]
        results = []
        for path, c in parsed:
            change = self.repo.import_character(
                c.name,
                language=c.language,
                source_text=c.source_text,
                passages=c.passages,
                statements=c.statements,
                card=c.card,
                source_file=path.name,
                art=c.art,
            )
            results.append(
                ImportResult(str(path), c.name, change.created, len(c.statements), sum(1 for _, o, _ in c.statements if o == "split"),
                             c.kind, change.added, change.disabled, change.kept)  # fmt: skip
            )
        return results

    def list(self) -> list[dict]:
        return self.repo.summaries()

    def get(self, name: str) -> Character:
        return self.repo.get(name)

    def show(self, name: str) -> dict:
        c = self.repo.get(name)
        return {
            "id": c.id,
            "name": c.name,
            "language": c.language,
            "source_text": c.source_text,
            "statements": [
                {"id": s.id, "text": s.text, "origin": s.origin, "enabled": s.enabled, "source_passage": s.source_passage}
                for s in c.statements
            ],
        }

    def export(self, name: str, fmt: str, out: Path) -> Path:
        """Write the character as `fmt` (see exporters.FORMATS); card-png reuses the art of its card PNG."""
        from datetime import datetime

        character = self.repo.get(name)
        created = datetime.fromisoformat(self.repo.row(name)["created_at"]).timestamp()
        art = self.repo.art(character.id) if fmt == "card-png" else None
        return export_character(character, fmt, out, art=art, created_at=created)

    def deletion_counts(self, name: str) -> dict[str, int]:
        return self.repo.deletion_counts(name)

    def delete(self, name: str) -> None:
        """Soft delete: restorable with `restore` until purged."""
        self.repo.delete(name)

    def deleted(self) -> list[dict]:
        return self.repo.deleted()

    def restore(self, name: str) -> None:
        self.repo.restore(name)

    def purge(self, name: str) -> None:
        self.repo.purge(name)

    def add_statement(self, name: str, text: str) -> int:
        return self.repo.add_statement(name, text)

    def edit_statement(self, statement_id: int, text: str) -> None:
        self.repo.edit_statement(statement_id, text)

    def set_enabled(self, statement_id: int, enabled: bool) -> None:
        self.repo.set_enabled(statement_id, enabled)

    # -- demo characters -----------------------------------------------------------------
    def demo_files(self) -> list[Path]:
        folder = data_path("characters")
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def seed_demo(self, slugs: tuple[str, ...] = DEMO_ON_FIRST_RUN) -> list[str]:
        """Load a few demo characters into an empty database so the app opens on something real."""
        if self.repo.names():
            return []
        files = {p.stem: p for p in self.demo_files()}
        chosen = [files[s] for s in slugs if s in files] or list(files.values())[:3]
        return [r.name for r in self.import_demo(chosen)] if chosen else []

    def import_demo(self, files: list[Path]) -> list[ImportResult]:
        """Import demo characters with their shipped teacher utterances and NLI responses,
        so pairs, EU and evaluation run on real queries from the first minute."""
        results = self.import_files(files)
        for path, result in zip(files, results, strict=True):
            src = data_path("teacher", "src", f"{path.stem}.jsonl")
            if src.is_file():
                rows = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
                self.repo.add_teacher_rows(result.name, rows, teacher="shipped")
        return results

    def demo_catalogue(self) -> list[dict]:
        out = []
        for p in self.demo_files():
            d = json.loads(p.read_text(encoding="utf-8"))
            out.append({"slug": p.stem, "name": d["name"], "language": d["language"], "summary": d.get("summary", ""), "path": str(p)})
        return out
