"""`apc models pull PROFILE|SPEC`: download checkpoints into the Hugging Face cache."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOpt, emit

app = typer.Typer(no_args_is_help=True)


@app.command("pull")
def pull(
    target: Annotated[str, typer.Argument(help="paper | multilingual | hf:ORG/NAME[+lora:ORG/ADAPTER] | judge:hf:ORG/NAME")],
    revision: Annotated[str | None, typer.Option("--revision", help="Branch, tag or commit (default: main).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Download (or finish downloading) a profile's discriminators or a chat model into the HF cache.

    Progress is shown; an interrupted download resumes where it stopped. HF_ENDPOINT selects a
    mirror, HF_TOKEN authorises gated or private repos (never printed), HF_HOME moves the cache.
    """
    from engine.hub import pull as pull_repo
    from engine.hub import repos_for

    repos = repos_for(target)
    pulled = [pull_repo(repo, revision=revision, progress=not as_json) for repo in repos]
    rows = [{"repo": p.repo_id, "path": p.path, "files": p.files, "weights": p.weights} for p in pulled]

    def render(rows: list[dict]) -> None:
        for r in rows:
            typer.echo(f"{r['repo']}: {r['files']} files, weights {r['weights']}, in {r['path']}")
        typer.echo(f"{target} is in the Hugging Face cache and works offline now")

    emit(rows, as_json, render)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models", help="Download checkpoints (discriminator profiles, hf: chat models) into the HF cache.")
