"""The whole workbench flow through the UI, with the tiny model and the tiny local discriminators:
import -> chat (two scored candidates) -> vote -> the pair is in the DPO set -> start DPO (a real
detached job) -> its progress and log appear -> evaluate (a job) -> the ΔAPC table fills."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.fixtures_tui import settle

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KOISHI = {
    "name": "Komeiji Koishi",
    "language": "en",
    "statements": ["Komeiji Koishi lives with her sister, Komeiji Satori.", "Komeiji Koishi lives in Chireiden.",
                   "Komeiji Koishi has a closed third eye."],
}  # fmt: skip


async def wait_for(pilot, app, condition, timeout: float, what: str):
    started = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause()
        if condition():
            print(f"{what}: {time.monotonic() - started:.1f}s")
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_import_chat_vote_train_evaluate(scored_services, make_tui, tmp_path):
    from engine.types import GenerationParams

    services = scored_services
    card = tmp_path / "koishi.json"
    card.write_text(json.dumps(KOISHI))
    app = make_tui(services)
    async with app.run_test(size=(120, 40)) as pilot:
        # import through the file picker
        await pilot.press("i")
        await pilot.pause()
        app.screen.query_one("#picker-path").value = str(card)
        app.screen.query_one("#picker-path").focus()
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.character == "Komeiji Koishi"

        # chat: two candidates, each with APC / ΔAPC over 3 statements, and the WHY panel
        await pilot.press("enter")  # open the chat with the highlighted character
        await settle(pilot, app)
        chat = app.screen
        assert app.current_mode == "chat" and chat.query_one("#tiny-banner").display
        chat.params = GenerationParams(max_new_tokens=12, seed=7)
        await pilot.press("m")
        await pilot.press(*"Where do you live?")
        await pilot.press("enter")
        await wait_for(pilot, app, lambda: chat.state.pair is not None and not chat.query_one("#cand-a").loading, 240, "candidates")
        await settle(pilot, app)
        a, b = chat.state.shown()
        assert a["score"]["n_statements"] == 3 and b["score"]["n_statements"] == 3
        assert "/3 · ΔAPC" in str(chat.query_one("#cand-a").border_title)
        assert chat.query_one("#why").row_count == 3
        assert a["meaningless"] and a["model_spec"] == "tiny"

        # vote: the pair is in the DPO set
        await pilot.press("escape", "1")
        await settle(pilot, app)
        human = services.training.list_pairs("Komeiji Koishi", "human")
        assert [(p["chosen_message_id"], p["rejected_message_id"]) for p in human] == [(a["id"], b["id"])]

        # regenerate: two more siblings, shown as the new pair
        turn = chat.state.turn_id
        await pilot.press("escape", "r")  # after a vote the message box has focus: esc leaves it
        await wait_for(pilot, app, lambda: len(chat.state.candidates()) == 4 and not chat.query_one("#cand-a").loading, 120, "regenerated")
        assert set(chat.state.pair) == {m["id"] for m in chat.state.candidates()[2:]}

        # an ideal response: stored beside the others, scored, shown against the one it replaces
        target = chat.state.shown()[0]["id"]
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#prompt-text").text = "I live in Chireiden with my sister, Satori!"
        await pilot.press("ctrl+s")
        await wait_for(pilot, app, lambda: len(chat.state.candidates()) == 5, 120, "the edited reply")
        edited = chat.state.shown()[1]
        assert chat.state.pair[0] == target and edited["origin"] == "edited" and edited["score"]["n_statements"] == 3

        # the exact prompt of a reply, then a branch: a new user turn after reply A
        await pilot.press("p")
        await pilot.pause()
        assert "Where do you live?" in str(app.screen.query_one("#viewer-body").render())
        await pilot.press("escape", "b")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = "And who is your sister?"
        await pilot.press("enter")
        await wait_for(pilot, app, lambda: chat.state.turn_id not in (None, turn) and chat.state.pair is not None, 120, "the branch")
        assert chat.state.messages[chat.state.turn_id]["parent_id"] == target
        assert len(chat.state.candidates()) == 2

        # train: DPO as a detached job; progress and log lines appear
        await pilot.press("f5")
        await settle(pilot, app)
        train = app.screen
        assert "human 1" in str(train.query_one("#pairs-summary").render())
        for name, value in (("epochs", "1"), ("max_steps", "1"), ("lora_r", "4"), ("grad_accum", "1"), ("device", "cpu")):
            train.query_one(f"#form-dpo #set-{name}").value = value
        await pilot.press("s", "y")  # y: the confirmation of what will run
        await settle(pilot, app)
        jobs = services.jobs.list(kind="dpo")
        assert len(jobs) == 1
        job_id = jobs[0]["id"]
        await wait_for(pilot, app, lambda: services.jobs.show(job_id)["status"] in ("done", "failed", "dead"), 240, "the DPO job")
        row = services.jobs.show(job_id)
        assert row["status"] == "done", row
        table = train.query_one("#train-jobs")
        await wait_for(pilot, app, lambda: "done" in str(table.get_row(str(job_id))[2]), 10, "the job done in the TUI")
        assert train.query_one("#train-log").line_count > 1
        assert services.jobs.metrics(job_id), "the trainer logged no metrics"

        # evaluate: base vs the adapter just trained, as a job
        await pilot.press("f6")
        await settle(pilot, app)
        ev = app.screen
        ev.query_one("#eval-m-rag").value = False
        ev.query_one("#eval-queries").value = "1"
        ev.query_one("#eval-tokens").value = "12"
        adapters = services.finetune.list_adapters("Komeiji Koishi")
        assert [x["name"] for x in adapters] == ["komeiji-koishi-dpo-1"]
        ev.load_adapters()
        ev.query_one("#eval-adapter").value = "komeiji-koishi-dpo-1"
        await pilot.press("s", "y")
        await settle(pilot, app)
        await wait_for(pilot, app, lambda: ev.query_one("#eval-results").row_count == 2, 240, "the evaluation results")
        cells = [str(c) for c in ev.query_one("#eval-results").get_row_at(0)]
        assert cells[:3] == ["none", "adapter", "1"] or cells[:3] == ["none", "base", "1"]
