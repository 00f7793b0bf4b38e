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
        await pilot.press("!")
        assert field.value == "Where do you live?!"  # typing goes on at the end (the text is not selected)


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


async def test_chat_revote_replaces_and_undo_restores(tui_services, make_tui):
    seeded = seed_conversation(tui_services)
    a, b = seeded["turns"][-1]["candidates"]
    app = make_tui(tui_services, start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = app.screen
        for key in ("1", "2", "equals_sign"):
            await pilot.press("escape", key)
            await settle(pilot, app)
        current = tui_services.training.pairs.preferences()
        assert [(p["message_a_id"], p["message_b_id"], p["choice"]) for p in current] == [(a, b, "tie")]
        assert len(tui_services.training.pairs.preferences(history=True)) == 3
        assert "tie" in str(screen.query_one("#cand-a").border_subtitle)
        await pilot.press("escape", "u")
        await settle(pilot, app)
        assert [p["choice"] for p in tui_services.training.pairs.preferences()] == ["b"]
        assert "preferred" in str(screen.query_one("#cand-b").border_subtitle)  # the earlier vote shows again
        agreement = tui_services.evaluation.agreement("Kaito Renn")
        assert (agreement["preferences"], agreement["items"]) == (1, 1)


async def test_annotate_revote_and_undo(tui_services, make_tui):
    seed_conversation(tui_services)
    app = make_tui(tui_services, start_mode="annotate", seed=0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("1", "2")
        await settle(pilot, app)
        assert len(tui_services.training.pairs.preferences()) == 1
        await pilot.press("u")
        await settle(pilot, app)
        screen = app.screen
        assert len(tui_services.training.pairs.preferences()) == 1 and screen.labels[0][0] == "left"
        await pilot.press("u")
        await settle(pilot, app)
        assert tui_services.training.pairs.preferences() == [] and 0 not in screen.labels


async def test_blind_queue_reveals_no_origin_before_the_vote(tui_services, make_tui):
    seeded = seed_conversation(tui_services)
    a, _ = seeded["turns"][0]["candidates"]
    tui_services.chat.edit(a, "I live high in the Hollow Spire, in a capsule flat.", score=False)  # an ideal reply
    app = make_tui(tui_services, start_mode="annotate", seed=0)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = app.screen
        seen = []
        for _ in range(len(screen.items)):
            for panel in (screen.query_one("#ann-left"), screen.query_one("#ann-right")):
                text = f"{panel.border_title} {panel.border_subtitle}"
                assert "ideal" not in text and "tiny" not in text and "meaningless" not in text, text
                assert "edited" not in panel.classes
                seen.append(panel.message.get("origin"))
            await pilot.press("n")
            await pilot.pause()
        assert "edited" in seen  # the hand-written reply was in the queue, unmarked


def _eval_job(services, character: str, status: str) -> int:
    from apc_tui.storage.jobs import JobRepo

    repo = JobRepo(services.store)
    cid = services.characters.repo.row(character)["id"]
    job = repo.create("eval", {"character": character, "model": "tiny"}, character_id=cid)
    if status != "queued":
        repo.claim(job, 1)
        repo.finish(job, status)
    return job


async def test_evaluate_follows_its_own_job(tui_services, make_tui):
    from apc_tui.screens.train import JobStarted

    app = make_tui(tui_services, start_mode="evaluate")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = app.screen
        mine = _eval_job(tui_services, "Kaito Renn", "queued")
        screen.post_message(JobStarted(mine, "eval"))  # as when `s` started it
        await settle(pilot, app)
        _eval_job(tui_services, "Maelle Kervran", "cancelled")  # another window's job, newer
        _eval_job(tui_services, "Kaito Renn", "cancelled")  # and a newer one for the same character
        screen.poll()
        await settle(pilot, app)
        assert str(screen.query_one("#eval-job").render()).startswith(f"job {mine} queued")


async def test_evaluate_numbers_and_axis(tui_services, make_tui):
    from apc_tui.screens.evaluate import y_limits
    from apc_tui.storage.evals import EvalRepo

    repo = EvalRepo(tui_services.store)
    cid = tui_services.characters.repo.row("Kaito Renn")["id"]
    run = repo.create_run(character_id=cid, model_spec="tiny", adapter_id=None, profile="test", config={}, job_id=None)
    repo.save_results(run, [dict(method="none", variant="base", n=2, delta_apc_mean=-0.0004, ci_low=-0.0007, ci_high=-0.0001,
                                 active_mean=-0.0001, passive_mean=1.0, apc_mean=12.0)])  # fmt: skip
    app = make_tui(tui_services, start_mode="evaluate")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        row = [str(c) for c in app.screen.query_one("#eval-results").get_row_at(0)]
        assert row[3] == "+0.000" and row[4] == "n too small (n=2)" and row[5] == "0.00"
        assert all("-0.00" not in c for c in row)
    lo, hi = y_limits([-0.00075, -0.0001])
    assert hi - lo >= 0.5 and lo < -0.00075 and hi >= 0  # no axis that magnifies noise
    lo, hi = y_limits([-0.4, 1.2])
    assert lo < -0.4 and hi > 1.2


@pytest.mark.parametrize("mode", ["train", "evaluate"])
async def test_idle_train_and_evaluate_cost_almost_no_cpu(tui_services, make_tui, mode):
    """Idle (no job running), the screen must not poll and redraw every second. Process CPU time
    (not wall time: robust on a loaded box) over 4 s of an idle pilot app, against a clear ceiling:
    a 1 s poll with table and plot redraws used 0.1-0.4 s here; an idle screen now uses ~0.002 s."""
    import asyncio
    import time

    from tests.test_tui_snapshots import seed_eval, seed_job

    seed_conversation(tui_services)
    seed_job(tui_services)  # a finished job with metrics and a log, and a finished evaluation run
    seed_eval(tui_services)
    app = make_tui(tui_services, start_mode=mode)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot, app)
        await asyncio.sleep(1.0)  # first layout and plot draws are done
        start = time.process_time()
        await asyncio.sleep(4.0)
        used = time.process_time() - start
    assert used < 0.08, f"{mode} used {used:.2f} s CPU in 4 s idle"


async def test_characters_cursor_stays_after_toggle_and_edit(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = app.screen
        await pilot.press("down")  # the second character: a refill must not jump back to the first
        await settle(pilot, app)
        name = app.character
        assert name != screen.query_one("#character-table").get_row_at(0)[0]
        table = screen.query_one("#statement-table")
        await pilot.press("right", "down", "down", "down", "down", "down")
        await pilot.pause()
        assert table.cursor_row == 5
        await pilot.press("space")  # disable statement 6
        await settle(pilot, app)
        assert table.cursor_row == 5 and app.focused is table and app.character == name
        s = screen._selected_statement()
        assert not s.enabled
        await pilot.press("e")
        await pilot.pause()
        field = app.screen.query_one("#prompt-input")
        text = f"{name} keeps a paper map of every route."
        field.value = text
        await pilot.press("enter")
        await settle(pilot, app)
        assert table.cursor_row == 5 and app.character == name
        edited = screen._selected_statement()
        assert (edited.text, edited.origin) == (text, "edited")
        detail = str(screen.query_one("#statement-detail").render())
        assert text in detail  # the full text has a place


async def test_statement_detail_shows_the_full_text(tui_services, make_tui):
    name = "Kaito Renn"
    long = f"{name} " + "remembers every rooftop, every ladder and every broken skylight between the Hollow Spire and the old harbour markets"
    sid = tui_services.characters.add_statement(name, long)
    app = make_tui(tui_services)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        screen = app.screen
        table = screen.query_one("#statement-table")
        ids = [s.id for s in screen.shown.statements]
        table.move_cursor(row=ids.index(sid))
        await pilot.pause()
        assert "…" in str(table.get_row_at(ids.index(sid))[-1])  # cut in the table at 80 columns
        assert long.replace(" ", "") in str(screen.query_one("#statement-detail").render()).replace("\n", "").replace(" ", "")


async def test_scorer_badge_and_caveat_wherever_apc_shows(tui_services, make_tui):
    from tests.test_tui_snapshots import seed_eval

    seeded = seed_conversation(tui_services)
    seed_eval(tui_services)
    app = make_tui(tui_services, start_mode="chat")  # settings.profile: embedded (the default)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = app.screen
        assert "scorer embedded ⚠" in str(screen.query_one("#chat-status").render())
        assert "scorer embedded" in str(screen.query_one("#why").border_title)
        caveat = str(screen.query_one("#trust-caveat").render())
        assert "61% on unseen English characters" in caveat.replace("\n", " ") and "APC_PROFILE=multilingual" in caveat
        assert "APC_PROFILE=paper" in str(screen.query_one("#trust-caveat").tooltip)
        await pilot.press("f6")
        await settle(pilot, app)
        ev = app.screen
        assert "scorer test" in str(ev.query_one("#eval-results").border_title)  # the run's own profile
        await pilot.press("f5")
        await settle(pilot, app)
        assert "scorer embedded ⚠" in str(app.screen.query_one("#train-trust").render())
    a, b = seeded["turns"][0]["candidates"]
    assert a and b


async def test_chinese_character_on_embedded_warns_before_pairs(tui_services, make_tui):
    from apc_tui.screens.dialogs import Confirm

    zh = next(r["name"] for r in tui_services.characters.list() if r["language"] == "zh")
    app = make_tui(tui_services, start_mode="train")
    async with app.run_test(size=SIZE) as pilot:
        app.character = zh
        await settle(pilot, app)
        await pilot.press("b")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        question = app.screen.question
        assert "train queries" in question and "replies to generate" in question and "tiny" in question  # count, model
        assert "Chinese" in question and "33%" in question and "would teach noise" in question
        await pilot.press("n")
        await settle(pilot, app)
        assert tui_services.jobs.list() == []  # declined: nothing started


async def test_long_work_asks_first(tui_services, make_tui):
    from apc_tui.screens.dialogs import Confirm

    seed_conversation(tui_services)
    app = make_tui(tui_services, start_mode="evaluate")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        assert "replies to generate and score" in app.screen.question and "tiny" in app.screen.question
        await pilot.press("escape")
        await settle(pilot, app)
        assert tui_services.jobs.list() == []


def test_cli_warns_before_pairs_for_chinese_on_embedded(services, tmp_path):
    from typer.testing import CliRunner

    from apc_tui.cli import app as cli_app

    services.characters.seed_demo()
    zh = next(r["name"] for r in services.characters.list() if r["language"] == "zh")
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    missing = f"hf:{empty}"  # passes the path check, the job fails at once on loading it: nothing is sampled
    result = CliRunner().invoke(cli_app, ["dpo", "pairs", "--character", zh, "--model", missing, "--max", "1"])
    assert "warning: embedded scorer" in result.output and "Chinese" in result.output, result.output
    en = next(r["name"] for r in services.characters.list() if r["language"] == "en")
    result = CliRunner().invoke(cli_app, ["dpo", "pairs", "--character", en, "--model", missing, "--max", "1"])
    assert "warning" not in result.output


async def test_ideal_reply_editor_replaces_on_typing_and_branch_names_the_reply(tui_services, make_tui):
    from textual.widgets import TextArea

    seed_conversation(tui_services)
    app = make_tui(tui_services, start_mode="chat")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("escape", "e")
        await pilot.pause()
        area = app.screen.query_one("#prompt-text", TextArea)
        assert "instead of A" in app.screen.title_text
        await pilot.press(*"I ride")
        assert area.text == "I ride"  # typing replaced A's text at once
        await pilot.press("escape")
        await pilot.pause()
        app.screen.query_one("#cand-b").focus()
        await pilot.press("b")
        await pilot.pause()
        assert "after reply B" in app.screen.title_text


async def test_import_picker_says_how_to_type_a_path_goes_up_and_remembers_the_folder(tui_services, make_tui, tmp_path):
    import json

    from apc_tui.screens.file_picker import FilePicker

    folder = tmp_path / "cards"
    (folder / "deeper").mkdir(parents=True)
    f = folder / "koishi.json"
    f.write_text(json.dumps({"name": "Komeiji Koishi", "statements": ["Komeiji Koishi lives in Chireiden."]}))
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("i")
        await pilot.pause()
        hint = str(app.screen.query_one(".dialog-hint").render())
        assert "type a path" in hint and "go up" in hint
        app.screen.query_one("#picker-tree").path = folder / "deeper"
        app.screen.query_one("#picker-tree").focus()
        await pilot.press("backspace")  # up a folder
        await pilot.pause()
        assert str(app.screen.query_one("#picker-tree").path) == str(folder)
        box = app.screen.query_one("#picker-path")
        box.value = str(f)
        box.focus()
        await pilot.press("enter")
        await settle(pilot, app)
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, FilePicker) and app.screen.start == folder.resolve()  # remembered


async def test_command_palette_offers_every_screens_real_commands(tui_services, make_tui):
    app = make_tui(tui_services)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for title in ("Characters: Import", "Characters: Export", "Chat: New conversation", "Train: Start training",
                      "Train: Build APC pairs", "Evaluate: Run evaluation", "Annotate: Undo", "Go to Evaluate"):
            assert title in commands, sorted(commands)
        assert not any(c.help.startswith("Key ") for c in commands.values())
        commands["Chat: New conversation"].callback()  # from Characters: opens Chat, starts a conversation
        await settle(pilot, app)
        assert app.current_mode == "chat" and app.focused is app.screen.query_one("#chat-input")
