"""Chat screen on stored conversations (no model needed): candidates, WHY, votes, prompt, tree, banner;
candidates streamed in from a scripted model before a gated scorer lets their APC through."""

from __future__ import annotations

import pytest

from tests.fixtures_tui import BAD, GOOD, SIZE, fake_score, seed_conversation, settle

pytestmark = pytest.mark.anyio


async def open_chat(app, pilot):
    await pilot.press("f3")
    await settle(pilot, app)
    return app.screen


async def test_latest_turn_shows_two_scored_candidates_and_why(tui_services, make_tui):
    seeded = seed_conversation(tui_services)
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(app, pilot)
        a, b = seeded["turns"][-1]["candidates"]
        assert screen.state.pair == (a, b)
        title_a = str(screen.query_one("#cand-a").border_title)
        assert title_a.startswith("A · APC ") and "/24 · ΔAPC +" in title_a
        assert "ΔAPC -" in str(screen.query_one("#cand-b").border_title)
        why = screen.query_one("#why")
        assert why.row_count == 24
        diffs = [float(str(why.get_row_at(i)[0])) for i in range(why.row_count)]
        assert diffs == sorted(diffs, key=lambda d: -abs(d)) and diffs[0] > 0  # A's best statements first
        history = str(screen.query_one("#chat-history").render())
        assert "Where do you live?" in history and "What is your job?" in history
        assert screen.query_one("#tiny-banner").display  # settings.model is tiny


async def test_vote_puts_the_pair_in_the_dpo_set_and_undo_removes_it(tui_services, make_tui):
    seeded = seed_conversation(tui_services)
    a, b = seeded["turns"][-1]["candidates"]
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(app, pilot)
        await pilot.press("2")  # prefer B (the lower-APC one: a human label overrides APC)
        await settle(pilot, app)
        prefs = tui_services.training.pairs.preferences()
        assert [(p["message_a_id"], p["message_b_id"], p["choice"], p["shown_order"], p["apc_visible"]) for p in prefs] == [(a, b, "b", "ab", 1)]
        human = tui_services.training.list_pairs("Kaito Renn", "human")
        assert [(p["chosen_message_id"], p["rejected_message_id"]) for p in human] == [(b, a)]
        assert "preferred" in str(screen.query_one("#cand-b").border_subtitle)
        assert app.focused is screen.query_one("#chat-input")  # ready for the next turn
        assert screen.state.continue_from() == b
        await pilot.press("escape", "u")
        await settle(pilot, app)
        assert tui_services.training.pairs.preferences() == []
        assert tui_services.training.list_pairs("Kaito Renn", "human") == []


async def test_prompt_viewer_and_tree_navigation(tui_services, make_tui):
    from apc_tui.screens.dialogs import TextViewer

    seeded = seed_conversation(tui_services)
    app = make_tui(tui_services)
    async with app.run_test(size=(130, 36)) as pilot:
        screen = await open_chat(app, pilot)
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, TextViewer)
        body = str(app.screen.query_one("#viewer-body").render())
        assert "model tiny · method rag · k 5" in body and "You are Kaito Renn." in body and "retrieved statements" in body
        await pilot.press("escape")
        first_user = seeded["turns"][0]["user"]
        screen.state.focus_message(first_user)
        screen.render_state()
        await pilot.pause()
        assert screen.state.pair == tuple(seeded["turns"][0]["candidates"])
        tree = screen.query_one("#chat-tree")
        assert tree.display and len(tree.root.children) == 1


