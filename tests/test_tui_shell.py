"""The app shell: first frame, screen switching, help, command palette, failures as notifications."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.fixtures_core import ROOT
from tests.fixtures_tui import SIZE, settle

pytestmark = pytest.mark.anyio


async def test_opens_on_characters_and_switches_screens(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.current_mode == "characters"
        assert app.character == "Kaito Renn"
        for key, mode in [("f3", "chat"), ("f4", "annotate"), ("f5", "train"), ("f6", "evaluate"), ("f2", "characters")]:
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == mode, key
            assert app.screen.query_one("NavTabs").active == f"nav-{mode}"


async def test_nav_tab_click_switches(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.click("#nav-train")
        await pilot.pause()
        assert app.current_mode == "train"


async def test_help_screen_lists_the_keys_of_the_screen(tui_services, make_tui):
    from apc_tui.screens.help import HelpScreen

    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.query_one("Markdown").source
        assert "Keys on Characters" in text and "Import" in text and "Edit statement" in text and "ΔAPC" in text
        await pilot.press("escape")
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_offers_every_described_key(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        names = [c.title for c in app.get_system_commands(app.screen)]
        for expected in ("Characters: Import", "Characters: Export", "Characters: Add statement", "Go to Chat", "Go to Train"):
            assert expected in names, names


async def test_worker_failure_is_a_notification_not_a_crash(tui_services, make_tui, tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"name": "X", "statements": ["X is')
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.import_file(bad)
        await settle(pilot, app)
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "broken.json" in errors[-1].message
        assert app.is_running and app.current_mode == "characters"


def test_first_frame_does_not_import_torch(tmp_path):
    """A fresh interpreter builds the app and its first frame; torch & co. stay out of sys.modules."""
    (tmp_path / "none.toml").touch()  # an APC_CONFIG that names a missing file is refused
    code = textwrap.dedent(
        f"""
        import asyncio, os, sys, time
        os.environ["APC_DB"] = {str(tmp_path / "t.db")!r}
        os.environ["APC_CONFIG"] = {str(tmp_path / "none.toml")!r}
        t0 = time.perf_counter()
        from apc_tui.config import load_settings
        from apc_tui.factory import build_services
        from apc_tui.app import make_app
        services = build_services(load_settings())
        services.characters.seed_demo()
        async def main():
            app = make_app(services)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                assert "Kaito Renn" in app.screen.query_one("#character-table").get_row("Kaito Renn")
                for key in ("f3", "f4", "f5", "f6", "f2"):
                    await pilot.press(key)
                    await pilot.pause()
        asyncio.run(main())
        heavy = sorted(m for m in ("torch", "transformers", "trl", "peft", "datasets", "accelerate") if m in sys.modules)
        print("HEAVY", heavy, "SECONDS", round(time.perf_counter() - t0, 2))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout, proc.stdout
