"""Evaluation runs (`eval_runs`), their per-method results and every scored sample."""

from __future__ import annotations

import json

from engine.discriminators.profiles import profile_version
from engine.errors import InputError

from .db import Store, now


class EvalRepo:
    def __init__(self, store: Store):
        self.store = store

    def create_run(self, *, character_id: int, model_spec: str, adapter_id: int | None, profile: str, config: dict,
                   job_id: int | None) -> int:
        with self.store.transaction() as db:
            return db["eval_runs"].insert(
                {
                    "character_id": character_id,
                    "model_spec": model_spec,
                    "adapter_id": adapter_id,
                    "profile": profile,
                    "disc_version": profile_version(profile),
                    "config_json": json.dumps(config, sort_keys=True, ensure_ascii=False),
                    "job_id": job_id,
                    "created_at": now(),
                }
            ).last_pk

    def run(self, run_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM eval_runs WHERE id = ?", [run_id]))
        if not rows:
            raise InputError(f"no evaluation run with id {run_id} (see `apc eval --list`)")
        return rows[0]

    def runs(self, character_id: int | None = None, limit: int = 20) -> list[dict]:
        sql = "SELECT r.*, c.name AS character FROM eval_runs r JOIN characters c ON c.id = r.character_id WHERE c.deleted_at IS NULL"
        args: list = []
        if character_id is not None:
            sql += " AND r.character_id = ?"
            args.append(character_id)
        return list(self.store.db.query(sql + " ORDER BY r.id DESC LIMIT ?", [*args, limit]))

    def add_sample(self, run_id: int, method: str, variant: str, query: str, response: str, score) -> None:
        """One scored response; a resumed run re-adding a sample keeps the first one."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO eval_samples (run_id, method, variant, query, response, apc, delta_apc, active, passive, n_statements)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, method, variant, query, response, score.apc, score.delta_apc, score.active, score.passive, score.n_statements],
            )

    def samples(self, run_id: int, method: str | None = None, variant: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM eval_samples WHERE run_id = ?", [run_id]
        if method is not None:
            sql += " AND method = ?"
            args.append(method)
        if variant is not None:
            sql += " AND variant = ?"
            args.append(variant)
        return list(self.store.db.query(sql + " ORDER BY id", args))

    def done_queries(self, run_id: int, method: str, variant: str) -> set[str]:
        return {r["query"] for r in self.samples(run_id, method, variant)}

    def save_results(self, run_id: int, results: list[dict]) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM eval_results WHERE run_id = ?", [run_id])
            db["eval_results"].insert_all([{**r, "run_id": run_id} for r in results])

    def results(self, run_id: int) -> list[dict]:
        return list(self.store.db.query("SELECT * FROM eval_results WHERE run_id = ? ORDER BY method, variant", [run_id]))
