"""Job use cases for the CLI and the TUI: start, list, show, follow logs, cancel, resume."""

from __future__ import annotations

import time
from collections.abc import Iterator

from ..jobs import handler_for, jobs_dir, launch, resume_job, start_job
from ..storage.jobs import FINISHED, JobRepo, job_to_dict


class JobService:
    def __init__(self, services):
        self.services = services
        self.repo = JobRepo(services.store)

    def start(self, kind: str, config: dict, *, character_id: int | None = None, detach: bool = False) -> dict:
        return job_to_dict(start_job(self.services, kind, config, character_id=character_id, detach=detach))

    def create(self, kind: str, config: dict, *, character_id: int | None = None) -> int:
        handler_for(kind)
        return self.repo.create(kind, config, character_id=character_id)

    def launch(self, job_id: int, *, detach: bool = False) -> dict:
        return job_to_dict(launch(self.services, job_id, detach=detach))

    def resume(self, job_id: int, *, detach: bool = False) -> dict:
        return job_to_dict(resume_job(self.services, job_id, detach=detach))

    def cancel(self, job_id: int) -> str:
        return self.repo.request_cancel(job_id)

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int = 50) -> list[dict]:
        return [job_to_dict(r) for r in self.repo.list(status=status, kind=kind, limit=limit)]

    def estimate(self, kind: str, model: str, replies: int) -> str:
        """How long `replies` replies of a `kind` job (pairs | eval) on `model` should take, from the
        newest finished job of that kind on that model (its wall time per reply); said plainly when
        there is no such job yet."""
        from datetime import datetime

        from ..numbers import eta_text

        for job in self.list(status="done", kind=kind, limit=20):
            done = _replies_done(job)
            if job["config"].get("model") != model or not done or not job.get("started_at") or not job.get("finished_at"):
                continue
            took = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
            guess = eta_text(took / done * replies).removeprefix("ETA ")
            return f"estimate ~{guess} (job {job['id']}: {done} replies in {eta_text(took).removeprefix('ETA ')})"
        return f"no estimate yet (no finished {kind} job on {model}): the job shows its ETA once the first replies are scored"

    def show(self, job_id: int, *, log_tail: int = 20) -> dict:
        row = job_to_dict(self.repo.refresh(self.repo.get(job_id)))
        metrics = self.repo.metrics(job_id)
        latest: dict[str, dict] = {}
        for m in metrics:
            latest[m["name"]] = {"step": m["step"], "value": m["value"]}
        logs = self.repo.logs(job_id)
        row["metrics_latest"] = latest
        row["metrics_count"] = len(metrics)
        row["log_tail"] = logs[-log_tail:]
        row["children"] = [job_to_dict(self.repo.refresh(r)) for r in self.repo.children(job_id)]
        row["log_file"] = str(jobs_dir(self.services) / f"{job_id}.log")
        return row

    def metrics(self, job_id: int) -> list[dict]:
        self.repo.get(job_id)
        return self.repo.metrics(job_id)

    def logs(self, job_id: int, *, after_id: int = 0) -> list[dict]:
        """Log lines of a job; `after_id` returns only newer lines (the TUI polls with it)."""
        self.repo.get(job_id)
        return self.repo.logs(job_id, after_id=after_id)

    def follow(self, job_id: int, *, poll_s: float = 0.5, timeout_s: float | None = None) -> Iterator[dict]:
        """Yield log lines as they arrive until the job finishes (or is found dead)."""
        last, started = 0, time.monotonic()
        while True:
            for line in self.repo.logs(job_id, after_id=last):
                last = line["id"]
                yield line
            row = self.repo.refresh(self.repo.get(job_id))
            if row["status"] in FINISHED:
                for line in self.repo.logs(job_id, after_id=last):
                    yield line
                return
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                return
            time.sleep(poll_s)

    def wait(self, job_id: int, *, poll_s: float = 0.5, timeout_s: float = 3600) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            row = self.repo.refresh(self.repo.get(job_id))
            if row["status"] in FINISHED or time.monotonic() > deadline:
                return job_to_dict(row)
            time.sleep(poll_s)


def _replies_done(job: dict) -> int:
    """Replies a finished pairs/eval job generated and scored (0 when its artifacts do not say)."""
    artifacts = job.get("artifacts") or {}
    if job["kind"] == "pairs":
        return 2 * int(artifacts.get("queries") or 0)
    if job["kind"] == "eval":
        return sum(int(r.get("n") or 0) for r in artifacts.get("results") or [] if isinstance(r, dict))
    return 0
