"""Row <-> engine dataclass conversion: the one place that knows both shapes."""

from __future__ import annotations

import json

from engine.types import ApcScore, Character, PreferencePair, StatementScore, Statement, Turn


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
    from engine.discriminators.profiles import profile_version

    head = {
        "profile": score.profile,
        "disc_version": profile_version(score.profile),
        "response": score.response,
        "n_statements": score.n_statements,
        "apc": score.apc,
        "delta_apc": score.delta_apc,
        "active": score.active,
        "passive": score.passive,
    }
    ids = statement_ids or [None] * len(score.terms)
    terms = [{"position": i, "statement_id": sid, **t.to_dict()} for i, (t, sid) in enumerate(zip(score.terms, ids, strict=True))]
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


def pair_from_row(row: dict) -> PreferencePair:
    return PreferencePair(
        id=row["id"],
        prompt=turns_from_json(row["prompt_json"]),
        chosen=row["chosen"],
        rejected=row["rejected"],
        source=row["source"],
        chosen_apc=row["chosen_apc"],
        rejected_apc=row["rejected_apc"],
        annotator=row["annotator"],
        model_spec=row["model_spec"] or "",
        method=row["method"] or "",
        weight=row["weight"],
    )


def candidate_to_row(candidate, k: int | None) -> dict:
    """A messages row (without ids) for a sampled assistant candidate (engine.types.Candidate)."""
    return {
        "role": "assistant",
        "content": candidate.text,
        "model_spec": candidate.model_spec,
        "method": candidate.method,
        "k": k,
        "params_json": json.dumps(candidate.params.to_dict()),
        "prompt_json": turns_to_json(candidate.prompt),
        "retrieved_json": json.dumps(list(candidate.retrieved), ensure_ascii=False),
        "origin": "model",
    }


def message_to_dict(row: dict) -> dict:
    """A messages row for output: JSON columns decoded."""
    out = {k: v for k, v in row.items() if not k.endswith("_json")}
    out["params"] = json.loads(row["params_json"]) if row.get("params_json") else None
    out["prompt"] = json.loads(row["prompt_json"]) if row.get("prompt_json") else None
    out["retrieved"] = json.loads(row["retrieved_json"]) if row.get("retrieved_json") else []
    return out
