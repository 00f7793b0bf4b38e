"""Chat: a conversation tree per character; two candidates per user turn side by side, streamed as
they are generated, then scored by APC; the WHY panel, votes, ideal-response edits, regeneration,
branching and the exact prompt."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Tree
from textual.worker import Worker

from ..widgets.candidate import CandidatePanel
from ..widgets.conversation import ConversationTree, HistoryView
from ..widgets.why import WhyTable
from .base import WorkbenchScreen, statement_width
from .chat_state import ChatState, DeltaThrottle, prompt_text
from .dialogs import TextPrompt, TextViewer

METHODS = ("none", "lcm", "rag", "eu")
CHOICE_MARKS = {"a": ("✓ preferred", "✗"), "b": ("✗", "✓ preferred"), "tie": ("= tie", "= tie"), "both_bad": ("✗ both bad", "✗ both bad")}
TINY_BANNER = "⚠ model tiny: random weights, its text is MEANINGLESS (a smoke test only)"


class ChatScreen(WorkbenchScreen):
    MODE = "chat"
    LABEL = "Chat"
    HOME = "#cand-a"
    BINDINGS = [
        # short footer words (80 columns); the tooltip is the long name (help, command palette)
        Binding("1", "vote('a')", "A", tooltip="Prefer A"),
        Binding("2", "vote('b')", "B", tooltip="Prefer B"),
        Binding("equals_sign", "vote('tie')", "Tie", key_display="="),
        Binding("0", "vote('both_bad')", "Both bad"),
        Binding("e", "edit", "Ideal", tooltip="Edit ideal reply"),
        Binding("r", "regenerate", "Regen", tooltip="Regenerate"),
        Binding("b", "branch", "Branch"),
        Binding("p", "prompt", "Prompt"),
        Binding("m", "focus_input", "Message"),
        Binding("n", "new_conversation", "New conversation", show=False),
        Binding("u", "undo_vote", "Undo vote", show=False),
        Binding("t", "toggle_tree", "Tree", show=False),
        Binding("left_square_bracket", "cycle(-1)", "Previous candidates", show=False, key_display="["),
        Binding("right_square_bracket", "cycle(1)", "Next candidates", show=False, key_display="]"),
    ]

    class Sampled(Message):
        """A worker changed the conversation: reload it and show `turn_id` (with `pair` when given)."""

        def __init__(self, conversation_id: int, turn_id: int | None, pair: tuple[int, int] | None = None, note: str = "") -> None:
            super().__init__()
            self.conversation_id, self.turn_id, self.pair, self.note = conversation_id, turn_id, pair, note

    class Streamed(Message):
        """Candidate `index` so far (`done`: complete, scores pending), throttled by the worker."""

        def __init__(self, index: int, text: str, done: bool) -> None:
            super().__init__()
            self.index, self.text, self.done = index, text, done

    class Voted(Message):
        def __init__(self, pair: tuple[int, int], choice: str | None, preference_id: int | None, undo: bool = False) -> None:
            super().__init__()
            self.pair, self.choice, self.preference_id, self.undo = pair, choice, preference_id, undo

    def __init__(self, services):
        super().__init__(services)
        from engine.types import GenerationParams

        s = services.settings
        self.state = ChatState()
        self.params = GenerationParams()
        self.live_meaningless = False  # the model sampling now writes meaningless text (tiny)
        self.defaults = (s.model, s.method if s.method in METHODS else "rag", s.k)

    def compose_body(self) -> ComposeResult:
        model, method, k = self.defaults
        with Horizontal(id="chat-options"):
            yield Label("model", classes="opt-label")
            yield Input(model, id="chat-model", compact=True, tooltip="tiny | hf:ID_OR_PATH[+lora:PATH] | openai:MODEL")
            yield Label("method", classes="opt-label")
            yield Select([(m, m) for m in METHODS], value=method, allow_blank=False, id="chat-method", compact=True)
            yield Label("k", classes="opt-label")
            yield Input(str(k), id="chat-k", type="integer", compact=True)
            yield Label("", id="chat-status")
        yield Static(TINY_BANNER, id="tiny-banner", markup=False)
        yield Static("", id="trust-caveat", markup=False)
        with Horizontal(id="chat-body"):
            yield ConversationTree(id="chat-tree")
            with Vertical(id="chat-main"):
                with VerticalScroll(id="chat-history-box"):
                    yield HistoryView(id="chat-history")
                with Horizontal(id="candidates"):
                    yield CandidatePanel("A", id="cand-a")
                    yield CandidatePanel("B", id="cand-b")
                yield WhyTable(id="why")
                # select_on_focus off: coming back with `m` continues the text instead of replacing it
                yield Input(placeholder="› message (enter sends · esc leaves · m returns)", id="chat-input", compact=True,
                            select_on_focus=False)

    def on_mount(self) -> None:
        self._update_banner(self.defaults[0])
        self.query_one("#cand-a").focus()  # the conversation loads in on_screen_resume, which follows

    def on_screen_resume(self) -> None:
        if self.state.character != self.character:
            self.open_latest()
        elif self.state.conversation_id is not None:  # labels or scores may have changed elsewhere
            self.open_conversation(self.state.conversation_id, self.state.turn_id, self.state.pair)
        self.focus_for_state()

    def focus_for_state(self) -> None:
        """Waiting for a message (no replies on screen): the input has focus, so typing asks."""
        a, _ = self.state.shown()
        if a is None and self.character:
            self.query_one("#chat-input").focus()
        elif self.focused is None:
            self.query_one("#cand-a").focus()

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < 110, "narrow")
        self.set_class(event.size.width < 100, "small")
        self.render_state()

    # -- loading --------------------------------------------------------------------------
    def open_latest(self) -> None:
        name = self.character
        self.state = ChatState(character=name)
        if name:
            convs = self.services.chat.list(name, limit=1)
            if convs:
                self.open_conversation(convs[0]["id"])
                return
        self.render_state()

    def open_conversation(self, conversation_id: int, turn_id: int | None = None, pair: tuple[int, int] | None = None) -> None:
        data = self.services.chat.show(conversation_id)
        if data["character"] != self.character:  # finished after the user switched character: it is stored
            return
        self.state.load(data, turn_id, pair)
        labels = self.services.annotation.labels_for(list(self.state.messages), self.app.annotator)
        self.state.votes = {pair: (p["choice"], p["id"]) for pair, p in labels.items()}
        self.render_state()

    def render_state(self) -> None:
        st = self.state
        if not self.is_mounted:
            return
        convs = self.services.chat.list(st.character, limit=30) if st.character else []
        self.query_one(ConversationTree).load(convs, st.conversation_id, st.ordered(), st.turn_id)
        self.query_one(HistoryView).show(st.path_to_turn(), st.character or "")
        self.query_one("#chat-history-box").scroll_end(animate=False)
        a, b = st.shown()
        marks = CHOICE_MARKS.get(st.vote_for((a["id"], b["id"])) if a and b else None, ("", ""))
        self.query_one("#cand-a", CandidatePanel).show(a, mark=marks[0])
        self.query_one("#cand-b", CandidatePanel).show(b, mark=marks[1])
        why = self.query_one(WhyTable)
        why.show(a and a.get("score"), b and b.get("score"), statement_width=statement_width(why, self), name=st.character or "")
        siblings = st.candidates()
        more = f" · {len(siblings)} candidates ([ ])" if len(siblings) > 2 else ""
        small = self.size.width and self.size.width < 100
        if st.conversation_id:
            conv = f"#{st.conversation_id}" if small else f"conversation #{st.conversation_id}"
        else:
            conv = "new" if small else "new conversation"
        trust = self.trust()
        self.query_one("#chat-status", Label).update(f"{trust.badge} · {conv}{more}")
        caveat = self.query_one("#trust-caveat", Static)
        caveat.update(trust.short)
        caveat.tooltip = trust.caveat or None
        caveat.display = bool(trust.caveat)
        why.border_title = f"WHY A vs B · {trust.badge}"

    def trust(self):
        """How much to trust the APC shown: the scorer profile and, for embedded, its caveat."""
        from ..trust import trust_for

        language = self.services.characters.repo.row(self.character)["language"] if self.character else "en"
        return trust_for(self.services.settings.profile, language)

    # -- options --------------------------------------------------------------------------
    def options(self):
        from engine.errors import InputError

        from ..services.chat import ChatOptions

        k_text = self.query_one("#chat-k", Input).value.strip() or "0"
        if not k_text.lstrip("-").isdigit():
            raise InputError(f"k={k_text!r}: give a whole number of statements (4..6 works best)")
        return ChatOptions(
            model=self.query_one("#chat-model", Input).value.strip() or None,
            method=str(self.query_one("#chat-method", Select).value),
            k=int(k_text),
            params=self.params,
        )

    @on(Input.Changed, "#chat-model")
    def _model_changed(self, event: Input.Changed) -> None:
        self._update_banner(event.value)

    def _update_banner(self, spec: str) -> None:
        from engine.backends import is_meaningless

        self.query_one("#tiny-banner").display = is_meaningless(spec)

    # -- sending --------------------------------------------------------------------------
    @on(Input.Submitted, "#chat-input")
    def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or not self.character or self.busy():
            return
        event.input.value = ""
        self.query_one(HistoryView).show(self.state.path_to_turn(continuing=True) + [{"role": "user", "content": text}], self.character)
        self.query_one("#chat-history-box").scroll_end(animate=False)
        self.sample("send", text)

    def busy(self) -> bool:
        """True (and says so) while replies are being sampled: one turn at a time."""
        running = any(w.node is self and w.group in ("chat-sample", "chat-edit") and not w.is_finished for w in self.workers)
        if running:
            self.notify("still sampling the last turn; wait for its replies", severity="warning")
        return running

    def _busy(self, busy: bool, text: str = "") -> None:
        for panel in self.query(CandidatePanel):
            panel.loading = busy
        if busy:
            self.query_one("#chat-status", Label).update(text)

    def sample(self, op: str, text: str = "", target: int | None = None) -> None:
        from engine.backends import is_meaningless
        from engine.errors import ApcError

        try:
            options = self.options()
        except ApcError as exc:  # a bad k: say so, sample nothing
            self.app.report_failure(exc, "Chat")
            return
        st = self.state  # read here, on the UI thread; the worker gets plain values
        where = (st.character, st.conversation_id, st.continue_from() if st.conversation_id else None)
        self.live_meaningless = is_meaningless(options.model or self.services.settings.model)
        self.query_one(WhyTable).show(None, None)
        self._busy(True, "sampling & scoring…")
        self._sample_worker(op, text, target, options, where)

    @work(thread=True, exclusive=True, group="chat-sample", exit_on_error=False, description="Sampling")
    def _sample_worker(self, op: str, text: str, target: int | None, options, where: tuple) -> None:
        chat = self.services.chat
        character, conversation_id, parent_id = where
        throttle = DeltaThrottle(lambda i, t, done: self.post_message(self.Streamed(i, t, done)))  # ≤ 20 updates/s each
        live = {"on_delta": throttle, "progress": lambda done, total, what: throttle.finish(done - 1)}
        if op == "send" and conversation_id is None:
            result = chat.send(character, text, options, **live)
        elif op == "send":
            result = chat.send(character, text, options, conversation_id=conversation_id, parent_id=parent_id, **live)
        elif op == "regenerate":
            result = chat.regenerate(target, options, **live)
        else:  # branch from `target`
            result = chat.branch(target, text, options, **live)
        ids = [c["message_id"] for c in result["candidates"]]
        pair = (ids[0], ids[1]) if len(ids) >= 2 else None
        self.post_message(self.Sampled(result["conversation_id"], result["user_message_id"], pair))

    def on_chat_screen_streamed(self, message: Streamed) -> None:
        if message.index > 1:  # only A and B are on screen; the rest show up when stored
            return
        slot = "AB"[message.index]
        self.query_one(f"#cand-{slot.lower()}", CandidatePanel).stream(message.text, done=message.done, meaningless=self.live_meaningless)
        if message.done:
            status = "scoring…" if slot == "B" else "generating B…"
        else:
            status = f"generating {slot}…"
        self.query_one("#chat-status", Label).update(status)

    def on_chat_screen_sampled(self, message: Sampled) -> None:
        self.open_conversation(message.conversation_id, message.turn_id, message.pair)
        if message.note:
            self.notify(message.note)

    def worker_finished(self, worker: Worker) -> None:
        if worker.group in ("chat-sample", "chat-edit"):
            self._busy(False)
            self.render_state()
            box = self.query_one("#chat-input", Input)
            if self.focused is None or (self.focused is box and not box.value):  # ready to vote (unless typing)
                self.query_one("#cand-a").focus()

    # -- actions --------------------------------------------------------------------------
    def action_focus_input(self) -> None:
        self.query_one("#chat-input").focus()

    def action_regenerate(self) -> None:
        if self.state.turn_id is not None and not self.busy():
            self.sample("regenerate", target=self.state.turn_id)

    def _target(self) -> dict | None:
        """The candidate the user points at: B when its panel has focus, else A."""
        a, b = self.state.shown()
        return b if self.focused is self.query_one("#cand-b") and b else a

    def action_branch(self) -> None:
        tree = self.query_one(ConversationTree)
        node = tree.cursor_node if self.focused is tree else None
        target = node.data[1] if node is not None and node.data and node.data[0] == "message" else None
        if target is None:
            m = self._target()
            target = m["id"] if m else None
        if target is None:
            self.notify("nothing to branch from yet: send a message first", severity="warning")
            return
        a, b = self.state.shown()
        slot = "A" if a and target == a["id"] else "B" if b and target == b["id"] else f"#{target}"
        kind = "an alternative to this user turn" if self.state.messages.get(target, {}).get("role") == "user" \
            else f"a new turn after reply {slot}"  # fmt: skip

        def done(text: str | None) -> None:
            if text and text.strip() and not self.busy():
                self.sample("branch", text.strip(), target)

        self.app.push_screen(TextPrompt(f"Branch: {kind}", placeholder="what the user says"), done)

    def action_edit(self) -> None:
        m = self._target()
        if m is None or self.busy():  # while sampling the panes show the new replies, not `m`
            return

        def done(text: str | None) -> None:
            if text is not None and text.strip() and text.strip() != m["content"]:
                self._busy(True, "scoring your reply…")
                self._edit_worker(m["id"], text)

        a, _ = self.state.shown()
        slot = "A" if a and m["id"] == a["id"] else "B"
        hint = (f"Write the reply the character should have given instead of {slot}; it is stored beside the others and "
                f"scored. {slot}'s text is below, selected: type to replace it, or arrows to edit it.")  # fmt: skip
        self.app.push_screen(TextPrompt(f"Ideal response (instead of {slot})", m["content"], multiline=True, hint=hint, select_all=True), done)

    @work(thread=True, exclusive=True, group="chat-edit", exit_on_error=False, description="Edit")
    def _edit_worker(self, message_id: int, text: str) -> None:
        out = self.services.chat.edit(message_id, text)
        self.post_message(self.Sampled(self.state.conversation_id, self.state.turn_id, (message_id, out["message_id"])))

    def on_why_table_teach_requested(self, event: WhyTable.TeachRequested) -> None:
        """Teach the scorer: the verdict dialog for this statement on the two shown replies."""
        from .teach import VerdictDialog

        a, b = self.state.shown()
        if a and b:
            sides = [{"message_id": m["id"], "text": m["content"], "term": t} for m, t in ((a, event.term_a), (b, event.term_b))]
            self.app.push_screen(VerdictDialog(self.services, event.statement, *sides))

    def action_prompt(self) -> None:
        m = self._target()
        if m is not None:
            self.app.push_screen(TextViewer(f"Exact prompt of reply #{m['id']}", prompt_text(m)))

    def action_vote(self, choice: str) -> None:
        a, b = self.state.shown()
        if self.busy():  # the panes show replies still being sampled, not the stored pair
            return
        if not a or not b:
            self.notify("two replies are needed to vote", severity="warning")
            return
        self._vote_worker((a["id"], b["id"]), choice, self.app.annotator)

    @work(thread=True, group="chat-vote", exit_on_error=False, description="Vote")
    def _vote_worker(self, pair: tuple[int, int], choice: str, annotator: str) -> None:
        pid = self.services.training.record_preference(pair[0], pair[1], choice, annotator=annotator, shown_order="ab", apc_visible=True)
        self.post_message(self.Voted(pair, choice, pid))

    def action_undo_vote(self) -> None:
        last = self.state.last_vote()
        if last is None:
            self.notify("no vote to undo in this session", severity="warning")
            return
        self._undo_worker(*last)

    @work(thread=True, group="chat-vote", exit_on_error=False, description="Undo")
    def _undo_worker(self, pair: tuple[int, int], preference_id: int) -> None:
        restored = self.services.training.undo_preference(preference_id)  # the vote it replaced, if any
        if restored is None:
            self.post_message(self.Voted(pair, None, None, undo=True))
            return
        choice = restored["choice"]
        if choice in ("a", "b") and restored["message_a_id"] != pair[0]:  # stored the other way round
            choice = "b" if choice == "a" else "a"
        self.post_message(self.Voted(pair, choice, restored["id"], undo=True))

    def on_chat_screen_voted(self, message: Voted) -> None:
        if message.undo:
            self.state.restore_vote(message.pair, message.choice, message.preference_id)
            self.notify(f"vote undone; your earlier vote ({message.choice}) is back" if message.choice else "vote undone")
        else:
            self.state.record_vote(message.pair, message.choice, message.preference_id)
        self.render_state()
        if message.choice is not None and not message.undo:
            self.query_one("#chat-input").focus()

    def action_new_conversation(self) -> None:
        self.state = ChatState(character=self.character)
        self.render_state()
        self.action_focus_input()

    def action_toggle_tree(self) -> None:
        tree = self.query_one(ConversationTree)
        tree.display = not tree.display
        self.render_state()

    def action_cycle(self, step: int) -> None:
        self.state.cycle(step)
        self.render_state()

    @on(Tree.NodeSelected, "#chat-tree")
    def _tree_selected(self, event: Tree.NodeSelected) -> None:
        kind, ident = event.node.data or (None, None)
        if kind == "conversation" and ident != self.state.conversation_id:
            self.open_conversation(ident)
        elif kind == "message":
            self.state.focus_message(ident)
            self.render_state()
