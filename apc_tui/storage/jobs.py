"""Jobs: rows in `jobs`, their log lines (`job_logs`) and metrics (`job_metrics`).

A job's worker process writes here; the TUI and the CLI read. Liveness is judged from the pid
(on this machine) and the heartbeat: a `running` job whose process is gone is marked `dead` the
next time jobs are listed, so a killed worker never looks busy forever.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import InputError
from engine.secrets import redact

from .db import Store, now

STATUSES = ("queued", "running", "done", "failed", "cancelled", "dead")
FINISHED = ("done", "failed", "cancelled", "dead")
STALE_AFTER_S = 300.0  # a running job silent this long is dead even if its pid was reused


def canonical_json(data: dict) -> str:
    """Deterministic JSON: equal configs give equal text (used to find a finished twin job)."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)


def pid_alive(pid: int | None) -> bool:
    """True when `pid` runs here and is not a zombie (a killed child not yet reaped by its parent)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill said it exists
    return state not in ("Z", "X")


def _age_s(ts: str | None) -> float:
    if not ts:
        return float("inf")
    return (datetime.now(UTC) - datetime.fromisoformat(ts)).total_seconds()


class JobRepo:
    def __init__(self, store: Store):
        self.store = store

    # -- writes by the launcher ----------------------------------------------------------
    def create(self, kind: str, config: dict, *, character_id: int | None = None, parent_job_id: int | None = None) -> int:
        with self.store.transaction() as db:
            return db["jobs"].insert(
                {
                    "kind": kind,
                    "config_json": canonical_json(config),
                    "status": "queued",
                    "character_id": character_id,
                    "parent_job_id": parent_job_id,
                    "created_at": now(),
                }
            ).last_pk

    def request_cancel(self, job_id: int) -> str:
        """Ask a job to stop; a queued job is cancelled at once. Returns the status after the request."""
        row = self.get(job_id)
        with self.store.transaction() as db:
            if row["status"] == "queued":
                db["jobs"].update(job_id, {"status": "cancelled", "cancel_requested": 1, "finished_at": now()})
                return "cancelled"
            if row["status"] == "running":
                db["jobs"].update(job_id, {"cancel_requested": 1})
        return row["status"]

    def reset_for_resume(self, job_id: int) -> dict:
        row = self.refresh(self.get(job_id))
        if row["status"] in ("running", "queued"):
            raise InputError(f"job {job_id} is {row['status']}; only a dead, failed or cancelled job can be resumed")
        if row["status"] == "done":
            raise InputError(f"job {job_id} is already done; start a new one instead")
        with self.store.transaction() as db:
            db["jobs"].update(
                job_id, {"status": "queued", "cancel_requested": 0, "error": None, "pid": None, "finished_at": None}
            )
        return self.get(job_id)

    # -- writes by the worker --------------------------------------------------------------
    def claim(self, job_id: int, pid: int) -> dict:
        """Mark a queued job running in this process; refuses a job another worker holds."""
        with self.store.transaction() as db:
            row = self.get(job_id)
            if row["status"] != "queued":
                raise InputError(f"job {job_id} is {row['status']}, not queued; use `apc jobs resume {job_id}`")
            ts = now()
            db["jobs"].update(job_id, {"status": "running", "pid": pid, "heartbeat_at": ts, "started_at": row["started_at"] or ts})
        return self.get(job_id)

    def heartbeat(self, job_id: int, progress: float | None = None, text: str | None = None) -> bool:
        """Record liveness (and progress); returns True when a cancel was requested."""
        fields = {"heartbeat_at": now()}
        if progress is not None:
            fields["progress"] = max(0.0, min(1.0, progress))
        if text is not None:
            fields["progress_text"] = text[:500]
        with self.store.transaction() as db:
            db["jobs"].update(job_id, fields)
            return bool(db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]).fetchone()[0])

    def log(self, job_id: int, message: str, level: str = "info") -> None:
        with self.store.transaction() as db:
            db["job_logs"].insert({"job_id": job_id, "ts": now(), "level": level, "message": redact(message)})

    def metrics_add(self, job_id: int, step: int, values: dict[str, float]) -> None:
        """Upsert: a resumed job may log a step again."""
        with self.store.transaction() as db:
            for name, value in values.items():
                db.execute(
                    "INSERT OR REPLACE INTO job_metrics (job_id, step, name, value) VALUES (?, ?, ?, ?)",
                    [job_id, int(step), name, float(value)],
                )

    def save_checkpoint(self, job_id: int, checkpoint: dict) -> None:
        with self.store.transaction() as db:
            db["jobs"].update(job_id, {"checkpoint_json": canonical_json(checkpoint)})

    def finish(self, job_id: int, status: str, *, error: str | None = None, artifacts: dict | None = None) -> None:
        assert status in FINISHED, status
        fields = {"status": status, "error": redact(error), "finished_at": now(), "pid": None}
        if status == "done":
            fields["progress"] = 1.0
        if artifacts is not None:
            fields["artifacts_json"] = canonical_json(artifacts)
        with self.store.transaction() as db:
            db["jobs"].update(job_id, fields)

    # -- reads -----------------------------------------------------------------------------
    def get(self, job_id: int) -> dict:
        rows = list(self.store.db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
        if not rows:
            raise InputError(f"no job with id {job_id} (see `apc jobs list`)")
        return rows[0]

    def refresh(self, row: dict) -> dict:
        """Mark a running job whose worker is gone as dead; returns the current row."""
        if row["status"] != "running":
            return row
        if pid_alive(row["pid"]) and _age_s(row["heartbeat_at"]) < STALE_AFTER_S:
            return row
        with self.store.transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'dead', finished_at = ?, error = COALESCE(error, ?) WHERE id = ? AND status = 'running'",
                [now(), f"worker process {row['pid']} is gone (killed or machine restarted); `apc jobs resume {row['id']}`", row["id"]],
            )
        return self.get(row["id"])

    def list(self, *, status: str | None = None, kind: str | None = None, parent_job_id: int | None = None, limit: int = 50) -> list[dict]:
        where, args = [], []
        for col, val in (("status", status), ("kind", kind), ("parent_job_id", parent_job_id)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?"
        return [self.refresh(r) for r in self.store.db.query(sql, [*args, limit])]

    def find_done(self, kind: str, config: dict, character_id: int | None) -> dict | None:
        """The latest finished-successfully job with exactly this kind and config (pipeline reruns skip it)."""
        rows = list(
            self.store.db.query(
                "SELECT * FROM jobs WHERE kind = ? AND config_json = ? AND status = 'done' AND character_id IS ? ORDER BY id DESC LIMIT 1",
                [kind, canonical_json(config), character_id],
            )
        )
        return rows[0] if rows else None

    def children(self, job_id: int) -> list[dict]:
        return list(self.store.db.query("SELECT * FROM jobs WHERE parent_job_id = ? ORDER BY id", [job_id]))

    def logs(self, job_id: int, *, after_id: int = 0, limit: int = 10_000) -> list[dict]:
        return list(
            self.store.db.query(
                "SELECT id, ts, level, message FROM job_logs WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?", [job_id, after_id, limit]
            )
        )

    def metrics(self, job_id: int) -> list[dict]:
        return list(self.store.db.query("SELECT step, name, value FROM job_metrics WHERE job_id = ? ORDER BY step, name", [job_id]))


def job_to_dict(row: dict) -> dict:
    """A job row for display and --json: JSON columns decoded."""
    out = {k: v for k, v in row.items() if not k.endswith("_json")}
    out["config"] = json.loads(row.get("config_json") or "{}")
    out["checkpoint"] = json.loads(row["checkpoint_json"]) if row.get("checkpoint_json") else None
    out["artifacts"] = json.loads(row.get("artifacts_json") or "{}")
    out["cancel_requested"] = bool(row.get("cancel_requested"))
    return out
