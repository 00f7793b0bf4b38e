"""`apc dpo pairs|list|train|export` and `apc adapters list`, `apc eu train`.

Long commands run as jobs (`--detach` returns the job id at once); see commands/jobs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (CharacterOpt, ConcurrencyOpt, DetachOpt, DeviceOpt, JsonOpt, KOpt, ProfileOpt, ScoringWorkersOpt, TimeoutOpt,
                     echo_table, emit, model_or_setting, services, use_timeout)
from .jobs import k_or_setting, run_job

app = typer.Typer(no_args_is_help=True)
adapters_app = typer.Typer(no_args_is_help=True)
eu_app = typer.Typer(no_args_is_help=True)

TrainModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Base model to train: tiny | hf:ID_OR_PATH (default: APC_MODEL / config / tiny).")]
GenModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model that samples the candidates: tiny | hf:... | openai:... (default: APC_MODEL / config / tiny).")]
NameOpt = Annotated[str, typer.Option("--name", help="Adapter name (unique), e.g. koishi-dpo-1.")]
EpochsOpt = Annotated[float | None, typer.Option("--epochs", help="Passes over the data (DPO default 10, EU 3).")]
LoraROpt = Annotated[int | None, typer.Option("--lora-r", help="LoRA rank (default 128 on GPU, 16 on CPU).")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate (default 2e-4).")]
FourBitOpt = Annotated[bool, typer.Option("--4bit", help="QLoRA: 4-bit base (CUDA + bitsandbytes only).")]
MaxStepsOpt = Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps (quick runs).")]
MaxLenOpt = Annotated[int | None, typer.Option("--max-length", help="Max tokens of prompt + reply.")]
SaveStepsOpt = Annotated[int | None, typer.Option("--save-steps", help="Resumable checkpoint every N steps (default 50).")]
ProcessesOpt = Annotated[int | None, typer.Option(
    "--processes", help="Data-parallel ranks through accelerate (default: every visible CUDA GPU, else 1; "
                        "with --device cpu, N gloo processes).")]  # fmt: skip
AccumOpt = Annotated[int | None, typer.Option("--grad-accum", help="Gradient accumulation steps (default 8).")]


TINY_MARGIN_NOTE = ("note: the tiny model's replies all score alike, so pairs use --margin 0 (any APC difference); "
                    "pass --model hf:... for real pairs with the paper's 0.2")  # fmt: skip


def pairs_margin(model: str, margin: float | None) -> tuple[float, str]:
    """(margin, note): --margin, else the paper's 0.2 — or 0 for the tiny model, whose replies all
    score alike (a 0.2 margin would keep nothing); the note says so up front, with what to pass."""
    from engine.backends import is_meaningless

    from ..services.training import DEFAULT_MARGIN

    if margin is not None:
        return margin, ""
    if is_meaningless(model):
        return 0.0, TINY_MARGIN_NOTE
    return DEFAULT_MARGIN, ""


def warn_untrusted(ctx: typer.Context, character: str, profile: str | None, action: str) -> None:
    """Before work that learns from APC: say on stderr when the scorer is not to be trusted for
    this character's language (the embedded scorer on Chinese)."""
    from ..trust import trust_for

    language = services(ctx).characters.repo.row(character)["language"]
    trust = trust_for(profile or services(ctx).settings.profile, language)
    if trust.warn_training:
        typer.echo(f"warning: {trust.warning(action)}", err=True)


def _done_line(row: dict) -> str:
    return f"job {row['id']} done: {row['artifacts']}"


