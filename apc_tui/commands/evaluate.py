"""`apc eval` (ΔAPC per method, base vs adapter), `apc agreement` (humans vs APC), `apc pipeline`."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.errors import InputError

from .common import (CharacterOpt, ConcurrencyOpt, DetachOpt, DeviceOpt, JsonOpt, KOpt, ProfileOpt, ScoringWorkersOpt, TimeoutOpt,
                     echo_table, emit, model_or_setting, services, use_timeout)
from .jobs import k_or_setting, run_job

MethodsOpt = Annotated[str, typer.Option("--methods", help="Comma list of none, lcm, rag, eu.")]
TokensOpt = Annotated[int, typer.Option("--max-new-tokens", help="Upper bound on each reply's length in tokens.")]


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise InputError("--methods is empty; give e.g. none,lcm,rag")
    return methods


def render_results(d: dict) -> None:
    origin = d.get("query_origin")
    if origin and origin != "eval":
        typer.echo(f"note: no eval-split queries; used {'train-split queries' if origin == 'train' else 'one question per statement'}")
    for note in d.get("notes", []):
        typer.echo(f"note: {note}")
    rows = [{
        **r,
        "delta": f"{r['delta_apc_mean']:+.3f}", "ci": f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
        "act": f"{r['active_mean']:.3f}", "pas": f"{r['passive_mean']:.3f}", "apc_s": f"{r['apc_mean']:.3f}",
    } for r in d["results"]]  # fmt: skip
    echo_table(rows, [("method", "METHOD"), ("variant", "VARIANT"), ("n", "N"), ("delta", "ΔAPC"), ("ci", "95% CI"),
                      ("act", "ACTIVE"), ("pas", "PASSIVE"), ("apc_s", "APC")])  # fmt: skip
    typer.echo(f"evaluation run {d['run_id']}")


def eval_cmd(
    ctx: typer.Context,
    character: CharacterOpt,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Base model spec: tiny | hf:... | openai:... (default: APC_MODEL / config / tiny).")] = None,
    methods: MethodsOpt = "none,lcm,rag",
    adapter: Annotated[str | None, typer.Option("--adapter", help="Also evaluate base + this adapter (see `apc adapters list`).")] = None,
    eu_adapter: Annotated[str | None, typer.Option("--eu-adapter", help="EU adapter for method eu (default: the latest).")] = None,
    queries: Annotated[int | None, typer.Option("--queries", help="Use the first N eval queries.")] = None,
    k: KOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (reproducible replies).")] = 0,
    max_new_tokens: TokensOpt = 160,
    scoring_workers: ScoringWorkersOpt = None,
    concurrency: ConcurrencyOpt = 1,
    detach: DetachOpt = False,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate per method for the eval queries, score with APC, report ΔAPC with a 95% interval."""
    use_timeout(ctx, timeout)
    config, cid = services(ctx).evaluation.eval_config(
        character, model_or_setting(ctx, model), _methods(methods), adapter=adapter, eu_adapter=eu_adapter, queries=queries, k=k_or_setting(ctx, k),
        profile=profile, device=device, seed=seed, max_new_tokens=max_new_tokens, scoring_workers=scoring_workers,
        concurrency=concurrency,
    )  # fmt: skip
    run_job(ctx, "eval", config, character_id=cid, detach=detach, as_json=as_json, render=render_results)


def agreement_cmd(
    ctx: typer.Context,
    character: Annotated[str | None, typer.Option("--character", "-c", help="Only this character's labels.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """How often APC prefers the reply humans preferred; Cohen's / Fleiss' kappa between annotators."""
    data = services(ctx).evaluation.agreement(character)

    def fmt(x) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    def render(d: dict) -> None:
        typer.echo(f"{d['preferences']} labels on {d['items']} reply pairs by {len(d['annotators'])} annotator(s)")
        typer.echo(f"APC agrees with humans on {fmt(d['apc_agreement'])} of {d['apc_compared']} a/b labels "
                   f"(Cohen's kappa APC vs humans: {fmt(d['apc_cohen_kappa'])})")
        if "cohen_kappa" in d:
            typer.echo(f"Cohen's kappa between {' and '.join(d['annotators'])}: {fmt(d['cohen_kappa'])} on {d['kappa_items']} pairs")
        if "fleiss_kappa" in d:
            typer.echo(f"Fleiss' kappa ({len(d['annotators'])} annotators): {fmt(d['fleiss_kappa'])} on {d['kappa_items']} pairs")

    emit(data, as_json, render)


def pipeline_cmd(
    ctx: typer.Context,
    character: CharacterOpt,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to sample pairs with and to train: tiny | hf:ID_OR_PATH (default: APC_MODEL / config / tiny).")] = None,
    teacher: Annotated[str | None, typer.Option("--teacher", help="Teacher for synthesis (none: use the stored queries).")] = None,
    skip_synth: Annotated[bool, typer.Option("--skip-synth", help="Do not synthesize; use the stored queries.")] = False,
    discriminators: Annotated[bool, typer.Option("--discriminators", help="Train the character's own discriminators first.")] = False,
    method: Annotated[str, typer.Option("--method", help="Prompting method for pairs: none | lcm | rag.")] = "rag",
    k: KOpt = None,
    max_pairs: Annotated[int, typer.Option("--max", help="Pairs to keep.")] = 100,
    margin: Annotated[float | None, typer.Option("--margin", help="APC margin for a pair (default 0.2; 0 with the tiny model).")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="DPO epochs (default 10).")] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r", help="LoRA rank.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="DPO optimizer steps cap.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Adapter name (default: derived from the settings).")] = None,
    methods: MethodsOpt = "none,lcm,rag",
    queries: Annotated[int | None, typer.Option("--queries", help="Eval queries to use.")] = None,
    max_new_tokens: TokensOpt = 160,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    detach: DetachOpt = False,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The whole loop as chained jobs; rerun it to continue (finished stages are skipped)."""
    use_timeout(ctx, timeout)
    from ..services.pipeline import pipeline_config

    from .dpo import pairs_margin

    model = model_or_setting(ctx, model, trainable=True)
    margin, note = pairs_margin(model, margin)
    dpo = {"epochs": epochs, "lora_r": lora_r, "max_steps": max_steps}
    config, cid = pipeline_config(services(ctx), character, model, teacher=teacher, skip_synth=skip_synth,
                                  discriminators=discriminators, method=method, k=k_or_setting(ctx, k), max_pairs=max_pairs, margin=margin,
                                  dpo=dpo, eval_methods=tuple(_methods(methods)), eval_queries=queries, name=name,
                                  max_new_tokens=max_new_tokens, profile=profile, device=device)  # fmt: skip
    if note:
        typer.echo(note, err=True)
    run_job(ctx, "pipeline", config, character_id=cid, detach=detach, as_json=as_json,
            render=lambda d: render_results({**d["eval"], "notes": d["eval"].get("notes", [])}))


def register(root: typer.Typer) -> None:
    root.command("eval", help="Evaluate methods (none, lcm, rag, eu) with and without an adapter: ΔAPC with 95% CI.")(eval_cmd)
    root.command("agreement", help="Human-APC agreement and inter-annotator kappa.")(agreement_cmd)
    root.command("pipeline", help="Synthesis -> discriminators -> pairs -> DPO -> evaluation, as resumable jobs.")(pipeline_cmd)
