"""Data-parallel training through `accelerate launch`: two real gloo ranks on the CPU with the tiny
model (the same code path as NCCL ranks on GPUs), supervised by the job system: one adapter with
its lineage, progress and metrics from rank 0, cancel that stops every rank, resume from the
checkpoint. The planning rules (devices, strategy, accelerate config) are checked without ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from apc_tui.paths import adapters_dir, jobs_dir
from apc_tui.storage.jobs import JobRepo
from engine.errors import ConfigError, InputError
from tests.fixtures_dpo import CHARACTER, run_in_thread, store_pairs, toy_pairs, wait_for

GIB = 1024**3
TINY = ["--lora-r", "4", "--grad-accum", "1", "--max-length", "96", "--device", "cpu", "--processes", "2"]


def _cli(*args: str):
    from typer.testing import CliRunner

    from apc_tui.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _rank_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention `marker` (a job's payload path)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and str(os.getpid()) != proc.name:
                out.append(cmd)
    return out


@pytest.mark.slow
def test_two_gloo_processes_train_one_adapter_whose_lineage_says_world_size_2(dpo_services, tiny_dir):
    svc = dpo_services
    store_pairs(svc, svc.character_id, toy_pairs(4))
    r = _cli("dpo", "train", "-c", CHARACTER, "-m", "tiny", "--name", "maelle-ddp", "--max-steps", "2", *TINY, "--json")
    assert r.exit_code == 0, r.output
    (adapter,) = svc.finetune.list_adapters(CHARACTER)
    ranks = {k: adapter["lineage"][k] for k in ("world_size", "strategy", "backend", "rank_devices")}
    assert ranks == {"world_size": 2, "strategy": "ddp", "backend": "gloo", "rank_devices": ["cpu", "cpu"]}
    assert adapter["lineage"]["data"]["count"] and adapter["lineage"]["versions"]  # the model card's lineage too
    card = (Path(adapter["path"]) / "README.md").read_text(encoding="utf-8")
    assert "Trained on 2 process(es) (ddp, gloo) on cpu, cpu." in card
    assert adapter["metrics"]["world_size"] == 2 and adapter["metrics"]["steps"] == 2
    assert adapter["metrics"]["epoch"] == 1.0  # 4 pairs over 2 ranks at batch 1: an epoch is 2 steps
    adapter_dir = Path(adapter["path"])
    assert adapter["present"] and sorted(p.name for p in adapter_dir.parent.iterdir()) == ["adapter"]  # checkpoints removed
    job = svc.jobs.show(adapter["job_id"])
    assert job["status"] == "done" and job["progress"] == 1.0
    assert {m["name"] for m in svc.jobs.metrics(job["id"])} >= {"loss", "rewards/margins"}
    logs = [line["message"] for line in svc.jobs.logs(job["id"])]
    assert any("data-parallel over 2 processes" in m for m in logs) and any("2 ranks (ddp, gloo) on cpu, cpu" in m for m in logs)
    ranks = jobs_dir(svc.settings) / str(job["id"]) / "ranks"
    config = (ranks / "accelerate.yaml").read_text()
    assert "num_processes: 2" in config and 'distributed_type: "MULTI_GPU"' in config
    launcher = (ranks / "launcher.log").read_text()
    assert "FutureWarning" not in launcher and "kernels" not in launcher and "Traceback" not in launcher
    events = [json.loads(line) for line in (ranks / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2]  # rank 0 alone reports: one line per step
    from engine.backends import load_model
    from engine.types import Turn

    assert load_model(adapter["spec"], device="cpu").generate([Turn("user", "hi")], 1)


@pytest.mark.slow
def test_cancel_stops_every_rank_and_resume_continues_from_the_checkpoint(dpo_services, tiny_dir):
    svc = dpo_services
    store_pairs(svc, svc.character_id, toy_pairs(4))
    settings = {"lora_r": 4, "grad_accum": 1, "max_length": 96, "device": "cpu", "max_steps": 40, "save_steps": 100, "epochs": 100}
    config, cid = svc.finetune.train_config("dpo", CHARACTER, "tiny", "maelle-stop", settings, processes=2)
    job_id = svc.jobs.create("dpo", config, character_id=cid)
    thread, out = run_in_thread(svc.jobs.launch, job_id)
    repo = JobRepo(svc.store)
    wait_for(lambda: repo.metrics(job_id), 300, poll=0.2, what="the first training step")
    assert svc.jobs.cancel(job_id) == "running"
    thread.join(240)
    assert out["result"]["status"] == "cancelled", out
    row = svc.jobs.show(job_id)
    checkpoint = row["checkpoint"]["trainer_checkpoint"]
    stopped = int(checkpoint.rsplit("-", 1)[1])
    assert 1 <= stopped < 40 and Path(checkpoint, "trainer_state.json").is_file()
    payload = str(jobs_dir(svc.settings) / str(job_id) / "ranks" / "payload.json")
    wait_for(lambda: not _rank_processes(payload), 30, what="every rank to exit")
    assert not svc.finetune.list_adapters(CHARACTER)
    assert any("stopped cleanly" in line["message"] for line in row["log_tail"])

    done = svc.jobs.resume(job_id)
    assert done["status"] == "done", done["error"]
    (adapter,) = svc.finetune.list_adapters(CHARACTER)
    assert adapter["lineage"]["world_size"] == 2 and adapter["metrics"]["steps"] == 40
    logs = [line["message"] for line in svc.jobs.logs(job_id)]
    assert f"resuming from checkpoint-{stopped}" in logs
    steps = sorted({m["step"] for m in svc.jobs.metrics(job_id)})
    assert steps[-1] == 40 and steps.count(stopped + 1) == 1  # continued after the checkpoint, each step once after it


@pytest.mark.slow
def test_a_killed_job_worker_is_dead_its_ranks_stop_and_resume_finishes(cli, dpo_services, tiny_dir):
    """`apc dpo train --processes 2 --detach`, its worker SIGKILLed: the job lists as dead, both
    ranks leave on their own (after saving a checkpoint the job never recorded), resume finishes."""
    svc = dpo_services
    store_pairs(svc, svc.character_id, toy_pairs(4))
    r = cli("dpo", "train", "-c", CHARACTER, "-m", "tiny", "--name", "killed-ddp", "--epochs", "100", "--max-steps", "40",
            "--save-steps", "100", *TINY, "--detach", "--json")  # fmt: skip
    assert r.code == 0, r.err
    job_id = r.json()["job_id"]
    repo = JobRepo(svc.store)
    wait_for(lambda: repo.metrics(job_id), 300, poll=0.2, what="the first training step")
    pid = repo.get(job_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    payload = str(jobs_dir(svc.settings) / str(job_id) / "ranks" / "payload.json")
    wait_for(lambda: not _rank_processes(payload), 120, what="the orphaned ranks to stop on their own")
    listed = {j["id"]: j for j in cli("jobs", "list", "--json").json()}[job_id]
    assert listed["status"] == "dead"
    (saved,) = (adapters_dir(svc.settings) / "killed-ddp" / "checkpoints").glob("checkpoint-*")
    assert "trainer_checkpoint" not in listed["checkpoint"]  # saved by the ranks on their way out, unrecorded (save_steps 100)
    done = svc.jobs.resume(job_id)
    assert done["status"] == "done", done["error"]
    logs = [line["message"] for line in svc.jobs.logs(job_id)]
    assert f"resuming from {saved.name}" in logs
    (adapter,) = svc.finetune.list_adapters(CHARACTER)
    assert adapter["lineage"]["world_size"] == 2 and adapter["metrics"]["steps"] == 40


# -- planning, without ranks ----------------------------------------------------------------------
def test_processes_default_and_device_rules(monkeypatch):
    from engine import distributed as dist

    assert dist.default_processes("cpu") == 1 and dist.default_processes("cuda:1") == 1
    monkeypatch.setattr(dist, "cuda_count", lambda: 4)
    assert dist.default_processes("auto") == 4 and dist.default_processes("cuda") == 4
    assert dist.rank_devices("cpu", 3) == ("cpu", "cpu", "cpu")
    with pytest.raises(ConfigError, match="--processes 0: give 1 or more"):
        dist.rank_devices("cpu", 0)
    with pytest.raises(ConfigError, match="this machine has"):  # no CUDA here: the device check says so first
        dist.rank_devices("cuda", 2)


def test_strategy_is_ddp_when_a_replica_fits_fsdp_when_only_shards_fit():
    from engine.distributed import choose_strategy

    assert choose_strategy(20 * GIB, [40 * GIB, 40 * GIB], use_4bit=False) == "ddp"
    assert choose_strategy(60 * GIB, [40 * GIB, 40 * GIB], use_4bit=False) == "fsdp"
    with pytest.raises(ConfigError, match=r"needs about 200.0 GiB per GPU .* emptiest of them has 10.0 GiB free; use --4bit"):
        choose_strategy(200 * GIB, [40 * GIB, 10 * GIB], use_4bit=False)
    with pytest.raises(ConfigError, match="emptiest"):  # one GPU: nothing to shard over
        choose_strategy(60 * GIB, [40 * GIB], use_4bit=True)


def test_cuda_plan_checks_every_rank_and_writes_an_fsdp_config(monkeypatch):
    import torch

    from engine.distributed import accelerate_config, plan_launch, to_yaml

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    devices = ("cuda:0", "cuda:1")
    plan = plan_launch(devices, need_bytes=30 * GIB, use_4bit=True, free=[40 * GIB, 20 * GIB])  # rank 1 is the tight one
    assert (plan.strategy, plan.backend, plan.mixed_precision) == ("fsdp", "nccl", "bf16")
    yaml = to_yaml(accelerate_config(plan, "LlamaDecoderLayer"))
    assert 'distributed_type: "FSDP"' in yaml and 'fsdp_transformer_layer_cls_to_wrap: "LlamaDecoderLayer"' in yaml
    assert "fsdp_use_orig_params: true" in yaml and "num_processes: 2" in yaml
    ddp = plan_launch(devices, need_bytes=10 * GIB, use_4bit=False, free=[40 * GIB, 20 * GIB])
    assert ddp.strategy == "ddp" and 'distributed_type: "MULTI_GPU"' in to_yaml(accelerate_config(ddp))


def test_bad_processes_are_refused_before_queueing(dpo_services):
    with pytest.raises(InputError, match="--processes 0: give 1 or more"):
        dpo_services.finetune.train_config("dpo", CHARACTER, "tiny", "x", {}, processes=0)


def test_ranks_stop_when_the_supervisor_is_gone(tmp_path):
    """A job worker killed hard leaves no rank training forever: each rank watches its supervisor."""
    from engine.dist_worker import watch

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stop = threading.Event()
    watch(tmp_path, gone.pid, stop).join(5)
    assert stop.is_set()
    stop2 = threading.Event()
    thread = watch(tmp_path, os.getpid(), stop2)
    assert not stop2.wait(0.8)
    (tmp_path / "stop").write_text("stop\n")  # the supervisor's clean stop request
    thread.join(5)
    assert stop2.is_set()


def test_resume_takes_the_newest_checkpoint_of_this_job_only(tmp_path):
    """A job process killed hard: its ranks save a checkpoint on their way out that the job never
    recorded; resume starts from that one (complete checkpoints only). Another job's leftovers in the
    same folder (same adapter name) are never adopted."""
    from types import SimpleNamespace

    from apc_tui.services.finetune import _train_hooks

    logs: list[str] = []

    def ctx(job_id, checkpoint):
        return SimpleNamespace(job_id=job_id, checkpoint=checkpoint, log=lambda m, level="info": logs.append(m), progress=None,
                               stop=None, metrics=None)  # fmt: skip

    assert _train_hooks(ctx(7, {}), tmp_path)["resume_from"] is None  # first run: claims the folder
    for step, complete in ((2, True), (5, True), (7, False)):
        d = tmp_path / "checkpoints" / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text("{}")
    recorded = {"trainer_checkpoint": str(tmp_path / "checkpoints" / "checkpoint-2")}
    assert _train_hooks(ctx(7, recorded), tmp_path)["resume_from"] == str(tmp_path / "checkpoints" / "checkpoint-5")
    assert _train_hooks(ctx(7, {}), tmp_path)["resume_from"] == str(tmp_path / "checkpoints" / "checkpoint-5")
    assert logs == ["resuming from checkpoint-5"] * 2
    assert _train_hooks(ctx(8, {"pair_ids": [1]}), tmp_path)["resume_from"] is None  # another job: starts afresh
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["job.json"]
    # a folder from before the marker: the job's recorded checkpoint in it proves it is the job's own
    old = tmp_path / "old"
    (old / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (old / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    recorded_old = {"trainer_checkpoint": str(old / "checkpoints" / "checkpoint-3")}
    assert _train_hooks(ctx(9, recorded_old), old)["resume_from"] == recorded_old["trainer_checkpoint"]
