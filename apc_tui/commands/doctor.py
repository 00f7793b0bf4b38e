"""`apc doctor`: what this machine can do, each missing piece with its fix."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys

import typer

from .common import JsonOpt, emit

PAPER_IDS = {
    "paper": ("KomeijiForce/deberta-v3-large-relevance-12character", "KomeijiForce/deberta-v3-large-nli-12character"),
    "multilingual": (
        "KomeijiForce/xlm-roberta-large-relevance-multilingual-12character",
        "KomeijiForce/xlm-roberta-large-nli-multilingual-12character",
    ),
}


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict:
    return {"check": name, "ok": ok, "detail": detail, "fix": "" if ok else fix}


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except (ImportError, ValueError, OSError):
        return False


def gather(settings) -> list[dict]:
    checks = [_check("python", sys.version_info >= (3, 11), f"{platform.python_version()} ({sys.executable})", "use Python 3.11+")]
    try:
        import torch

        from engine.device import gpu_inventory

        mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        checks.append(_check("torch", True, f"{torch.__version__}"))
        gpus = gpu_inventory()
        cuda = bool(gpus)
        checks.extend(gpu_rows(gpus))
        checks.append(_check("mps", mps, "Apple GPU" if mps else "not available", "only on Apple silicon; not needed"))
    except ImportError as exc:
        checks.append(_check("torch", False, str(exc), "run `make setup` (installs torch==2.13.0)"))
        cuda, gpus = False, []
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    checks.append(
        _check("bitsandbytes", bnb and cuda, "installed" + ("" if cuda else "; 4-bit loading needs CUDA, unavailable here") if bnb else "missing",
               "4-bit (--4bit) needs bitsandbytes and a CUDA GPU; on CPU models load in fp32")
    )
    from engine.resources import data_path

    embedded = (data_path("discriminators", "relevance").is_dir() and data_path("discriminators", "nli").is_dir())
    checks.append(_check("profile embedded", embedded, "shipped in data/discriminators" if embedded else "not built",
                         "run `make discriminators` to train them from data/teacher"))
    for profile, ids in PAPER_IDS.items():
        cached = all(_hub_cached(i) for i in ids)
        checks.append(_check(f"profile {profile}", cached, "in the Hugging Face cache (usable offline)" if cached else "not downloaded",
                             f"needs network once: `apc models pull {profile}` (or `hf download {ids[0]}` and `hf download {ids[1]}`); a GPU is advised"))
    checks.append(_check("model tiny", True, "built locally on first use; output is meaningless text (smoke runs only)"))
    base_url = settings.openai_base_url or os.environ.get("OPENAI_BASE_URL")
    has_key = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("APC_KEY_FILE"))
    checks.append(_check("model openai:*", bool(base_url or has_key), f"base URL {base_url or 'api.openai.com'}; key {'set' if has_key else 'not set'}",
                         "set OPENAI_API_KEY (or APC_KEY_FILE), and OPENAI_BASE_URL for vLLM/Ollama/llama.cpp"))
    checks.append(_check("model hf:*", True, "any local directory works offline; hub ids need network once"))
    if "torch" in sys.modules:
        checks.append(plan_row(settings.model, gpus, bnb and cuda))
    if base_url or settings.model.startswith("openai:"):
        checks.append(server_row(base_url or "https://api.openai.com/v1", settings.model))
    from ..storage import Store

    try:
        store = Store(settings.db_path, migrate=False)
        applied, pending = store.applied_migrations(), store.pending_migrations()
        checks.append(_check("database", True, f"{settings.db_path}: {len(applied)} migrations applied, {len(pending)} pending (applied on next use)"))
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure as a row
        checks.append(_check("database", False, f"{settings.db_path}: {exc}", "pass --db PATH or set APC_DB to a writable file"))
    checks.extend(_places(settings))
    return checks


def _places(settings) -> list[dict]:
    """Where this invocation reads its config and keeps its data (per database: jobs, adapters)."""
    from ..config import config_path
    from ..paths import adapters_dir, db_path, jobs_dir

    config = settings.config_file or config_path()
    used = "read" if settings.config_file is not None else "not present, defaults used"
    explicit = "set by adapters_dir / APC_ADAPTERS_DIR" if settings.adapters_dir is not None else "this database's own"
    return [
        _check("config", True, f"{config} ({used})"),
        _check("data dir", True, str(db_path(settings).parent)),
        _check("adapters dir", True, f"{adapters_dir(settings)} ({explicit})"),
        _check("jobs dir", True, f"{jobs_dir(settings)} (job logs and work folders of this database)"),
    ]
def gpu_rows(gpus: list[dict]) -> list[dict]:
    """One row for CUDA as a whole (count, NCCL), one per GPU (name, memory free/total, compute capability)."""
    if not gpus:
        return [_check("cuda", False, "no CUDA GPU", "CPU works for everything; a GPU speeds up generation and DPO (4-bit needs CUDA)")]
    from engine.device import nccl_available

    nccl = nccl_available()
    rows = [_check("cuda", nccl or len(gpus) == 1, f"{len(gpus)} GPU(s); NCCL {'available' if nccl else 'missing'}",
                   "multi-GPU training needs a torch build with NCCL (the CUDA wheels from pytorch.org have it)")]  # fmt: skip
    for g in gpus:
        rows.append(_check(f"gpu {g['index']}", True, f"{g['name']}: {g['free'] / 2**30:.1f} of {g['total'] / 2**30:.1f} GiB free, "
                                                       f"compute {g['capability']}"))  # fmt: skip
    return rows


def plan_row(model: str, gpus: list[dict], bnb: bool) -> dict:
    """The suggested `--processes` / strategy for training the configured base here."""
    from engine.distributed import suggest

    s = suggest(model, gpus, bnb=bnb)
    if s.strategy == "none":
        return _check("training plan", False, s.why, "train a local base: --model hf:ID_OR_PATH (or tiny)")
    return _check("training plan", True, f"{model}: apc dpo train ... {s.command} ({s.strategy}); {s.why}")


def server_row(base_url: str, model: str) -> dict:
    """An OpenAI-compatible server (vLLM...): reachable, lists the model, returns `n` choices in one request."""
    import httpx

    from engine.errors import ApcError

    from ..config import api_key

    name = model.removeprefix("openai:") if model.startswith("openai:") else None
    fix = "start the server (see the README's vLLM recipe) and set OPENAI_BASE_URL to its /v1 URL"
    try:
        from engine.serving import probe_server

        r = probe_server(base_url, api_key(), name)
    except (httpx.HTTPError, ValueError, ApcError) as exc:
        return _check("model server", False, f"{base_url}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", fix)
    listed = f"{len(r.models)} model(s): {', '.join(r.models[:5])}{' ...' if len(r.models) > 5 else ''}"
    if name is None:
        return _check("model server", True, f"{base_url}: {listed}; set model = \"openai:<one of them>\" to use it")
    if not r.model_listed:
        return _check("model server", False, f"{base_url}: {listed}; {name!r} is not among them", f"set model = \"openai:<a listed id>\"")
    if not r.n_supported:
        return _check("model server", False, f"{base_url}: {name} listed, but n=2 returned {r.n_returned} choice(s)",
                      "this server ignores n: each candidate costs its own request; vLLM and SGLang honour n")  # fmt: skip
    return _check("model server", True, f"{base_url}: {name} listed; n=2 returns 2 choices in one request")


def doctor(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    checks = gather(ctx.find_root().obj.settings)

    def render(rows):
        for r in rows:
            mark = "ok " if r["ok"] else "-- "
            typer.echo(f"{mark} {r['check']:<20} {r['detail']}")
            if r["fix"]:
                typer.echo(f"{'':4}{'':<20} fix: {r['fix']}")

    emit(checks, as_json, render)
