"""Jobs: recorded runs, heartbeats, cancel, dead workers, resume from checkpoints, the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from apc_tui.storage.jobs import JobRepo, pid_alive
from engine.errors import InputError
from tests.fixtures_dpo import CHARACTER, run_in_thread, store_pairs, toy_pairs, wait_for


def test_foreground_job_is_recorded(services, sleepy_kind):
    row = services.jobs.start(sleepy_kind, {"fast": True})
    assert row["status"] == "done" and row["progress"] == 1.0 and row["pid"] is None
    assert row["artifacts"] == {"ticks": 200, "started_at": 0} and row["checkpoint"] == {"tick": 200}
    shown = services.jobs.show(row["id"])
    assert shown["metrics_count"] == 200 and shown["metrics_latest"]["loss"]["step"] == 199
    assert [line["message"] for line in services.jobs.logs(row["id"])][-1] == "done"


def test_cancel_stops_a_running_job_cleanly_and_resume_continues(services, sleepy_kind):
    job_id = services.jobs.create(sleepy_kind, {})
    thread, out = run_in_thread(services.jobs.launch, job_id)
    repo = JobRepo(services.store)
    wait_for(lambda: (repo.get(job_id)["checkpoint_json"] or "").count("tick") and repo.get(job_id)["status"] == "running", 30,
             what="the job to run")  # fmt: skip
    assert services.jobs.cancel(job_id) == "running"
    thread.join(30)
    assert out["result"]["status"] == "cancelled"
    row = services.jobs.show(job_id)
    assert row["status"] == "cancelled" and 0 < row["checkpoint"]["tick"] < 200 and row["progress"] > 0
    assert any("stopped cleanly" in line["message"] for line in row["log_tail"])
    stopped_at = row["checkpoint"]["tick"]
    done = services.jobs.resume(job_id)
    assert done["status"] == "done" and done["artifacts"]["started_at"] == stopped_at  # continued, not restarted
    with pytest.raises(InputError, match="already done"):
        services.jobs.resume(job_id)


def test_a_failing_job_records_its_error(services, monkeypatch, sleepy_kind):
    from apc_tui import jobs

    monkeypatch.setitem(jobs.HANDLERS, "broken", "tests.test_jobs:_broken")
    row = services.jobs.start("broken", {})
    assert row["status"] == "failed" and "ZeroDivisionError" in row["error"]
    assert any("Traceback" in line["message"] for line in services.jobs.logs(row["id"]))
    with pytest.raises(InputError, match="unknown job kind"):
        services.jobs.start("nope", {})


def _broken(services, ctx):
    return 1 / 0


def test_running_job_without_a_process_is_marked_dead(services):
    repo = JobRepo(services.store)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    job_id = repo.create("dpo", {})
    repo.claim(job_id, proc.pid)
    assert not pid_alive(proc.pid)
    (row,) = services.jobs.list()
    assert row["status"] == "dead" and "apc jobs resume" in row["error"]
    queued = repo.create("dpo", {})
    assert services.jobs.cancel(queued) == "cancelled"  # a queued job is cancelled at once


@pytest.mark.slow
def test_killed_detached_training_is_dead_then_resumes_from_its_checkpoint(cli, dpo_services, monkeypatch, tiny_dir, one_thread_torch):
    """`apc dpo train --detach`; its worker is SIGKILLed mid-training: dead on the next list, resumed to the end."""
    svc = dpo_services
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    store_pairs(svc, svc.character_id, toy_pairs(4))
    r = cli("dpo", "train", "--character", CHARACTER, "--model", "tiny", "--name", "killed-dpo", "--epochs", "100", "--max-steps", "12",
            "--lora-r", "4", "--grad-accum", "1", "--max-length", "96", "--save-steps", "2", "--device", "cpu", "--detach", "--json")  # fmt: skip
    assert r.code == 0, r.err
    job_id = r.json()["job_id"]
    repo = JobRepo(svc.store)
    wait_for(lambda: "trainer_checkpoint" in (repo.get(job_id)["checkpoint_json"] or ""), 240, 0.05, "a first checkpoint")
    pid = repo.get(job_id)["pid"]
    assert repo.get(job_id)["status"] == "running" and pid_alive(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 30, what="the worker to die")
    listed = {j["id"]: j for j in cli("jobs", "list", "--json").json()}[job_id]
    assert listed["status"] == "dead" and "resume" in listed["error"]
    killed_at = int(listed["checkpoint"]["trainer_checkpoint"].rsplit("-", 1)[1])
    assert 0 < killed_at < 12

    done = svc.jobs.resume(job_id)  # foreground: the same code path as the worker
    assert done["status"] == "done", done["error"]
    r = cli("jobs", "logs", str(job_id), "--follow")
    assert r.code == 0 and "resuming from checkpoint-" in r.out and r.out.splitlines()[-1].endswith("done")
    shown = cli("jobs", "show", str(job_id), "--json").json()
    assert shown["status"] == "done" and shown["artifacts"]["adapter"] == "killed-dpo" and "loss" in shown["metrics_latest"]
    (adapter,) = cli("adapters", "list", "--json").json()
    assert adapter["name"] == "killed-dpo" and adapter["job_id"] == job_id and adapter["metrics"]["steps"] == 12
    steps = sorted({m["step"] for m in svc.jobs.metrics(job_id)})
    assert steps == list(range(1, 13))  # every step logged once, across both processes
    r = cli("jobs", "cancel", str(job_id))
    assert r.code == 0 and "already done" in r.out
    r = cli("jobs", "show", "999")
    assert r.code == 2 and "no job with id 999" in r.err


def test_follow_streams_log_lines_until_the_job_ends(services, sleepy_kind):
    job_id = services.jobs.create(sleepy_kind, {"fast": True})
    thread, _ = run_in_thread(services.jobs.launch, job_id)
    lines = [line["message"] for line in services.jobs.follow(job_id, poll_s=0.05, timeout_s=60)]
    thread.join(30)
    assert lines[0].startswith("started sleepy job") and lines[-1] == "done"


def test_worker_entry_point_refuses_bad_arguments():
    proc = subprocess.run([sys.executable, "-m", "apc_tui.jobs", "go"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_heartbeat_sets_progress(services, sleepy_kind):
    job_id = services.jobs.create(sleepy_kind, {})
    thread, out = run_in_thread(services.jobs.launch, job_id)
    repo = JobRepo(services.store)
    row = wait_for(lambda: (r := repo.get(job_id))["progress"] > 0 and r, 30, what="progress")
    assert row["progress_text"].startswith("tick") and row["heartbeat_at"]
    repo.request_cancel(job_id)
    thread.join(30)
    assert time.monotonic() and out["result"]["status"] == "cancelled"


def test_long_work_estimate_comes_from_the_newest_finished_job_on_that_model(services):
    """The confirm dialogs' estimate: wall time per reply of the newest finished job of that kind and
    model, scaled to the work asked for; no estimate (said so) without such a job."""
    from apc_tui.storage.jobs import JobRepo

    repo = JobRepo(services.store)
    assert services.jobs.estimate("pairs", "tiny", 40).startswith("no estimate yet (no finished pairs job on tiny)")

    def finished(kind: str, model: str, artifacts: dict, seconds: int) -> int:
        job_id = repo.create(kind, {"model": model})
        repo.claim(job_id, pid=1)
        repo.finish(job_id, "done", artifacts=artifacts)
        services.store.db.execute(
            "UPDATE jobs SET started_at = '2026-01-01T10:00:00+00:00', finished_at = ? WHERE id = ?",
            [f"2026-01-01T10:{seconds // 60:02d}:{seconds % 60:02d}+00:00", job_id],
        )
        services.store.db.conn.commit()
        return job_id

    finished("pairs", "hf:other", {"queries": 10}, 600)  # another model: not used
    job = finished("pairs", "tiny", {"queries": 10, "pairs_kept": 3}, 40)  # 20 replies in 40 s: 2 s a reply
    assert services.jobs.estimate("pairs", "tiny", 90) == f"estimate ~3m00s (job {job}: 20 replies in 40s)"
    ev = finished("eval", "tiny", {"results": [{"n": 5}, {"n": 5}]}, 20)
    assert services.jobs.estimate("eval", "tiny", 4) == f"estimate ~8s (job {ev}: 10 replies in 20s)"
