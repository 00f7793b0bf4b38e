"""Trained LoRA adapters (`adapters`) with their lineage: base model, pairs, config, metrics, job."""

from __future__ import annotations

import json

from engine.errors import InputError

from .db import Store, now


class AdapterRepo:
    def __init__(self, store: Store):
        self.store = store

    def add(self, *, name: str, kind: str, base_model: str, path: str, character_id: int | None, config: dict,
            metrics: dict, job_id: int | None, pairs_hash: str | None = None, pair_ids: list[int] | None = None,
            lineage: dict | None = None) -> int:
        with self.store.transaction() as db:
            if list(db.query("SELECT id FROM adapters WHERE name = ?", [name])):
                raise InputError(f"an adapter named {name!r} exists already; pick another --name")
            return db["adapters"].insert(
                {
                    "name": name,
                    "kind": kind,
                    "base_model": base_model,
                    "path": path,
                    "character_id": character_id,
                    "pairs_hash": pairs_hash,
                    "pair_ids_json": json.dumps(pair_ids) if pair_ids is not None else None,
                    "config_json": json.dumps(config, sort_keys=True),
                    "metrics_json": json.dumps(metrics, sort_keys=True),
                    "job_id": job_id,
                    "lineage_json": json.dumps(lineage, sort_keys=True) if lineage else None,
                    "created_at": now(),
                }
            ).last_pk

    def exists(self, name: str) -> bool:
        return bool(list(self.store.db.query("SELECT id FROM adapters WHERE name = ?", [name])))

    def get(self, name: str) -> dict:
        rows = list(self.store.db.query("SELECT * FROM adapters WHERE name = ?", [name]))
        if not rows:
            known = ", ".join(r["name"] for r in self.list()[:8]) or "none yet: `apc dpo train` or `apc eu train`"
            raise InputError(f"no adapter named {name!r} (known: {known})")
        return rows[0]

    def get_by_id(self, adapter_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM adapters WHERE id = ?", [adapter_id]))
        if not rows:
            raise InputError(f"no adapter with id {adapter_id}")
        return rows[0]

    def latest(self, character_id: int, kind: str) -> dict | None:
        rows = list(self.store.db.query(
            "SELECT * FROM adapters WHERE character_id = ? AND kind = ? ORDER BY id DESC LIMIT 1", [character_id, kind]))
        return rows[0] if rows else None

    def list(self, character_id: int | None = None) -> list[dict]:
        sql = "SELECT a.*, c.name AS character FROM adapters a LEFT JOIN characters c ON c.id = a.character_id"
        args: list = []
        if character_id is not None:
            sql += " WHERE a.character_id = ?"
            args.append(character_id)
        return list(self.store.db.query(sql + " ORDER BY a.id DESC", args))


def adapter_to_dict(row: dict) -> dict:
    out = {k: v for k, v in row.items() if not k.endswith("_json")}
    out["config"] = json.loads(row.get("config_json") or "{}")
    out["metrics"] = json.loads(row.get("metrics_json") or "{}")
    out["pair_ids"] = json.loads(row["pair_ids_json"]) if row.get("pair_ids_json") else None
    out["lineage"] = json.loads(row["lineage_json"]) if row.get("lineage_json") else {}
    return out
