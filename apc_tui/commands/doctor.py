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

        cuda = torch.cuda.is_available()
        mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        checks.append(_check("torch", True, f"{torch.__version__}"))
        if cuda:
            free, total = torch.cuda.mem_get_info()
            checks.append(_check("cuda", True, f"{torch.cuda.get_device_name(0)}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"))
        else:
            checks.append(_check("cuda", False, "no CUDA device", "CPU works for everything; a GPU speeds up generation and DPO (4-bit needs CUDA)"))
        checks.append(_check("mps", mps, "Apple GPU" if mps else "not available", "only on Apple silicon; not needed"))
    except ImportError as exc:
        checks.append(_check("torch", False, str(exc), "run `make setup` (installs torch==2.13.0)"))
        cuda = False
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


def doctor(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    checks = gather(ctx.find_root().obj.settings)

    def render(rows):
        for r in rows:
            mark = "ok " if r["ok"] else "-- "
            typer.echo(f"{mark} {r['check']:<20} {r['detail']}")
            if r["fix"]:
                typer.echo(f"{'':4}{'':<20} fix: {r['fix']}")

    emit(checks, as_json, render)
