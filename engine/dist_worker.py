"""One rank of a data-parallel LoRA run: `accelerate launch ... -m engine.dist_worker JOB/payload.json`.

Every rank trains (DpoSettings / EuSettings on its own device) and watches for JOB/stop and for its
supervisor's death; the stop decision is all-reduced so every rank leaves at the same step. Only
rank 0 reports: progress, metrics, checkpoints and log lines go to JOB/events.jsonl, the result
(with the lineage: world size, strategy, each rank's device) to JOB/result.json; the Trainer saves
the adapter on rank 0 only. Other ranks print nothing but errors.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
import warnings
from dataclasses import replace
from pathlib import Path

from engine.distributed import EVENTS_FILE, RESULT_FILE, STOP_FILE, gather_devices, lineage, plan_from_dict, world
from engine.errors import ApcError, Cancelled

WATCH_S = 0.5


class Events:
    """Rank 0's report to the supervisor: one JSON object per line, flushed as written."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()

    def emit(self, event: str, **data) -> None:
        if self.path is None:
            return
        line = json.dumps({"event": event, **data}) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(work_dir: Path, supervisor_pid: int, stop: threading.Event) -> threading.Thread:
    """Set `stop` when the supervisor asks (JOB/stop) or is gone (its job then shows as dead)."""

    def run() -> None:
        while not stop.is_set():
            if (work_dir / STOP_FILE).exists() or not _pid_alive(supervisor_pid):
                stop.set()
                return
            stop.wait(WATCH_S)

    thread = threading.Thread(target=run, name="apc-rank-watch", daemon=True)
    thread.start()
    return thread


def _quiet(rank: int) -> None:
    """Library warnings are noise in job logs; ranks other than 0 keep errors only."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module="bitsandbytes")
    warnings.filterwarnings("ignore", message=r".*kernels.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if rank != 0:
        logging.disable(logging.WARNING)
        warnings.simplefilter("ignore")


def _train(kind: str, payload: dict, device: str, hooks: dict):
    out_dir = Path(payload["out_dir"])
    if kind == "dpo":
        from engine.dpo_train import DpoSettings, train_dpo
        from engine.types import PreferencePair, Turn

        pairs = [PreferencePair(**{**p, "prompt": tuple(Turn(**t) for t in p["prompt"])}) for p in payload["rows"]]
        settings = replace(DpoSettings.from_dict(payload["settings"]), device=device)
        return train_dpo(payload["base"], pairs, settings, out_dir, **hooks)
    if kind == "eu":
        from engine.eu_train import Dialogue, EuSettings, train_eu
        from engine.types import Turn

        dialogues = [Dialogue(tuple(Turn(**t) for t in d["prompt"]), d["reply"], d["origin"]) for d in payload["rows"]]
        settings = replace(EuSettings.from_dict(payload["settings"]), device=device)
        return train_eu(payload["base"], dialogues, settings, out_dir, **hooks)
    raise ValueError(f"unknown training kind {kind!r}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    payload = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    rank, local_rank, _world_size = world()
    _quiet(rank)
    plan = plan_from_dict(payload["plan"])
    device = plan.devices[local_rank]
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(int(device.partition(":")[2] or 0))
    work_dir = Path(payload["work_dir"])
    events = Events(work_dir / EVENTS_FILE if rank == 0 else None)
    stop = threading.Event()
    watch(work_dir, int(payload["supervisor_pid"]), stop)
    step = {"n": 0}

    def progress(done: int, total: int, text: str) -> None:
        step["n"] = done
        events.emit("progress", step=done, total=total, text=text)

    hooks = {
        "progress": progress,
        "stop": stop,
        "resume_from": payload.get("resume_from"),
        "on_metrics": lambda s, values: events.emit("metrics", step=s, values=values),
        "on_checkpoint": lambda path: events.emit("checkpoint", path=path),
    }
    if rank == 0:
        events.emit("log", message=f"{plan.processes} ranks ({plan.strategy}, {plan.backend}) on {', '.join(plan.devices)}")
    try:
        result = _train(payload["kind"], payload, device, hooks)
    except Cancelled:
        events.emit("stopped", step=step["n"])
        return 0
    except ApcError as exc:
        events.emit("error", message=str(exc))
        sys.stderr.write(f"rank {rank}: error: {exc}\n")
        return 2
    except Exception as exc:
        events.emit("error", message=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    devices = gather_devices(device)
    if rank == 0:
        from engine.model_card import write_model_card

        info = {**result.lineage, **lineage(plan, devices)}  # how it ran across the ranks, over the one-rank defaults
        info["metrics"] = {**info.get("metrics", {}), "world_size": plan.processes}
        write_model_card(Path(result.adapter_dir), Path(result.adapter_dir).parent.name, info)
        tmp = work_dir / (RESULT_FILE + ".tmp")
        tmp.write_text(json.dumps({"adapter_dir": result.adapter_dir, "metrics": result.metrics, "steps": result.steps,
                                   "lineage": info}))  # fmt: skip
        tmp.replace(work_dir / RESULT_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
