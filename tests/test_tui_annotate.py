"""Annotate screen: blind queue with random order and hidden APC, progress, undo, annotator, disagreements."""

from __future__ import annotations

import pytest

from tests.fixtures_tui import SIZE, seed_conversation, settle

pytestmark = pytest.mark.anyio


async def open_annotate(app, pilot):
    await pilot.press("f4")
    await settle(pilot, app)
    return app.screen


async def test_blind_vote_stores_shown_order_and_reveals_apc(tui_services, make_tui):
    seeded = seed_conversation(tui_services)
    app = make_tui(tui_services, seed=3)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_annotate(app, pilot)
        assert len(screen.items) == 2
        left = screen.query_one("#ann-left")
        assert "APC hidden" in str(left.border_title) and screen.query_one("#annotate-why").row_count == 0
        assert "pair 1 of 2 · 0/2 labelled by tester" in str(screen.query_one("#annotate-progress").render())
        order = screen.orders[0]
        shown_left_id = left.message["id"]
        await pilot.press("1")  # the left one is better
        await settle(pilot, app)
        pref = tui_services.training.pairs.preferences()[-1]
        a, b = seeded["turns"][0]["candidates"]
        assert (pref["message_a_id"], pref["message_b_id"], pref["shown_order"], pref["apc_visible"], pref["annotator"]) == (a, b, order, 0, "tester")
        assert pref["choice"] == ("a" if shown_left_id == a else "b")
        assert "APC " in str(left.border_title) and "hidden" not in str(left.border_title)
        assert screen.query_one("#annotate-why").row_count == 24
        assert "1/2 labelled" in str(screen.query_one("#annotate-progress").render())
        await pilot.press("n")
        await pilot.pause()
        assert screen.index == 1 and "hidden" in str(left.border_title)
        await pilot.press("u")  # undo goes back to the labelled pair
        await settle(pilot, app)
        assert screen.index == 0 and tui_services.training.pairs.preferences() == []
        assert "hidden" in str(left.border_title)


async def test_left_right_order_is_random(tui_services, make_tui):
    for turns in range(6):
        seed_conversation(tui_services)
    app = make_tui(tui_services, seed=1)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_annotate(app, pilot)
        assert len(screen.items) == 12
        assert set(screen.orders.values()) == {"ab", "ba"}


async def test_annotator_is_editable_and_has_its_own_queue(tui_services, make_tui):
    seed_conversation(tui_services)
    app = make_tui(tui_services, seed=0)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_annotate(app, pilot)
        await pilot.press("1", "n", "1")
        await settle(pilot, app)
        assert len(tui_services.training.pairs.preferences()) == 2
        await pilot.press("a")
        field = screen.query_one("#annotator")
        field.value = "bob"
        await pilot.press("enter")
        await settle(pilot, app)
        assert screen.annotator == "bob" and len(screen.items) == 2
        assert "0/2 labelled by bob" in str(screen.query_one("#annotate-progress").render())


async def test_disagreement_queue_lists_human_against_apc(tui_services, make_tui):
    seeded = seed_conversation(tui_services)
    a, b = seeded["turns"][0]["candidates"]  # APC prefers a
    tui_services.training.record_preference(a, b, "b", annotator="carol")
    c, d = seeded["turns"][1]["candidates"]
    tui_services.training.record_preference(c, d, "a", annotator="carol")  # agrees with APC
    app = make_tui(tui_services, seed=0)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_annotate(app, pilot)
        await pilot.press("d")
        await settle(pilot, app)
        assert [(i["a"]["id"], i["b"]["id"], i["human"]) for i in screen.items] == [(a, b, "b")]
        marks = {str(screen.query_one(s).border_subtitle).split(" · ")[0] for s in ("#ann-left", "#ann-right")}
        assert marks == {"human ✓", "APC ✓"}
        assert "tiny: meaningless" in str(screen.query_one("#ann-left").border_subtitle)
        assert "APC " in str(screen.query_one("#ann-left").border_title)  # APC visible in review
