"""Device and dtype choice for every model the engine loads (never a hard-coded `cuda:0`)."""

from __future__ import annotations

import re

from .errors import ConfigError

_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(spec: str | None = "auto") -> str:
    """'auto' -> cuda if available, else mps, else cpu; an explicit device must exist here."""
    spec = (spec or "auto").strip().lower()
    if not _SPEC.match(spec):
        raise ConfigError(f"device {spec!r} is not known; use auto, cpu, cuda, cuda:N or mps")
    if spec == "cpu":
        return spec  # always there; no need to import torch (~2 s) to say so
    import torch

    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no visible CUDA GPU"
            raise ConfigError(
                f"device {spec!r} asked for, but this machine has {build}; use --device cpu or auto (or set APC_DEVICE=auto)"
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) are visible; use cuda:0 or auto"
            )
    if spec == "mps" and not has_mps:
        raise ConfigError("device 'mps' asked for, but Apple MPS is not available here; use --device cpu or auto")
    return spec


def dtype_name(device: str) -> str:
    """fp32 on CPU; bf16 on a GPU that supports it, else fp16."""
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "float16"
    return "float32"


def torch_dtype(device: str):
    import torch

    return getattr(torch, dtype_name(device))


def nvidia_gpu_present() -> bool:
    """Does the NVIDIA driver list a GPU? Answers without importing torch (~2 s), so a model that
    runs on the CPU without torch can decide "auto" cheaply; Linux only, False elsewhere."""
    from pathlib import Path

    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def gpu_inventory() -> list[dict]:
    """Every visible CUDA GPU: index, name, free/total bytes, compute capability. [] without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        major, minor = torch.cuda.get_device_capability(i)
        out.append({"index": i, "name": torch.cuda.get_device_name(i), "free": int(free), "total": int(total),
                    "capability": f"{major}.{minor}"})  # fmt: skip
    return out


def nccl_available() -> bool:
    """Can ranks on several GPUs talk NCCL (the torch build has it)?"""
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_nccl_available())