@app.command("pairs")
def pairs(
    ctx: typer.Context,
    character: CharacterOpt,
    model: GenModelOpt = None,
    method: Annotated[str, typer.Option("--method", help="Prompting method: none | lcm | rag.")] = "rag",
    k: KOpt = None,
    max_pairs: Annotated[int, typer.Option("--max", help="Stop after this many kept pairs (paper: ~100).")] = 100,
    margin: Annotated[float | None, typer.Option("--margin", help="Keep a pair when |APC(a) - APC(b)| > margin (default 0.2; 0 with the tiny model).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Upper bound on each reply's length in tokens.")] = 160,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    scoring_workers: ScoringWorkersOpt = None,
    concurrency: ConcurrencyOpt = 1,
    detach: DetachOpt = False,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sample two replies per train query, score both with APC, keep pairs that differ by > margin."""
    use_timeout(ctx, timeout)
    svc = services(ctx).training
    model = model_or_setting(ctx, model)
    margin, note = pairs_margin(model, margin)
    config, cid = svc.pairs_config(character, model, method=method, k=k_or_setting(ctx, k), max_pairs=max_pairs, margin=margin,
                                   profile=profile, device=device, max_new_tokens=max_new_tokens,
                                   scoring_workers=scoring_workers, concurrency=concurrency)  # fmt: skip
    if note:
        typer.echo(note, err=True)
    warn_untrusted(ctx, config["character"], config["profile"], "building DPO pairs")
    run_job(ctx, "pairs", config, character_id=cid, detach=detach, as_json=as_json,
            render=lambda d: typer.echo(f"{d['pairs_kept']} pairs kept from {d['queries']} queries (job {d['job_id']}); "
                                        f"see `apc dpo list --character {config['character']!r}`"))


def _apc_cell(chosen: float | None, rejected: float | None) -> str:
    """'22.061 > 22.058 (+0.003)': enough digits to tell the two apart, and the margin."""
    from ..numbers import fixed, margin_digits, signed

    if chosen is None:
        return ""
    if rejected is None:
        return fixed(chosen)
    digits = margin_digits(chosen, rejected)
    return f"{fixed(chosen, digits)} > {fixed(rejected, digits)} ({signed(chosen - rejected, digits)})"


@app.command("list")
def list_(
    ctx: typer.Context,
    character: CharacterOpt,
    source: Annotated[str | None, typer.Option("--source", help="apc | human | edited")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The character's training pairs with provenance (APC, human label or edited ideal reply)."""
    rows = services(ctx).training.list_pairs(character, source)

    def render(rows: list[dict]) -> None:
        cells = [{
            **r,
            "apc": _apc_cell(r["chosen_apc"], r["rejected_apc"]),
            "who": r["annotator"] or "", "chosen_s": r["chosen"].replace("\n", " "), "rejected_s": r["rejected"].replace("\n", " "),
        } for r in rows]  # fmt: skip
        echo_table(cells, [("id", "ID"), ("source", "SOURCE"), ("apc", "APC"), ("who", "BY"), ("chosen_s", "CHOSEN"), ("rejected_s", "REJECTED")],
                   empty="no pairs yet: `apc dpo pairs --character NAME --model SPEC` or label replies in the TUI")
        if rows:
            by = {s: sum(r["source"] == s for r in rows) for s in ("apc", "human", "edited")}
            typer.echo(f"{len(rows)} pairs: {by['apc']} apc, {by['human']} human, {by['edited']} edited")

    emit(rows, as_json, render)


def _train_job(ctx: typer.Context, kind: str, character: str, model: str, name: str, *, detach: bool, as_json: bool,
               processes: int | None = None, **settings) -> None:  # fmt: skip
    """Run a `dpo` or `eu` training job; flags left unset (None, False) keep the engine's defaults."""
    settings = {k: v for k, v in settings.items() if v is not None and v is not False}
    model = model_or_setting(ctx, model, trainable=True)
    config, cid = services(ctx).finetune.train_config(kind, character, model, name, settings, processes)
    if kind == "dpo" and services(ctx).training.list_pairs(character, "apc"):
        warn_untrusted(ctx, character, None, "training")
    run_job(ctx, kind, config, character_id=cid, detach=detach, as_json=as_json, render=_render_adapter)


@app.command("train")
def train(
    ctx: typer.Context,
    character: CharacterOpt,
    name: NameOpt,
    model: TrainModelOpt = None,
    epochs: EpochsOpt = None,
    lora_r: LoraROpt = None,
    beta: Annotated[float | None, typer.Option("--beta", help="DPO beta (default 0.1).")] = None,
    lr: LrOpt = None,
    four_bit: FourBitOpt = False,
    weighted: Annotated[bool, typer.Option("--weighted", help="Weight each pair by its APC gap (paper Eq. 9 variant).")] = False,
    max_steps: MaxStepsOpt = None,
    max_length: MaxLenOpt = None,
    grad_accum: AccumOpt = None,
    save_steps: SaveStepsOpt = None,
    device: DeviceOpt = None,
    processes: ProcessesOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA adapter with DPO on the character's pairs (the base model is the reference)."""
    _train_job(ctx, "dpo", character, model, name, detach=detach, as_json=as_json, processes=processes, epochs=epochs, lora_r=lora_r, beta=beta,
               learning_rate=lr, use_4bit=four_bit, weighted=weighted, max_steps=max_steps, max_length=max_length,
               grad_accum=grad_accum, save_steps=save_steps, device=device)  # fmt: skip


def _render_adapter(d: dict) -> None:
    m = d.get("metrics", {})
    loss = f"loss {m.get('first_loss', float('nan')):.4f} -> {m.get('loss', float('nan')):.4f}" if "loss" in m else ""
    ranks = f" on {m['world_size']} processes" if m.get("world_size", 1) > 1 else ""
    typer.echo(f"adapter {d['adapter']!r} trained in {m.get('steps', '?')} steps{ranks}; {loss}")
    if "rewards/margins" in m:
        typer.echo(f"reward margin {m['rewards/margins']:.4f}, accuracy {m.get('rewards/accuracies', float('nan')):.2f}")
    typer.echo(f"load it with: --model {d['spec']}")


@app.command("export")
def export(
    ctx: typer.Context,
    character: CharacterOpt,
    fmt: Annotated[str, typer.Option("--format", "-f", help="trl | llama-factory | openrlhf | hf")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File (trl, openrlhf) or new directory (llama-factory, hf).")],
    as_json: JsonOpt = False,
) -> None:
    """Export the training pairs for another trainer (no keys, no local paths).

    \b
    trl            JSON Lines (prompt/chosen/rejected conversations): TRL's DPOTrainer reads it as is.
    llama-factory  a folder with the sharegpt ranking file and dataset_info.json.
    openrlhf       JSON Lines + `margin` (the APC gap). Train with
                   --apply_chat_template --prompt_key prompt --chosen_key chosen --rejected_key rejected
                   (openrlhf.cli.train_dpo; train_rm reads `margin` with --margin_loss).
    hf             a folder in the Hub's layout: README.md (dataset card) + data/*.parquet, ready for
                   load_dataset(FOLDER) and push_to_hub; arrow/ holds the same rows for load_from_disk.
    """
    from engine.dpo_export import OPENRLHF_FLAGS

    files = services(ctx).training.export(character, fmt, out)

    def render(d: dict) -> None:
        typer.echo("wrote " + ", ".join(d["files"]))
        if fmt == "openrlhf":
            typer.echo(f"train with: python -m openrlhf.cli.train_dpo --dataset {out} {OPENRLHF_FLAGS} ...")

    emit({"format": fmt, "files": [str(f) for f in files]}, as_json, render)


@adapters_app.command("list")
def adapters_list(
    ctx: typer.Context,
    character: Annotated[str | None, typer.Option("--character", "-c", help="Only this character's adapters.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Trained adapters with their lineage (base model, pairs hash, metrics, job)."""
    rows = services(ctx).finetune.list_adapters(character)

    def render(rows: list[dict]) -> None:
        cells = [{**r, "loss": f"{r['metrics'].get('loss', float('nan')):.3f}" if "loss" in r["metrics"] else "",
                  "pairs": len(r["pair_ids"]) if r["pair_ids"] is not None else "", "ok": "" if r["present"] else "MISSING"}
                 for r in rows]  # fmt: skip
        echo_table(cells, [("name", "NAME"), ("kind", "KIND"), ("character", "CHARACTER"), ("base_model", "BASE"),
                           ("pairs", "PAIRS"), ("loss", "LOSS"), ("job_id", "JOB"), ("ok", "FILES"), ("created_at", "CREATED")],
                   empty="no adapters yet: `apc dpo train` or `apc eu train`")  # fmt: skip

    emit(rows, as_json, render)


@eu_app.command("train")
def eu_train(
    ctx: typer.Context,
    character: CharacterOpt,
    name: NameOpt,
    model: TrainModelOpt = None,
    epochs: EpochsOpt = None,
    lora_r: LoraROpt = None,
    lr: LrOpt = None,
    four_bit: FourBitOpt = False,
    max_steps: MaxStepsOpt = None,
    max_length: MaxLenOpt = None,
    grad_accum: AccumOpt = None,
    save_steps: SaveStepsOpt = None,
    device: DeviceOpt = None,
    processes: ProcessesOpt = None,
    detach: DetachOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Experience upload: LoRA SFT on dialogues from the statements (evaluate it with --methods eu)."""
    _train_job(ctx, "eu", character, model, name, detach=detach, as_json=as_json, processes=processes, epochs=epochs, lora_r=lora_r,
               learning_rate=lr, use_4bit=four_bit, max_steps=max_steps, max_length=max_length, grad_accum=grad_accum,
               save_steps=save_steps, device=device)  # fmt: skip


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="dpo", help="Preference pairs (APC + human labels), DPO training and exports.")
    root.add_typer(adapters_app, name="adapters", help="Trained LoRA adapters and their lineage.")
    root.add_typer(eu_app, name="eu", help="Experience upload: fine-tune the persona into a LoRA adapter.")
