"""Character import by content, export round trips, and every bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from tests.fixtures_core import SHARED_WIKI

KOISHI = ["Komeiji Koishi lives with her sister, Komeiji Satori.", "Komeiji Koishi lives in Chireiden."]


def card(spec="chara_card_v2", **extra):
    return {
        "spec": spec,
        "spec_version": "2.0" if spec.endswith("v2") else "3.0",
        "data": {
            "name": "Mira Voss",
            "description": "Mira Voss repairs clocks in Tallinn.\n\nMira Voss has a grey cat named Pilot.",
            "personality": "Mira Voss is patient and dry-humoured.",
            "extensions": {"some_frontend": {"color": "teal"}},
            **extra,
        },
    }


def png_with(path: Path, key: str, payload: dict) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, base64.b64encode(json.dumps(payload).encode()).decode())
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_wiki_text_with_space_and_cjk_names(services, tmp_path):
    (tmp_path / "wiki_Ada Lovelace.txt").write_text("Ada Lovelace wrote notes.\n\nAda Lovelace liked horses. Ada Lovelace lived in London.", encoding="utf-8")
    (tmp_path / "wiki_林黛玉.txt").write_text("林黛玉住在潇湘馆。林黛玉喜欢写诗。\n\n林黛玉是贾母的外孙女。", encoding="utf-8")
    results = services.characters.import_files([tmp_path / "wiki_Ada Lovelace.txt", tmp_path / "wiki_林黛玉.txt"])
    assert [r.name for r in results] == ["Ada Lovelace", "林黛玉"]
    ada = services.characters.get("Ada Lovelace")
    assert [s.text for s in ada.statements] == ["Ada Lovelace wrote notes.", "Ada Lovelace liked horses.", "Ada Lovelace lived in London."]
    assert {s.origin for s in ada.statements} == {"split"}
    assert ada.statements[2].source_passage == "Ada Lovelace liked horses. Ada Lovelace lived in London."
    lin = services.characters.get("林黛玉")
    assert lin.language == "zh"
    assert [s.text for s in lin.statements] == ["林黛玉住在潇湘馆。", "林黛玉喜欢写诗。", "林黛玉是贾母的外孙女。"]


def test_statements_json_single_and_list(services, tmp_path):
    one = tmp_path / "koishi.json"
    one.write_text(json.dumps({"name": "Komeiji Koishi", "language": "en", "statements": KOISHI}))
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"name": "A One", "statements": ["A One sings."]}, {"name": "B Two", "language": "zh", "statements": ["B Two 唱歌。"]}]))
    services.characters.import_files([one, many])
    assert [s.text for s in services.characters.get("Komeiji Koishi").statements] == KOISHI
    assert services.characters.get("B Two").language == "zh"
    assert {s.origin for s in services.characters.get("A One").statements} == {"import"}


@pytest.mark.parametrize("spec", ["chara_card_v2", "chara_card_v3"])
def test_card_json_and_png(services, tmp_path, spec):
    as_json = tmp_path / "card.json"
    as_json.write_text(json.dumps(card(spec)))
    services.characters.import_files([as_json])
    mira = services.characters.get("Mira Voss")
    assert "Mira Voss has a grey cat named Pilot." in [s.text for s in mira.statements]
    assert mira.card["data"]["extensions"]["some_frontend"] == {"color": "teal"}

    key = "ccv3" if spec.endswith("v3") else "chara"
    services.characters.import_files([png_with(tmp_path / "card.png", key, card(spec, name="Mira Png"))])
    assert services.characters.get("Mira Png").source_text.startswith("Mira Voss repairs clocks")


def test_card_lenient_about_missing_fields(services, tmp_path):
    p = tmp_path / "thin.json"
    p.write_text(json.dumps({"spec": "chara_card_v2", "data": {"name": "Thin", "description": "Thin likes tea."}}))
    services.characters.import_files([p])
    assert [s.text for s in services.characters.get("Thin").statements] == ["Thin likes tea."]


def test_reimport_updates_instead_of_duplicating(services, tmp_path):
    p = tmp_path / "koishi.json"
    p.write_text(json.dumps({"name": "Komeiji Koishi", "statements": KOISHI}))
    first = services.characters.import_files([p])[0]
    ids = [s.id for s in services.characters.get("Komeiji Koishi").statements]
    p.write_text(json.dumps({"name": "Komeiji Koishi", "statements": KOISHI + ["Komeiji Koishi has a third eye."]}))
    second = services.characters.import_files([p])[0]
    assert first.created and not second.created
    after = services.characters.get("Komeiji Koishi").statements
    assert [s.id for s in after][:2] == ids and len(after) == 3
    assert len(services.characters.list()) == 1


def test_export_round_trips(services, tmp_path):
    p = tmp_path / "card.json"
    p.write_text(json.dumps(card()))
    services.characters.import_files([p])
    sid = services.characters.add_statement("Mira Voss", "Mira Voss drinks black coffee.")
    services.characters.set_enabled(services.characters.get("Mira Voss").statements[0].id, False)
    expected = [s.text for s in services.characters.get("Mira Voss").enabled_statements]
    assert "Mira Voss drinks black coffee." in expected and sid
    for fmt, name in [("card", "c.json"), ("card-png", "c.png"), ("statements", "s.json")]:
        out = services.characters.export("Mira Voss", fmt, tmp_path / name)
        data = json.loads(out.read_text()) if fmt != "card-png" else None
        if fmt == "card":
            assert data["spec"] == "chara_card_v2"
            assert data["data"]["extensions"]["some_frontend"] == {"color": "teal"}  # unknown extensions kept
        services.characters.delete("Mira Voss")
        services.characters.purge("Mira Voss")  # a deleted character keeps its name until purged
        services.characters.import_files([out])
        assert [s.text for s in services.characters.get("Mira Voss").statements] == expected, fmt


@pytest.mark.skipif(not SHARED_WIKI.is_dir(), reason="../shared/data/wiki not present")
def test_all_shared_wiki_files_import(services):
    files = sorted(SHARED_WIKI.glob("wiki_*.txt"))
    results = services.characters.import_files(files)
    assert len(results) == len(files) == 15
    names = {r.name for r in results}
    assert {"Komeiji Koishi", "爱丽丝", "Alice"} <= names
    assert all(r.statements > 0 for r in results)
    assert services.characters.get("爱丽丝").language == "zh"


# -- bad input: exit code != 0, one line naming the input, nothing changed -------------------
def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty": tmp_path / "empty.txt",
        "binary": tmp_path / "bin.txt",
        "latin1": tmp_path / "latin1.txt",
        "truncated_json": tmp_path / "trunc.json",
        "bad_statements": tmp_path / "badstmts.json",
        "truncated_png": tmp_path / "trunc.png",
        "png_without_card": tmp_path / "plain.png",
        "bad_card_payload": tmp_path / "badcard.png",
        "huge": tmp_path / "huge.txt",
    }
    files["empty"].write_bytes(b"")
    files["binary"].write_bytes(b"\x00\x01\x02abc\x00" * 50)
    files["latin1"].write_bytes("Zoë läuft nach Köln.".encode("latin-1"))
    files["truncated_json"].write_text('{"name": "X", "statements": ["X is')
    files["bad_statements"].write_text('{"name": "X", "statements": "not a list"}')
    png_with(tmp_path / "good.png", "chara", card())
    files["truncated_png"].write_bytes((tmp_path / "good.png").read_bytes()[:40])
    Image.new("RGB", (4, 4)).save(files["png_without_card"])
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", "!!!not base64 json!!!")
    Image.new("RGB", (4, 4)).save(files["bad_card_payload"], pnginfo=info)
    with open(files["huge"], "wb") as fh:
        fh.truncate(51 * 1024 * 1024)
    return files


def test_bad_inputs_fail_cleanly_and_change_nothing(cli, tmp_path):
    good = tmp_path / "koishi.json"
    good.write_text(json.dumps({"name": "Komeiji Koishi", "statements": KOISHI}))
    assert cli("characters", "import", str(good)).code == 0
    before = cli("characters", "show", "Komeiji Koishi", "--json").json()
    cases = {**_bad_files(tmp_path), "missing": tmp_path / "nope.txt"}
    for label, path in cases.items():
        r = cli("characters", "import", str(path))
        assert r.code != 0, label
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (label, r.err)
        assert path.name in lines[0], (label, lines[0])
        assert "Traceback" not in r.err
    # a good file next to a bad one: nothing of the batch is stored
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"name": "Other", "statements": ["Other hums."]}))
    assert cli("characters", "import", str(other), str(cases["empty"])).code != 0
    assert cli("characters", "show", "Komeiji Koishi", "--json").json() == before
    assert [c["name"] for c in cli("characters", "list", "--json").json()] == ["Komeiji Koishi"]


def test_unwritable_db_is_one_line_error(cli, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    r = cli("--db", str(blocker / "x" / "apc.db"), "characters", "list")
    assert r.code != 0 and r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1


def test_statement_commands_and_json(cli, tmp_path):
    good = tmp_path / "koishi.json"
    good.write_text(json.dumps({"name": "Komeiji Koishi", "statements": KOISHI}))
    cli("characters", "import", str(good))
    assert cli("statements", "add", "-c", "Komeiji Koishi", "Komeiji Koishi has a closed third eye.").code == 0
    shown = cli("characters", "show", "Komeiji Koishi", "--json").json()
    sid = shown["statements"][0]["id"]
    assert cli("statements", "edit", str(sid), "Komeiji Koishi lives with her elder sister, Komeiji Satori.").code == 0
    assert cli("statements", "disable", str(sid)).code == 0
    shown = cli("characters", "show", "Komeiji Koishi", "--json").json()
    assert shown["statements"][0] == {**shown["statements"][0], "enabled": False, "text": "Komeiji Koishi lives with her elder sister, Komeiji Satori."}
    assert len(shown["statements"]) == 3
    r = cli("statements", "edit", "99999", "x")
    assert r.code != 0 and "99999" in r.err
    assert cli("statements", "add", "-c", "Nobody", "x").err.startswith("error: no character named 'Nobody'")


def test_demo_characters_come_with_their_teacher_queries(services):
    catalogue = services.characters.demo_catalogue()
    assert len(catalogue) >= 12 and sum(d["language"] == "zh" for d in catalogue) >= 2
    seeded = services.characters.seed_demo()
    assert len(seeded) == 3 and services.characters.seed_demo() == []  # only into an empty DB
    db = services.store.db
    count = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    queries, labels = count("SELECT COUNT(*) FROM queries"), count("SELECT COUNT(*) FROM teacher_labels")
    assert queries >= 3 * 3 * 20 and labels == 3 * queries
    assert count("SELECT COUNT(*) FROM queries WHERE split = 'eval'") > 0
    services.characters.import_demo([p for p in services.characters.demo_files() if p.stem == "maelle_kervran"])
    assert (count("SELECT COUNT(*) FROM queries"), count("SELECT COUNT(*) FROM teacher_labels")) == (queries, labels)


def test_card_drafts_only_from_fields_that_describe_the_character(tmp_path):
    import json as _json

    from apc_tui.importers import read_character_file

    card = {"spec": "chara_card_v2", "data": {
        "name": "Mira Holt", "description": "Mira Holt repairs clocks in Lisbon. She is sixty years old.",
        "personality": "Patient and dry-humoured.", "scenario": "A customer walks into her workshop.",
        "first_mes": "Ah, another broken pendulum?"}}  # fmt: skip
    path = tmp_path / "mira.json"
    path.write_text(_json.dumps(card))
    (parsed,) = read_character_file(path)
    drafted = [t for t, origin, _ in parsed.statements]
    assert drafted == ["Mira Holt repairs clocks in Lisbon.", "She is sixty years old.", "Patient and dry-humoured."]
    assert {origin for _, origin, _ in parsed.statements} == {"split"}  # marked as drafts, to review
    assert "A customer walks into her workshop." in parsed.source_text  # the scenario stays as context
