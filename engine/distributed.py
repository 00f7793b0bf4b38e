"""Data-parallel LoRA training through `accelerate launch`: the plan, the per-job accelerate config,
the launcher's supervision, and what each rank needs to agree with the others.

One training run with `processes > 1` becomes:

    supervisor (the job's process)                ranks (python -m engine.dist_worker, one per device)
    plan_launch -> accelerate config YAML  ---->   accelerate launch --config_file JOB/accelerate.yaml
    payload.json (rows, settings, resume)          each rank: train_dpo / train_eu on its device
    tail events.jsonl -> progress/metrics   <----  rank 0 only: progress, metrics, checkpoints, logs,
    stop requested -> JOB/stop, then killpg         the adapter and result.json

Strategies: `ddp` (a full base replica per device, LoRA gradients all-reduced) when the base fits
one device; `fsdp` (weights sharded over the devices; with QLoRA the 4-bit weights are stored in
bf16 so FSDP can shard them) when it only fits spread over all of them. On CPU the ranks talk gloo:
accelerate's own multi-CPU launcher needs `mpirun`, so CPU ranks start through the same torchrun
launcher as GPUs and pick gloo with `use_cpu` (that is how the tests run it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import Cancelled, ConfigError, ModelError

STOP_FILE, EVENTS_FILE, RESULT_FILE, PAYLOAD_FILE, CONFIG_FILE, LAUNCH_LOG = (
    "stop", "events.jsonl", "result.json", "payload.json", "accelerate.yaml", "launcher.log")  # fmt: skip
STOP_GRACE_S = 120.0  # after a stop request: time for the ranks to save a checkpoint and leave
KILL_GRACE_S = 10.0  # after SIGTERM to the launcher's process group: then SIGKILL
GIB = 1024**3

# The environment every rank starts with: no tokenizer thread pools fighting the ranks, and none
# of the warnings third-party libraries print on import (bitsandbytes "kernels", FutureWarnings).
QUIET_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::UserWarning:bitsandbytes,ignore::DeprecationWarning",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "BITSANDBYTES_NOWELCOME": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


@dataclass(frozen=True)
class LaunchPlan:
    """How a run spreads over the box: one rank per device."""

    processes: int
    strategy: str  # ddp | fsdp
    backend: str  # nccl (CUDA) | gloo (CPU)
    devices: tuple[str, ...]  # rank -> device
    use_4bit: bool = False
    mixed_precision: str = "no"  # no | bf16 | fp16

    def to_dict(self) -> dict:
        return {"world_size": self.processes, "strategy": self.strategy, "backend": self.backend,
                "devices": list(self.devices), "use_4bit": self.use_4bit, "mixed_precision": self.mixed_precision}  # fmt: skip


def cuda_count() -> int:
    """Visible CUDA GPUs (0 without torch's CUDA build)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_processes(device: str) -> int:
    """`--processes` when not given: every visible CUDA GPU when training would run on CUDA, else 1."""
    device = (device or "auto").strip().lower()
    if device == "cpu" or device == "mps" or ":" in device:  # an explicit single device
        return 1
    return max(cuda_count(), 1)


def rank_devices(device: str, processes: int) -> tuple[str, ...]:
    """The device of each rank; refuses more CUDA ranks than visible GPUs, and MPS with several ranks."""
    from engine.device import resolve_device

    if processes < 1:
        raise ConfigError(f"--processes {processes}: give 1 or more")
    dev = resolve_device(device)
    if dev == "cpu":
        return tuple("cpu" for _ in range(processes))
    if dev == "mps":
        if processes > 1:
            raise ConfigError("--processes with --device mps: Apple GPUs run one process; use --processes 1")
        return ("mps",)
    n = cuda_count()
    if ":" in dev and processes > 1:
        raise ConfigError(f"--device {dev} with --processes {processes}: several ranks take all GPUs; use --device cuda or auto")
    if processes > n:
        raise ConfigError(f"--processes {processes} but only {n} CUDA GPU(s) are visible; use --processes {n} or fewer")
    return (dev,) if processes == 1 else tuple(f"cuda:{i}" for i in range(processes))


def choose_strategy(need_bytes: int, free_bytes: list[int], *, use_4bit: bool) -> str:
    """ddp when one replica fits each device; fsdp when the weights only fit sharded over all of them."""
    if all(need_bytes <= free for free in free_bytes):
        return "ddp"
    shard = need_bytes / len(free_bytes) * 1.15 + GIB  # sharded weights + gathered layer + context
    if len(free_bytes) > 1 and all(shard <= free for free in free_bytes):
        return "fsdp"
    worst = min(free_bytes)
    fix = "use --4bit, a smaller --lora-r or max length, a smaller model, or more GPUs" if not use_4bit else \
        "use a smaller --lora-r or max length, a smaller model, or more GPUs"  # fmt: skip
    raise ConfigError(f"training needs about {need_bytes / GIB:.1f} GiB per GPU (about {shard / GIB:.1f} GiB sharded over "
                      f"{len(free_bytes)}) but the emptiest of them has {worst / GIB:.1f} GiB free; {fix}")  # fmt: skip


def free_memory(devices: tuple[str, ...]) -> list[int]:
    import torch

    return [torch.cuda.mem_get_info(int(d.partition(":")[2] or 0))[0] for d in devices]


def plan_launch(devices: tuple[str, ...], *, need_bytes: int | None, use_4bit: bool, free: list[int] | None = None) -> LaunchPlan:
    """The plan for these rank devices; on CUDA the VRAM preflight runs against every rank's device."""
    n = len(devices)
    if not devices[0].startswith("cuda"):
        return LaunchPlan(n, "ddp", "gloo", devices, use_4bit=False, mixed_precision="no")
    import torch

    free = free if free is not None else free_memory(devices)
    strategy = choose_strategy(need_bytes or 0, free, use_4bit=use_4bit)
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return LaunchPlan(n, strategy, "nccl", devices, use_4bit=use_4bit, mixed_precision=precision)


def accelerate_config(plan: LaunchPlan, layer_class: str | None = None) -> dict:
    """The accelerate config for this plan (written to the job folder as YAML).

    CPU ranks use the torchrun launcher too (distributed_type MULTI_GPU, see the module docstring);
    each rank then sets `use_cpu` and `ddp_backend=gloo` in its TrainingArguments."""
    cfg: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_machines": 1,
        "machine_rank": 0,
        "num_processes": plan.processes,
        "gpu_ids": "all",
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "mixed_precision": plan.mixed_precision,
        "downcast_bf16": "no",
        "use_cpu": False,
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
    }
    if plan.strategy == "fsdp":
        cfg["distributed_type"] = "FSDP"
        cfg["fsdp_config"] = {
            "fsdp_version": 1,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_transformer_layer_cls_to_wrap": layer_class or "",
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_forward_prefetch": False,
            "fsdp_offload_params": False,
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_sync_module_states": True,
            "fsdp_use_orig_params": True,  # LoRA: frozen and trainable parameters share flat shards
        }
    return cfg


