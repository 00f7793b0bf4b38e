"""Row <-> engine dataclass conversion: the one place that knows both shapes."""

from __future__ import annotations

import json

from engine.types import ApcScore, Character, StatementScore, Statement, Turn


def statement_from_row(row: dict, passage: str | None = None) -> Statement:
    return Statement(
        id=row["id"],
        text=row["text"],
        source_passage=passage,
        origin=row["origin"],
        enabled=bool(row["enabled"]),
    )


def character_from_row(row: dict, statements: list[Statement]) -> Character:
    return Character(
        id=row["id"],
        name=row["name"],
        language=row["language"],
        source_text=row["source_text"],
        statements=tuple(statements),
        card=json.loads(row["card_json"]) if row.get("card_json") else None,
    )


def turns_to_json(turns) -> str:
    return json.dumps([{"role": t.role, "content": t.content} for t in turns], ensure_ascii=False)


def turns_from_json(text: str | None) -> tuple[Turn, ...]:
    return tuple(Turn(d["role"], d["content"]) for d in json.loads(text or "[]"))


def score_to_rows(score: ApcScore, statement_ids: list[int | None] | None = None) -> tuple[dict, list[dict]]:
    """(apc_scores row without ids/foreign keys, apc_terms rows without score_id)."""
    head = {
        "profile": score.profile,
        "response": score.response,
        "n_statements": score.n_statements,
        "apc": score.apc,
        "delta_apc": score.delta_apc,
        "active": score.active,
        "passive": score.passive,
    }
    ids = statement_ids or [None] * len(score.terms)
    terms = [
        {
            "position": i,
            "statement_id": sid,
            "statement": t.statement,
            "p_yes": t.p_yes,
            "p_entailed": t.p_entailed,
            "p_neutral": t.p_neutral,
            "p_contradicted": t.p_contradicted,
            "term": t.term,
            "delta_term": t.delta_term,
        }
        for i, (t, sid) in enumerate(zip(score.terms, ids, strict=True))
    ]
    return head, terms


def score_from_rows(head: dict, terms: list[dict]) -> ApcScore:
    return ApcScore(
        response=head["response"],
        profile=head["profile"],
        terms=tuple(
            StatementScore(
                statement=t["statement"],
                p_yes=t["p_yes"],
                p_contradicted=t["p_contradicted"],
                p_neutral=t["p_neutral"],
                p_entailed=t["p_entailed"],
            )
            for t in sorted(terms, key=lambda t: t["position"])
        ),
    )
