"""One current vote per (pair of replies, annotator): a re-vote replaces the vote (history kept),
undo brings the replaced vote back, and agreement counts current votes only."""

from __future__ import annotations

from tests.fixtures_dpo import CHARACTER

FAITHFUL = "I have a sister, Anne."
CONTRADICTING = "I never had a sister."


def test_revote_replaces_the_vote_and_keeps_history(dpo_services, keyword_scorer, branch):
    svc = dpo_services
    a, b = branch(svc, svc.character_id, [FAITHFUL, CONTRADICTING], scorer=keyword_scorer)
    first = svc.training.record_preference(a, b, "a", annotator="ann")
    second = svc.training.record_preference(b, a, "a", annotator="ann")  # same pair, other order: B wins now
    third = svc.training.record_preference(a, b, "tie", annotator="ann")
    other = svc.training.record_preference(a, b, "a", annotator="bob")  # another annotator has their own vote

    current = svc.training.pairs.preferences(svc.character_id)
    assert sorted((p["id"], p["annotator"]) for p in current) == [(third, "ann"), (other, "bob")]
    history = svc.training.pairs.preferences(svc.character_id, history=True)
    assert [(p["id"], p["superseded_by"]) for p in history] == [(first, second), (second, third), (third, None), (other, None)]

    agreement = svc.evaluation.agreement(CHARACTER)
    assert (agreement["preferences"], agreement["items"]) == (2, 1)  # not "4 labels on 1 pair"

    restored = svc.training.undo_preference(third)  # undo the tie: the vote it replaced (B preferred) is back
    assert restored["id"] == second and restored["choice"] == "a" and restored["message_a_id"] == b
    assert svc.annotation.progress(CHARACTER, "ann") == (1, 1)
    svc.training.undo_preference(other)  # bob's vote was the latest on the pair; now ann's restored one decides
    assert [(r["source"], r["chosen"], r["annotator"]) for r in svc.training.list_pairs(CHARACTER)] == [("human", CONTRADICTING, "ann")]
    assert svc.annotation.labels_for([a, b], "ann")[(b, a)]["id"] == second


def test_undo_of_an_old_vote_keeps_one_current(dpo_services, branch):
    svc = dpo_services
    a, b = branch(svc, svc.character_id, [FAITHFUL, CONTRADICTING])
    first = svc.training.record_preference(a, b, "a", annotator="ann")
    second = svc.training.record_preference(a, b, "b", annotator="ann")
    assert svc.training.undo_preference(first) is None  # from the history: nothing comes back
    assert [p["id"] for p in svc.training.pairs.preferences(svc.character_id)] == [second]
    third = svc.training.record_preference(a, b, "tie", annotator="ann")
    assert [p["id"] for p in svc.training.pairs.preferences(svc.character_id)] == [third]


def test_migration_turns_duplicate_votes_into_history(tmp_path):
    import sqlite_utils

    from apc_tui.storage.migrations import MIGRATIONS

    db = sqlite_utils.Database(tmp_path / "old.db")
    names = [name for name, _ in MIGRATIONS]
    for name, fn in MIGRATIONS:
        if name.startswith("m004_"):
            break
        fn(db)
    db.execute("INSERT INTO characters (id, name, language, created_at, updated_at) VALUES (1, 'X', 'en', 't', 't')")
    db.execute("INSERT INTO conversations (id, character_id, created_at) VALUES (1, 1, 't')")
    for mid in (1, 2):
        db.execute("INSERT INTO messages (id, conversation_id, role, content, created_at) VALUES (?, 1, 'assistant', 'r', 't')", [mid])
    for pid, (ma, mb, choice) in enumerate([(1, 2, "a"), (2, 1, "b"), (1, 2, "tie")], 1):
        db.execute("INSERT INTO preferences (id, character_id, message_a_id, message_b_id, choice, annotator, created_at) "
                   "VALUES (?, 1, ?, ?, ?, 'ann', 't')", [pid, ma, mb, choice])  # fmt: skip
    dict(MIGRATIONS)[next(n for n in names if n.startswith("m004_"))](db)
    assert [tuple(r) for r in db.execute("SELECT id, superseded_by FROM preferences ORDER BY id").fetchall()] == [(1, 2), (2, 3), (3, None)]
