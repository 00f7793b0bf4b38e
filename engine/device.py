"""Device choice: `auto` picks cuda, then mps, then cpu; an explicit device must exist."""

from __future__ import annotations

from engine.errors import ConfigError


def resolve_device(device: str = "auto") -> str:
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available here; use --device cpu or auto")
        _, _, index = device.partition(":")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); use cuda:0 ... or auto")
        return device
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device 'mps' requested but Apple MPS is not available here; use --device cpu or auto")
        return device
    if device == "cpu":
        return device
    raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
