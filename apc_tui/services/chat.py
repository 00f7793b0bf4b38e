"""Chat use cases: conversations as message trees, sampling n scored candidates per user turn.

A user turn's candidates are siblings; regenerating adds more siblings; branching starts a new
user turn under any assistant message (or beside any user message); an edited ideal response is
a sibling with origin 'edited'.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InputError
from engine.types import GenerationParams, Turn

from ..storage import Store
from ..storage.characters import CharacterRepo
from ..storage.convert import message_to_dict
from ..storage.conversations import ConversationRepo


@dataclass(frozen=True)
class ChatOptions:
    """How candidates are sampled; one help line per field (CLI flags mirror these)."""

    model: str | None = None  # model spec; default: settings.model
    method: str | None = None  # none | lcm | rag | eu; default: settings.method
    k: int | None = None  # statements retrieved for rag; default: settings.k
    n: int = 2  # candidates sampled per user turn (in one generation call)
    params: GenerationParams = GenerationParams()
    profile: str | None = None  # discriminator profile for APC; default: settings.profile
    score: bool = True  # score candidates with APC (rag always needs the relevance model)
    device: str | None = None  # auto | cpu | cuda | cuda:N | mps; default: settings.device
    template: str | None = None  # hf: a Jinja chat template for models that ship none
    load_in_4bit: bool = False  # hf: NF4 quantisation through bitsandbytes (CUDA only)

    def model_opts(self) -> dict:
        return {k: v for k, v in (("template", self.template), ("load_in_4bit", self.load_in_4bit)) if v}


class ChatService:
    def __init__(self, settings, store: Store, models, scoring):
        self.settings = settings
        self.store = store
        self.models = models
        self.scoring = scoring
        self.repo = ConversationRepo(store)
        self.characters = CharacterRepo(store)

    # -- reads -------------------------------------------------------------------------
    def list(self, character: str | None = None, limit: int = 50) -> list[dict]:
        cid = self.characters.row(character)["id"] if character else None
        return self.repo.summaries(cid, limit)

    def show(self, conversation_id: int) -> dict:
        conv = self.repo.row(conversation_id)
        rows = self.repo.messages(conversation_id)
        scores = self.repo.scores.latest_for_messages([m["id"] for m in rows if m["role"] == "assistant"])
        messages = []
        for m in rows:
            d = _public(m)
            if m["id"] in scores:
                d["score"] = _score_dict(scores[m["id"]])
            messages.append(d)
        character = self.characters.get_by_id(conv["character_id"]).name
        return {**conv, "character": character, "messages": messages}

    def path(self, message_id: int) -> list[dict]:
        return [_public(m) for m in self.repo.path(message_id)]

    # -- writes ------------------------------------------------------------------------
    def new_conversation(self, character: str, title: str = "") -> int:
        return self.repo.create(self.characters.row(character)["id"], title)

    def send(
        self,
        character: str | None,
        query: str,
        options: ChatOptions = ChatOptions(),
        *,
        conversation_id: int | None = None,
        parent_id: int | None = None,
        on_delta=None,
        progress=None,
    ) -> dict:
        """Add a user turn after `parent_id` (default: the conversation's latest turn) and sample candidates.

        With `on_delta(i, text_so_far)` the candidates are streamed one after another (see
        `engine.chat.respond_streaming`, which also calls `progress`); the result is stored the same.
        """
        query = (query or "").strip()
        if not query:
            raise InputError("the query is empty; pass --query with what the user says")
        explicit_parent = parent_id is not None
        if parent_id is not None:
            parent = self.repo.message(parent_id)
            if conversation_id is not None and parent["conversation_id"] != conversation_id:
                raise InputError(f"message {parent_id} belongs to conversation {parent['conversation_id']}, not {conversation_id}")
            conversation_id = parent["conversation_id"]
            if parent["role"] == "user":  # branching from a user turn: a new user sibling
                parent_id = parent["parent_id"]
        self._check_options(options)
        if conversation_id is None:
            if not character:
                raise InputError("give --character for a new conversation (or --conversation ID to continue one)")
            character_id = self.characters.row(character)["id"]
        else:
            self._check_character(conversation_id, character)
            character_id = self.repo.row(conversation_id)["character_id"]
            if not explicit_parent:
                parent_id = self.repo.latest_leaf(conversation_id)
        history = [*self.repo.turns(parent_id), Turn("user", query)]
        # generate first, store after: a refused or failed turn leaves no conversation and no user message
        sampled = self._generate(character_id, history, options, on_delta, progress)
        with self.store.transaction():
            if conversation_id is None:
                conversation_id = self.repo.create(character_id, query[:60])
            user_id = self.repo.add_user(conversation_id, parent_id, query)
            return self._store(conversation_id, user_id, sampled)

    def regenerate(self, user_message_id: int, options: ChatOptions = ChatOptions(), *, on_delta=None, progress=None) -> dict:
        """More candidates for an existing user turn (new siblings of its replies)."""
        self._check_options(options)
        m = self.repo.message(user_message_id)
        if m["role"] != "user":
            user_message_id = m["parent_id"]  # given a candidate: regenerate its turn
            m = self.repo.message(user_message_id)
        character_id = self.repo.row(m["conversation_id"])["character_id"]
        sampled = self._generate(character_id, self.repo.turns(user_message_id), options, on_delta, progress)
        return self._store(m["conversation_id"], user_message_id, sampled)

    def branch(self, message_id: int, query: str, options: ChatOptions = ChatOptions(), *, on_delta=None, progress=None) -> dict:
        """A new user turn after an assistant message, or an alternative to a user message."""
        return self.send(None, query, options, parent_id=message_id, on_delta=on_delta, progress=progress)

    def edit(self, message_id: int, text: str, *, score: bool = True, profile: str | None = None) -> dict:
        """Store an ideal response as a sibling of `message_id` (origin 'edited'), scored like the others."""
        text = (text or "").strip()
        if not text:
            raise InputError("the edited response is empty; write the reply the character should give")
        new_id = self.repo.add_edited(message_id, text)
        out = {"message_id": new_id, "text": text, "origin": "edited"}
        if score:
            m = self.repo.message(new_id)
            character = self.characters.get_by_id(self.repo.row(m["conversation_id"])["character_id"])
            query = self.repo.message(m["parent_id"])["content"]
            enabled = character.enabled_statements
            if enabled:
                scorer = self.scoring.scorer(profile, character=character.id)
                s = scorer.score(character.name, [x.text for x in enabled], query, [text])[0]
                self.repo.scores.save(s, query=query, character_id=character.id, message_id=new_id, statement_ids=[x.id for x in enabled])
                out["score"] = _score_dict(s)
        return out

    # -- internals ---------------------------------------------------------------------
    def _check_character(self, conversation_id: int, character: str | None) -> None:
        conv = self.repo.row(conversation_id)
        if character and self.characters.row(character)["id"] != conv["character_id"]:
            raise InputError(f"conversation {conversation_id} is with another character; drop --character or start a new one")

    def _check_options(self, options: ChatOptions) -> None:
        """Every option checked before anything loads or is stored (the CLI checks its flags earlier still)."""
        from ..validation import NUMBER_BOUNDS, check_device, check_method, check_model_spec, check_profile
        from engine.checks import number

        number("--n", options.n, NUMBER_BOUNDS["--n"])
        check_method(options.method or self.settings.method)
        number("--k", options.k if options.k is not None else self.settings.k, NUMBER_BOUNDS["--k"])
        check_model_spec(options.model or self.settings.model)
        if options.profile:
            check_profile(options.profile)
        if options.device:
            check_device(options.device)

    def _generate(self, character_id: int, history: list, options: ChatOptions, on_delta=None, progress=None) -> dict:
        """Sample and score n candidates for `history` (ending with the user turn); writes nothing."""
        from engine.chat import respond, respond_streaming

        character = self.characters.get_by_id(character_id)
        method = options.method or self.settings.method
        k = options.k if options.k is not None else self.settings.k
        model = self.models.get(options.model, options.device, **options.model_opts())
        needs_scorer = options.score or method == "rag"
        scorer = self.scoring.scorer(options.profile, options.device, character=character.id) if needs_scorer and character.enabled_statements else None
        args = (model, character, list(history), method, k, options.n, options.params, scorer if needs_scorer else None)
        if on_delta is None:  # the CLI: n candidates in one generation call
            candidates = respond(*args)
        else:
            candidates = respond_streaming(*args, on_delta=on_delta, progress=progress)
        if not options.score:
            candidates = [_without_score(c) for c in candidates]
        return {"character": character, "model": model, "method": method, "k": k, "candidates": candidates, "query": history[-1].content}

    def _store(self, conversation_id: int, user_id: int, sampled: dict) -> dict:
        character, model, method, k, candidates = (sampled[x] for x in ("character", "model", "method", "k", "candidates"))
        enabled = character.enabled_statements
        ids = self.repo.add_candidates(
            conversation_id, user_id, candidates, k=k if method == "rag" else None, query=sampled["query"],
            character_id=character.id, statement_ids=[s.id for s in enabled],
        )  # fmt: skip
        return {
            "conversation_id": conversation_id,
            "user_message_id": user_id,
            "character": character.name,
            "model": model.spec,
            "meaningless": bool(model.meaningless),
            "method": method,
            "k": k if method == "rag" else None,
            "n_statements": len(enabled),
            "candidates": [
                {
                    "message_id": mid,
                    "text": c.text,
                    "meaningless": bool(model.meaningless),
                    "retrieved": list(c.retrieved),
                    "score": _score_dict(c.score) if c.score else None,
                }
                for mid, c in zip(ids, candidates, strict=True)
            ],
        }


def _without_score(c):
    from dataclasses import replace

    return replace(c, score=None)


def _public(row: dict) -> dict:
    from engine.backends import is_meaningless

    d = message_to_dict(row)
    d["meaningless"] = is_meaningless(row.get("model_spec"))
    return d


def _score_dict(score) -> dict:
    d = score.to_dict()
    d["n_statements"] = score.n_statements
    d["profile"] = score.profile
    return d
