"""The workbench for daily use (issue #14): focus, Escape, re-votes and undo, a blind queue that is
blind, honest numbers, Evaluate following its own job, the Characters cursor and full statements."""

from __future__ import annotations

import pytest

from tests.fixtures_tui import SIZE, seed_conversation, settle

pytestmark = pytest.mark.anyio


def _look(widget) -> tuple:
    """What shows focus: colours, borders, outline, text style of the widget, its children and the
    pane around it (a table in a pane lights the pane's border)."""
    out = []
    for w in (widget, *widget.children, widget.parent):
        st = w.styles
        out.append((str(st.background), str(st.border), str(st.outline), str(st.text_style), str(st.tint), str(st.color)))
    return tuple(out)


@pytest.mark.parametrize("mode", ["characters", "chat", "annotate", "train", "evaluate"])
async def test_every_focusable_widget_shows_focus(tui_services, make_tui, mode):
    seed_conversation(tui_services)
    app = make_tui(tui_services, start_mode=mode)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        chain = [w for w in app.screen.focus_chain]
        assert len(chain) >= 3
        for widget in chain:
            app.screen.set_focus(None)
            await pilot.pause()
            blurred = _look(widget)
            widget.focus()
            await pilot.pause()
            assert app.focused is widget
            assert _look(widget) != blurred, f"{widget!r} looks the same with and without focus"


async def test_new_chat_waits_with_the_input_focused(tui_services, make_tui):
    app = make_tui(tui_services)  # no conversation yet
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("enter")  # Enter on Characters opens Chat
        await settle(pilot, app)
        field = app.screen.query_one("#chat-input")
        assert app.focused is field
        await pilot.press(*"Where do you live?")
        assert field.value == "Where do you live?"  # n/e/p/t/u/? typed, not fired as shortcuts
        await pilot.press("escape")
        assert app.focused is app.screen.query_one("#cand-a")
        await pilot.press("m")
        assert app.focused is field and field.value == "Where do you live?"  # m focuses, types nothing


async def test_f3_opens_a_new_character_chat_with_input_focused(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("f3")
        await settle(pilot, app)
        assert app.focused is app.screen.query_one("#chat-input")


@pytest.mark.parametrize("mode,field", [("train", "#train-name"), ("evaluate", "#eval-k"), ("annotate", "#annotator"), ("chat", "#chat-k")])
async def test_escape_leaves_a_text_field(tui_services, make_tui, mode, field):
    app = make_tui(tui_services, start_mode=mode)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        box = app.screen.query_one(field)
        box.focus()
        await pilot.pause()
        before = box.value
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is not box
        await pilot.press("x")  # a letter is a shortcut again, not text
        await pilot.pause()
        assert box.value == before


async def test_train_epochs_field_escape_then_s_does_not_type(tui_services, make_tui):
    app = make_tui(tui_services, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        epochs = app.screen.query_one("#form-dpo").query("Input").first()
        epochs.focus()
        await pilot.pause()
        value = epochs.value
        await pilot.press("escape", "s")
        await settle(pilot, app)
        assert epochs.value == value  # not "1s"
        await pilot.press("escape")
