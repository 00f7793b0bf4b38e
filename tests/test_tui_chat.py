"""Chat screen on stored conversations (no model needed): candidates, WHY, votes, prompt, tree, banner."""

from __future__ import annotations

import pytest

from tests.fixtures_tui import SIZE, seed_conversation, settle

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