async def test_banner_follows_the_model_spec_and_bad_k_is_a_notification(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(app, pilot)
        model = screen.query_one("#chat-model")
        model.value = "openai:gpt-4o"
        await pilot.pause()
        assert not screen.query_one("#tiny-banner").display
        model.value = "tiny"
        await pilot.pause()
        assert screen.query_one("#tiny-banner").display
        screen.query_one("#chat-k").value = "-"
        screen.query_one("#chat-input").value = "hello"
        screen.query_one("#chat-input").focus()
        await pilot.press("enter")
        await settle(pilot, app)
        assert any("k=" in n.message for n in app._notifications if n.severity == "error")


async def test_votes_from_earlier_sessions_are_shown(tui_services, make_tui):
    seeded = seed_conversation(tui_services)
    a, b = seeded["turns"][-1]["candidates"]
    tui_services.training.record_preference(a, b, "b", annotator="tester")
    tui_services.training.record_preference(a, b, "a", annotator="someone else")
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(app, pilot)
        assert "preferred" in str(screen.query_one("#cand-b").border_subtitle)
        assert screen.state.continue_from() == b


class ScriptedStream:
    """A ChatModel that streams fixed replies, one per call, as the deltas given."""

    spec = "tiny"
    meaningless = True
    REPLIES = (("I live", " in the", " Hollow Spire."), ("On a", " farm."))

    def __init__(self):
        self.calls = 0

    def stream(self, messages, params=None):
        reply = self.REPLIES[self.calls % len(self.REPLIES)]
        self.calls += 1
        yield from reply


class GatedScorer:
    """Scores only once the test opens `gate` (so the screen can be looked at before scores arrive)."""

    profile = "test"

    def __init__(self, gate):
        self.gate = gate

    def relevance(self, character, statements, query, progress=None, stop=None):
        import numpy as np

        return np.linspace(1.0, 0.0, len(statements))

    def score(self, character, statements, query, responses, progress=None, stop=None):
        assert self.gate.wait(30), "the test never opened the scoring gate"
        return [fake_score(r, statements, GOOD if i == 0 else BAD) for i, r in enumerate(responses)]


async def test_candidates_stream_in_before_their_scores(tui_services, make_tui, monkeypatch):
    import threading

    from apc_tui.screens.chat import ChatScreen

    gate = threading.Event()
    monkeypatch.setattr(tui_services.models, "get", lambda *a, **kw: ScriptedStream())
    monkeypatch.setattr(tui_services.scoring, "scorer", lambda *a, **kw: GatedScorer(gate))
    seen = []  # (candidate, its pane's text, its pane's title) right after each streamed update
    handler = ChatScreen.on_chat_screen_streamed

    def record(screen, message):
        handler(screen, message)
        pane = screen.query_one("#cand-a" if message.index == 0 else "#cand-b")
        seen.append((message.index, str(pane.query_one(".candidate-text").render()), str(pane.border_title)))

    monkeypatch.setattr(ChatScreen, "on_chat_screen_streamed", record)
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(app, pilot)
        try:
            box = screen.query_one("#chat-input")
            box.value = "Where do you live?"
            box.focus()
            await pilot.press("enter")
            for _ in range(500):  # until B is complete and waits for its score
                await pilot.pause(0.01)
                if seen and seen[-1][0] == 1 and seen[-1][2] == "B · scoring…":
                    break
            assert seen[0] == (0, "I live", "A · generating…")  # partial text, no score yet
            assert (0, "I live in the Hollow Spire.", "A · scoring…") in seen
            assert seen[-1] == (1, "On a farm.", "B · scoring…")
            assert "APC" not in str(screen.query_one("#cand-a").border_title)
            assert str(screen.query_one("#chat-status").render()) == "scoring…"
            await pilot.press("escape", "1")  # no vote on replies still being sampled
            assert any("still sampling" in n.message for n in app._notifications)
            assert tui_services.training.pairs.preferences() == []
        finally:
            gate.set()
        await settle(pilot, app)
        a, b = screen.state.shown()
        assert (a["content"], b["content"]) == ("I live in the Hollow Spire.", "On a farm.")
        assert [a["params"]["seed"], b["params"]["seed"]] == [None, None]
        assert str(screen.query_one("#cand-a").border_title).startswith("A · APC ")
        assert screen.query_one("#why").row_count == 24 and not screen.query_one("#cand-b").loading


def test_delta_throttle_sends_the_first_update_at_once_then_at_most_one_per_interval():
    from apc_tui.screens.chat_state import DeltaThrottle

    now = [0.0]
    sent = []
    throttle = DeltaThrottle(lambda i, text, done: sent.append((i, text, done)), interval=0.05, clock=lambda: now[0])
    throttle(0, "a")
    throttle(0, "ab")  # held back: within the interval
    now[0] = 0.06
    throttle(0, "abc")
    throttle(1, "x")  # another candidate has its own interval
    throttle(0, "abcd")
    throttle.finish(0)
    assert sent == [(0, "a", False), (0, "abc", False), (1, "x", False), (0, "abcd", True)]
