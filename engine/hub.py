"""Downloading checkpoints into the Hugging Face cache (`apc models pull`).

`huggingface_hub.snapshot_download` does the work: progress bars, resuming partial files,
`HF_ENDPOINT` (a mirror) and `HF_TOKEN` (gated or private repos) are its own; the token is never
printed or stored by us. From a repo we take one weights format (safetensors when the repo has
it, else `pytorch_model.bin`) plus configs and tokenizer files, never ONNX/TF/Flax/GGUF copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError, ModelError

PROFILE_REPOS = {
    "paper": ("KomeijiForce/deberta-v3-large-relevance-12character", "KomeijiForce/deberta-v3-large-nli-12character"),
    "multilingual": (
        "KomeijiForce/xlm-roberta-large-relevance-multilingual-12character",
        "KomeijiForce/xlm-roberta-large-nli-multilingual-12character",
    ),
}
_OTHER_FORMATS = ["*.onnx", "*.onnx_data", "onnx/*", "*.h5", "tf_model*", "*.msgpack", "flax_model*", "*.ot", "rust_model*",
                  "*.gguf", "*.tflite", "*.mlmodel", "coreml/*", "openvino/*", "*.ckpt"]  # fmt: skip
_TORCH_PICKLES = ["*.bin", "*.pth", "*.pt"]
USAGE = "give a profile (paper | multilingual) or a model spec hf:ORG/NAME (judge:hf:ORG/NAME works too)"


@dataclass(frozen=True)
class Pulled:
    repo_id: str
    path: str  # the snapshot directory in the HF cache
    files: int
    weights: str  # safetensors | pytorch (.bin) | none


def repos_for(target: str) -> list[str]:
    """The hub repos behind a profile or a model spec; ConfigError when there is nothing to download."""
    target = (target or "").strip()
    if target in PROFILE_REPOS:
        return list(PROFILE_REPOS[target])
    if target == "embedded":
        raise ConfigError("embedded: the embedded discriminators ship with the app; nothing to download")
    if target.startswith("judge:"):
        return repos_for(target.removeprefix("judge:"))
    if target == "tiny":
        raise ConfigError("tiny: the tiny model is built locally on first use; nothing to download")
    if target.startswith("openai:"):
        raise ConfigError(f"{target}: an OpenAI-compatible server holds its own model; nothing to download")
    if target.startswith("hf:"):
        from engine.backends import parse_spec

        spec = parse_spec(target)
        repos = []
        for ref in (spec.name, spec.adapter):
            if ref and not _is_local(ref):
                repos.append(_check_repo_id(ref, target))
        if not repos:
            raise ConfigError(f"{target}: a local directory; nothing to download")
        return repos
    if "=" in target and "rel" in target:
        raise ConfigError(f"{target}: local discriminator paths; nothing to download")
    raise ConfigError(f"{target!r} is not something to pull; {USAGE}")


def _is_local(ref: str) -> bool:
    return ref.startswith(("/", ".", "~")) or Path(ref).expanduser().exists()


def _check_repo_id(ref: str, target: str) -> str:
    parts = ref.split("/")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{target}: {ref!r} is not a hub id (ORG/NAME) nor an existing directory; {USAGE}")
    return ref


def _offline_problem() -> str | None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return f"{var} is set, so nothing can be downloaded; unset it for this command (e.g. `env -u {var} apc models pull ...`)"
    return None


def pull(repo_id: str, *, revision: str | None = None, progress: bool = True) -> Pulled:
    """Download one repo (or resume a partial download) into the HF cache; returns where it is."""
    problem = _offline_problem()
    if problem:
        raise ConfigError(f"{repo_id}: {problem}")
    if not progress:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    http = _http_module()
    where = constants.ENDPOINT
    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
        ignore = list(_OTHER_FORMATS)
        if any(f.endswith(".safetensors") for f in files):
            ignore += _TORCH_PICKLES
            weights = "safetensors"
        elif any(f.endswith(".bin") for f in files):
            weights = "pytorch (.bin)"
        else:
            weights = "none"
        path = snapshot_download(repo_id, revision=revision, ignore_patterns=ignore)
    except GatedRepoError as exc:
        raise ModelError(f"{repo_id}: the repo is gated at {where}; accept its terms on the hub, then set HF_TOKEN") from exc
    except RepositoryNotFoundError as exc:
        raise ModelError(f"{repo_id}: no such repo at {where} (or it is private: set HF_TOKEN); check the id") from exc
    except RevisionNotFoundError as exc:
        raise ModelError(f"{repo_id}: revision {revision!r} not found at {where}; check --revision") from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise ModelError(f"{repo_id}: the hub at {where} answered {status}; retry (partial files resume) or set HF_ENDPOINT to a mirror") from exc
    except (http.HTTPError, OSError) as exc:
        raise ModelError(f"{repo_id}: download from {where} failed ({_short(exc)}); rerun to resume, or set HF_ENDPOINT to a mirror") from exc
    kept = sum(1 for p in Path(path).rglob("*") if p.is_file())
    return Pulled(repo_id, str(path), kept, weights)


def _http_module():
    """The HTTP library huggingface_hub raises from (httpx2 in hub 2.x, httpx before)."""
    try:
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
