"""Characters screen: D asks with what goes (counts) and soft-deletes; R brings a character back."""

from __future__ import annotations

import pytest

from tests.fixtures_tui import SIZE, settle

pytestmark = pytest.mark.anyio


async def test_delete_asks_with_counts_and_restore_brings_it_back(tui_services, make_tui):
    from apc_tui.screens.dialogs import Confirm, TextPrompt

    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.character == "Kaito Renn"
        await pilot.press("D")
        await settle(pilot, app)
        assert isinstance(app.screen, Confirm)
        assert "24 statements" in app.screen.question and "teacher calls" in app.screen.question
        await pilot.press("y")
        await settle(pilot, app)
        assert "Kaito Renn" not in tui_services.characters.repo.names()
        assert [r["name"] for r in tui_services.characters.deleted()] == ["Kaito Renn"]
        await pilot.press("R")
        await settle(pilot, app)
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("enter")  # the prompt is prefilled with the most recently deleted name
        await settle(pilot, app)
        assert "Kaito Renn" in tui_services.characters.repo.names()
        assert len(tui_services.characters.get("Kaito Renn").statements) == 24
