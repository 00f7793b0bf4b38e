"""Characters screen: list, import through the file picker, statement editor, export."""

from __future__ import annotations

import json

import pytest

from tests.fixtures_tui import SIZE, settle

pytestmark = pytest.mark.anyio


def table_rows(table) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_list_shows_counts_language_and_last_delta(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        rows = table_rows(app.screen.query_one("#character-table"))
        assert [r[0] for r in rows] == ["Kaito Renn", "Maelle Kervran", "顾明澜"]
        assert rows[2][1] == "zh" and rows[0][2] == "24" and rows[0][3] == "–"
        assert app.screen.query_one("#statement-table").row_count == 24
        await pilot.press("down")  # the statements follow the highlighted character
        await pilot.pause()
        assert app.character == "Maelle Kervran"
        assert "Maelle Kervran" in str(app.screen.query_one("#statement-title").render())


async def test_import_through_the_file_picker(tui_services, make_tui, tmp_path):
    from apc_tui.screens.file_picker import FilePicker

    f = tmp_path / "koishi.json"
    f.write_text(json.dumps({"name": "Komeiji Koishi", "statements": ["Komeiji Koishi lives in Chireiden."]}))
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, FilePicker)
        path_input = app.screen.query_one("#picker-path")
        path_input.value = str(tmp_path)  # a directory re-roots the tree
        path_input.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert str(app.screen.query_one("#picker-tree").path) == str(tmp_path)
        path_input.value = str(f)
        await pilot.press("enter")
        await settle(pilot, app)
        assert not isinstance(app.screen, FilePicker)
        assert app.character == "Komeiji Koishi"
        assert "Komeiji Koishi" in [r[0] for r in table_rows(app.screen.query_one("#character-table"))]
        assert any("imported Komeiji Koishi" in n.message for n in app._notifications)


async def test_statement_editor_add_edit_toggle(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("right")  # into the statements pane
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = "Kaito Renn keeps a bonsai on his desk."
        await pilot.press("enter")
        await settle(pilot, app)
        texts = [s.text for s in tui_services.characters.get("Kaito Renn").statements]
        assert texts[-1] == "Kaito Renn keeps a bonsai on his desk."
        # the cursor sits on the new statement: edit it, then disable it
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = "Kaito Renn keeps two bonsai on his desk."
        await pilot.press("enter")
        await settle(pilot, app)
        await pilot.press("space")
        await settle(pilot, app)
        last = tui_services.characters.get("Kaito Renn").statements[-1]
        assert (last.text, last.enabled, last.origin) == ("Kaito Renn keeps two bonsai on his desk.", False, "manual")
        detail = str(app.screen.query_one("#statement-detail").render())
        assert "manual" in detail and "disabled" in detail
        assert table_rows(app.screen.query_one("#character-table"))[0][2] == "24/25"
        # an empty statement is refused with the fix, nothing stored
        await pilot.press("a")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot, app)
        assert len(tui_services.characters.get("Kaito Renn").statements) == 25
        assert any("cannot be empty" in n.message for n in app._notifications if n.severity == "error")


async def test_source_passage_is_shown(tui_services, make_tui, tmp_path):
    wiki = tmp_path / "wiki_Ada Lovelace.txt"
    wiki.write_text("Ada Lovelace wrote notes.\n\nAda Lovelace liked horses. Ada Lovelace lived in London.")
    tui_services.characters.import_files([wiki])
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("home")
        await pilot.pause()
        assert app.character == "Ada Lovelace"
        await pilot.press("right", "down", "down")
        await pilot.pause()
        detail = str(app.screen.query_one("#statement-detail").render())
        assert "split" in detail and "Ada Lovelace liked horses. Ada Lovelace lived in London." in detail


async def test_export_and_enter_opens_chat(tui_services, make_tui, tmp_path):
    app = make_tui(tui_services)
    out = tmp_path / "kaito.json"
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("x")
        await pilot.pause()
        app.screen.query_one("#export-path").value = str(out)
        app.screen.query_one("#export-path").focus()
        await pilot.press("enter")
        await settle(pilot, app)
        assert json.loads(out.read_text())["name"] == "Kaito Renn"
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "chat" and app.character == "Kaito Renn"
