"""`apc chat` (one user turn, n scored candidates) and `apc conversations list|show`."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.types import GenerationParams

from .common import CharacterOpt, DeviceOpt, JsonOpt, KOpt, MethodOpt, ModelOpt, ProfileOpt, TimeoutOpt, echo_table, emit, services, use_timeout

MEANINGLESS = "(tiny model: random weights, this text is meaningless)"

QueryOpt = Annotated[str, typer.Option("--query", "-q", help="What the user says.")]
NOpt = Annotated[int, typer.Option("--n", help="Candidates sampled in one generation call.")]
ConversationOpt = Annotated[int | None, typer.Option("--conversation", help="Continue this conversation (see `apc conversations list`).")]
ParentOpt = Annotated[int | None, typer.Option("--parent", help="Branch after this message id (default: the latest turn).")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="Sampling temperature; 0 = greedy.")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")]
MaxTokensOpt = Annotated[int, typer.Option("--max-new-tokens", help="Upper bound on the reply length in tokens.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Fixed seed for reproducible sampling.")]
TemplateOpt = Annotated[str | None, typer.Option("--template", help="hf models without a chat template: a Jinja template or a file holding one.")]
FourBitOpt = Annotated[bool, typer.Option("--load-in-4bit", help="hf models: NF4 4-bit weights via bitsandbytes (CUDA only).")]
ScoreOpt = Annotated[bool, typer.Option("--score/--no-score", help="Score candidates with APC.")]
_DEFAULTS = GenerationParams()


def chat(
    ctx: typer.Context,
    query: QueryOpt,
    character: CharacterOpt = None,
    model: ModelOpt = None,
    method: MethodOpt = None,
    k: KOpt = None,
    n: NOpt = 2,
    conversation: ConversationOpt = None,
    parent: ParentOpt = None,
    profile: ProfileOpt = None,
    device: DeviceOpt = None,
    temperature: TemperatureOpt = _DEFAULTS.temperature,
    top_p: TopPOpt = _DEFAULTS.top_p,
    max_new_tokens: MaxTokensOpt = _DEFAULTS.max_new_tokens,
    seed: SeedOpt = None,
    score: ScoreOpt = True,
    template: TemplateOpt = None,
    load_in_4bit: FourBitOpt = False,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send one user turn to a character and sample n candidates, each scored with APC."""
    from ..services.chat import ChatOptions

    use_timeout(ctx, timeout)
    params = GenerationParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    options = ChatOptions(
        model=model, method=method, k=k, n=n, params=params, profile=profile, score=score, device=device,
        template=read_template(template), load_in_4bit=load_in_4bit,
    )  # fmt: skip
    result = services(ctx).chat.send(character, query, options, conversation_id=conversation, parent_id=parent)
    emit(result, as_json, render_turn)


def read_template(value: str | None) -> str | None:
    """--template: a path to a Jinja file, or the template text itself."""
    from pathlib import Path

    from engine.errors import InputError

    if not value or "{" in value:
        return value
    path = Path(value).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--template {value}: not a readable UTF-8 file nor a Jinja template ({exc}); pass the file or the text") from exc


def render_turn(r: dict) -> None:
    typer.echo(f"conversation {r['conversation_id']}, user message {r['user_message_id']}: {r['character']} via {r['model']} ({r['method']})")
    if r["meaningless"]:
        typer.echo(MEANINGLESS)
    for i, c in enumerate(r["candidates"], 1):
        typer.echo("")
        typer.echo(f"[{i}] message {c['message_id']}: {c['text']}")
        if c["score"]:
            s = c["score"]
            typer.echo(f"    APC {s['apc']:.3f} of {s['n_statements']}   ΔAPC {s['delta_apc']:+.3f}   active {s['active']:.3f}   passive {s['passive']:.3f}")
    if r["candidates"] and r["candidates"][0]["retrieved"]:
        typer.echo("\nstatements in the prompt:")
        for s in r["candidates"][0]["retrieved"]:
            typer.echo(f"  - {s}")


conversations = typer.Typer(no_args_is_help=True)


@conversations.command("list")
def list_(
    ctx: typer.Context,
    character: CharacterOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Most recent conversations shown.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Conversations, newest first."""
    rows = services(ctx).chat.list(character, limit)
    emit(rows, as_json, lambda rows: echo_table(
        rows, [("id", "id"), ("character", "character"), ("messages", "messages"), ("first_query", "first query"), ("last_at", "last")],
        empty="(no conversations yet: run `apc chat --character NAME --query TEXT`)"))  # fmt: skip


@conversations.command("show")
def show(
    ctx: typer.Context,
    conversation_id: Annotated[int, typer.Argument(help="Conversation id.")],
    as_json: JsonOpt = False,
) -> None:
    """Every message of a conversation as a tree (siblings are alternative candidates), with APC scores."""
    emit(services(ctx).chat.show(conversation_id), as_json, render_tree)


def render_tree(conv: dict) -> None:
    typer.echo(f"conversation {conv['id']} with {conv['character']}  {conv['title']}")
    kids: dict = {}
    for m in conv["messages"]:
        kids.setdefault(m["parent_id"], []).append(m)

    def walk(parent, depth: int) -> None:
        for m in kids.get(parent, []):
            who = "user" if m["role"] == "user" else f"{m['role']} [{m['origin']}, {m.get('model_spec') or '-'}]"
            score = f"  APC {m['score']['apc']:.3f} ΔAPC {m['score']['delta_apc']:+.3f}" if m.get("score") else ""
            flag = f" {MEANINGLESS}" if m.get("meaningless") else ""
            typer.echo(f"{'  ' * depth}#{m['id']} {who}: {m['content'][:100]}{score}{flag}")
            walk(m["id"], depth + 1)

    walk(None, 1)


def register(app: typer.Typer) -> None:
    app.command("chat", help="Send a user turn to a character; sample n candidates scored with APC.")(chat)
    app.add_typer(conversations, name="conversations", help="List and show stored conversations (message trees).")