def to_yaml(data: dict, indent: int = 0) -> str:
    """A small YAML writer for the flat config above (str/int/bool/dict values), so the config reads
    like the one `accelerate config` writes."""
    lines = []
    for key, value in data.items():
        pad = " " * indent
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(value, indent + 2).rstrip("\n"))
        elif isinstance(value, bool):
            lines.append(f"{pad}{key}: {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{pad}{key}: {value}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(str(value))}")
    return "\n".join(lines) + "\n"


def decoder_layer_class(base_path: str, trust_remote_code: bool = False) -> str | None:
    """The transformer block class FSDP wraps (e.g. LlamaDecoderLayer), read from the model without weights."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(base_path, trust_remote_code=trust_remote_code)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
    names = getattr(model, "_no_split_modules", None) or []
    return ",".join(names) or None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(work_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(work_dir / CONFIG_FILE),
            "--main_process_port", str(port), "--module", "engine.dist_worker", str(work_dir / PAYLOAD_FILE)]  # fmt: skip


# -- the supervisor ------------------------------------------------------------------------------
def run_ranks(kind: str, payload: dict, plan: LaunchPlan, work_dir: Path, *, layer_class: str | None = None,
              progress=None, stop: threading.Event | None = None, on_metrics=None, on_checkpoint=None,
              on_log=None, poll_s: float = 0.25) -> dict:  # fmt: skip
    """Start the ranks through `accelerate launch`, relay rank 0's events to the hooks until the
    launcher exits; returns rank 0's result.json. `stop` set -> the ranks save a checkpoint and
    leave (Cancelled); ranks that do not leave in time are killed with their process group."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for name in (STOP_FILE, EVENTS_FILE, RESULT_FILE):
        (work_dir / name).unlink(missing_ok=True)
    payload = {**payload, "kind": kind, "plan": plan.to_dict(), "work_dir": str(work_dir), "supervisor_pid": os.getpid()}
    (work_dir / PAYLOAD_FILE).write_text(json.dumps(payload))
    (work_dir / CONFIG_FILE).write_text(to_yaml(accelerate_config(plan, layer_class)))
    env = {**os.environ, **QUIET_ENV, "APC_WORLD_SIZE": str(plan.processes)}
    if plan.backend == "gloo":
        threads = max(1, (os.cpu_count() or 1) // plan.processes)
        env.setdefault("OMP_NUM_THREADS", str(threads))
    with open(work_dir / LAUNCH_LOG, "ab") as log:
        proc = subprocess.Popen(launch_command(work_dir, free_port()), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
    tail = _EventTail(work_dir / EVENTS_FILE, progress, on_metrics, on_checkpoint, on_log)
    stop_sent_at: float | None = None
    try:
        while proc.poll() is None:
            tail.read()
            if stop is not None and stop.is_set() and stop_sent_at is None:
                (work_dir / STOP_FILE).write_text("stop\n")
                stop_sent_at = time.monotonic()
            if stop_sent_at is not None and time.monotonic() - stop_sent_at > STOP_GRACE_S:
                kill_group(proc)
            time.sleep(poll_s)
    except BaseException:  # KeyboardInterrupt or a bug here: never leave ranks running behind us
        kill_group(proc)
        raise
    tail.read()
    result_path = work_dir / RESULT_FILE
    if proc.returncode == 0 and result_path.is_file():  # finished before a late stop request: keep the adapter
        return json.loads(result_path.read_text())
    if stop_sent_at is not None or tail.stopped:
        raise Cancelled(f"training stopped at step {tail.step} on all {plan.processes} ranks; "
                        + ("a checkpoint was saved to resume from" if tail.checkpoints else "no checkpoint was saved"))  # fmt: skip
    error = tail.error or _last_lines(work_dir / LAUNCH_LOG)
    raise ModelError(f"distributed training failed (launcher exit {proc.returncode}): {error}; "
                     f"full output in {work_dir / LAUNCH_LOG}")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the launcher's process group (every rank), SIGKILL what is left after KILL_GRACE_S."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            # the launcher is gone; its ranks may still be ending: the group is empty when killpg fails
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


class _EventTail:
    """Reads rank 0's events.jsonl as it grows and calls the hooks."""

    def __init__(self, path: Path, progress, on_metrics, on_checkpoint, on_log):
        self.path, self.offset = path, 0
        self.progress, self.on_metrics, self.on_checkpoint, self.on_log = progress, on_metrics, on_checkpoint, on_log
        self.step, self.checkpoints, self.stopped, self.error = 0, [], False, ""

    def read(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # only whole lines; a half-written one waits for the next read
        self.offset += end
        for line in data[:end].decode("utf-8").splitlines():
            self.handle(json.loads(line))

    def handle(self, event: dict) -> None:
        kind = event["event"]
        if kind == "progress":
            self.step = event["step"]
            if self.progress is not None:
                self.progress(event["step"], event["total"], event["text"])
        elif kind == "metrics" and self.on_metrics is not None:
            self.on_metrics(event["step"], event["values"])
        elif kind == "checkpoint":
            self.checkpoints.append(event["path"])
            if self.on_checkpoint is not None:
                self.on_checkpoint(event["path"])
        elif kind == "log" and self.on_log is not None:
            self.on_log(event["message"], event.get("level", "info"))
        elif kind == "stopped":
            self.stopped, self.step = True, event["step"]
        elif kind == "error":
            self.error = event["message"]


def _last_lines(path: Path, n: int = 3) -> str:
    if not path.is_file():
        return "no launcher output"
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-600:] or "no launcher output"


# -- inside a rank -----------------------------------------------------------------------------
def world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from the launcher's environment; (0, 0, 1) outside one."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def agree_any(flag: bool) -> bool:
    """True on every rank when it is True on any rank (an all-reduce MAX); local flag when not distributed.
    A stop must be seen by all ranks at the same step, or the others would hang in the next all-reduce."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_devices(device: str) -> list[str]:
    """Every rank's device, in rank order (on every rank)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [device]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, device)
    return [str(d) for d in out]


def plan_from_dict(data: dict) -> LaunchPlan:
    return LaunchPlan(int(data["world_size"]), data["strategy"], data["backend"], tuple(data["devices"]),
                      bool(data.get("use_4bit", False)), data.get("mixed_precision", "no"))  # fmt: skip


def lineage(plan: LaunchPlan, rank_devices_seen: list[str]) -> dict:
    """What an adapter's lineage records about how it was trained."""
    return {"world_size": plan.processes, "strategy": plan.strategy, "backend": plan.backend, "rank_devices": rank_devices_seen}



def train_distributed(kind: str, base_spec: str, rows: list[dict], config, out_dir: Path | str, work_dir: Path | str,
                      processes: int, *, sequences: int, on_log=None, **hooks):  # fmt: skip
    """Train `kind` (dpo | eu) on `rows` over `processes` ranks; the same hooks and TrainResult as
    train_dpo / train_eu, plus the lineage. `rows`: PreferencePair / Dialogue dicts (asdict).

    Before anything starts: every rank's device is checked (exists; on CUDA enough free memory for
    the chosen strategy), so a hopeless run is refused here, not in N half-started ranks."""
    from engine.lora_train import TrainResult, default_lora_r, estimate_bytes, pick_device, resolve_base

    base = resolve_base(base_spec)
    devices = rank_devices(config.device, processes)
    pick_device(devices[0], config.use_4bit)  # 4-bit needs CUDA + bitsandbytes
    need = None
    if devices[0].startswith("cuda"):
        need = estimate_bytes(base, lora_r=config.lora_r or default_lora_r(devices[0]), use_4bit=config.use_4bit,
                              max_length=config.max_length, batch=config.batch_size, sequences=sequences)  # fmt: skip
    plan = plan_launch(devices, need_bytes=need, use_4bit=config.use_4bit)
    layer = decoder_layer_class(base.path) if plan.strategy == "fsdp" else None
    payload = {"base": base_spec, "settings": config.to_dict(), "rows": rows, "out_dir": str(Path(out_dir)),
               "resume_from": hooks.get("resume_from")}  # fmt: skip
    result = run_ranks(kind, payload, plan, Path(work_dir), layer_class=layer, progress=hooks.get("progress"),
                       stop=hooks.get("stop"), on_metrics=hooks.get("on_metrics"), on_checkpoint=hooks.get("on_checkpoint"),
                       on_log=on_log)  # fmt: skip
    metrics = {**result["metrics"], "world_size": plan.processes}
    return TrainResult(result["adapter_dir"], metrics, int(result["steps"]), result["lineage"])


@dataclass(frozen=True)
class Suggestion:
    """What `apc doctor` proposes for training the configured base on this box."""

    processes: int
    strategy: str  # single | ddp | fsdp | none
    use_4bit: bool
    command: str  # the flags to add to `apc dpo train`
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def suggest(base_spec: str, gpus: list[dict], *, bnb: bool, lora_r: int = 128, max_length: int = 1024) -> Suggestion:
    """`--processes` and strategy for `base_spec` on these GPUs (see gpu_inventory); on a CPU box,
    what runs instead. The estimate is the preflight's (engine.lora_train.estimate_bytes) for one DPO pair."""
    from engine.backends import parse_spec
    from engine.lora_train import estimate_bytes, resolve_base

    try:
        parsed = parse_spec(base_spec)
    except ConfigError as exc:
        return Suggestion(0, "none", False, "", str(exc))
    if parsed.scheme not in ("tiny", "hf") or parsed.adapter:
        return Suggestion(0, "none", False, "", f"{base_spec} cannot be a training base (API model or adapter)")
    if not gpus:
        return Suggestion(1, "single", False, "--device cpu",
                          "no CUDA GPU: training runs in one CPU process (fp32, slow for real models); "
                          "`--device cpu --processes 2` runs 2 gloo ranks, which only tests the multi-process path")  # fmt: skip
    free = [g["free"] for g in gpus]
    n = len(gpus)
    base = resolve_base(base_spec)
    try:
        plain = estimate_bytes(base, lora_r=lora_r, use_4bit=False, max_length=max_length, batch=1, sequences=2)
        quant = estimate_bytes(base, lora_r=lora_r, use_4bit=True, max_length=max_length, batch=1, sequences=2)
    except (OSError, ValueError) as exc:
        return Suggestion(n, "ddp", False, f"--processes {n}",
                          f"cannot read {base.path!r}'s config to size it ({str(exc).splitlines()[0][:100]}); DDP over all GPUs if it fits one")  # fmt: skip
    options = [(plain, False)] + ([(quant, True)] if bnb else [])
    for need, four in options:
        try:
            strategy = choose_strategy(need, free, use_4bit=four)
        except ConfigError:
            continue
        procs = n if strategy == "fsdp" or n > 1 else 1
        flags = f"--processes {procs}" + (" --4bit" if four else "")
        where = "one full replica per GPU (DDP)" if strategy == "ddp" else f"weights sharded over {n} GPUs (FSDP)"
        nccl = "" if n == 1 else ", NCCL between ranks"
        return Suggestion(procs, strategy, four, flags, f"about {need / GIB:.1f} GiB per replica{' in 4-bit' if four else ''}: {where}{nccl}")
    return Suggestion(n, "none", False, "", f"about {plain / GIB:.1f} GiB ({quant / GIB:.1f} GiB in 4-bit) does not fit "
                      f"{n} GPU(s) with {min(free) / GIB:.1f} GiB free at the least; use a smaller base or more GPUs")  # fmt: skip
