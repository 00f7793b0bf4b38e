"""Character Card V1/V2/V3 round trips: every V3 field, V3 stays V3, both PNG chunks, the card's
art kept, unknown fields (top level, `data`, lorebook) and statements preserved."""

from __future__ import annotations

import base64
import json
from io import BytesIO
from pathlib import Path

from PIL import Image, PngImagePlugin

# The field lists as the specs define them (chara_card_v2: malfoyslastname/character-card-spec-v2;
# chara_card_v3: kwaroran/character-card-spec-v3 SPEC_V3.md), written out here, not imported from the code.
V2_SPEC_FIELDS = {"name", "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes",
                  "system_prompt", "post_history_instructions", "alternate_greetings", "tags", "creator",
                  "character_version", "extensions"}  # fmt: skip
V3_SPEC_FIELDS = V2_SPEC_FIELDS | {"group_only_greetings", "assets", "nickname", "creator_notes_multilingual", "source",
                                   "creation_date", "modification_date"}  # fmt: skip
STATEMENTS = ["Ines Corvo bakes bread in Porto.", "Ines Corvo has a brother named Tiago."]


def v3_card() -> dict:
    return {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "x_top_level": {"kept": True},  # unknown top-level field
        "data": {
            "name": "Ines Corvo",
            "description": "Ines Corvo bakes bread in Porto.\n\nInes Corvo has a brother named Tiago.",
            "personality": "warm", "scenario": "a bakery at dawn", "first_mes": "Bom dia!", "mes_example": "<START>",
            "creator_notes": "for tests", "system_prompt": "", "post_history_instructions": "",
            "alternate_greetings": ["Olá!"], "tags": ["baker"], "creator": "qa", "character_version": "1.2",
            "extensions": {"depth_prompt": {"depth": 4}, "apc_workbench": {"language": "en", "statements": STATEMENTS}},
            "character_book": {"entries": [{"keys": ["bread"], "content": "sourdough", "extensions": {}, "enabled": True,
                                            "insertion_order": 0, "use_regex": False}]},
            "group_only_greetings": ["Hello, all of you."],
            "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
                       {"type": "emotion", "uri": "https://example.org/happy.webp", "name": "happy", "ext": "webp"}],
            "nickname": "Nes",
            "creator_notes_multilingual": {"pt": "para testes"},
            "source": ["https://example.org/ines"],
            "creation_date": 1700000000,
            "modification_date": 1700000500,
            "x_data_field": [1, 2, 3],  # unknown data field
        },
    }  # fmt: skip


def art_png(path: Path, chunks: dict[str, dict]) -> Path:
    """A real picture (a gradient with alpha) carrying `chunks` and an unrelated text chunk."""
    img = Image.new("RGBA", (37, 23))
    img.putdata([(x * 6, y * 11, (x * y) % 256, 200) for y in range(23) for x in range(37)])
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "drawn for the test")
    for key, card in chunks.items():
        info.add_text(key, base64.b64encode(json.dumps(card).encode()).decode())
    img.save(path, pnginfo=info)
    return path


def png_cards(path: Path) -> tuple[Image.Image, dict[str, dict]]:
    img = Image.open(BytesIO(path.read_bytes()))
    img.load()
    return img, {k: json.loads(base64.b64decode(v)) for k, v in img.text.items() if k in ("chara", "ccv3")}


def without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_card_v3_export_has_every_field(services, tmp_path):
    src = tmp_path / "v2.json"
    src.write_text(json.dumps({"spec": "chara_card_v2", "spec_version": "2.0",
                               "data": {"name": "Ines Corvo", "description": "Ines Corvo bakes bread in Porto."}}))  # fmt: skip
    services.characters.import_files([src])
    out = json.loads(services.characters.export("Ines Corvo", "card-v3", tmp_path / "v3.json").read_text())
    assert out["spec"] == "chara_card_v3" and out["spec_version"] == "3.0"
    data = out["data"]
    assert set(data) == V3_SPEC_FIELDS
    assert data["group_only_greetings"] == [] and data["source"] == [] and data["creator_notes_multilingual"] == {}
    assert data["assets"] == [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}]  # the spec's default
    assert data["nickname"] == "Ines Corvo"
    created = services.characters.repo.row("Ines Corvo")["created_at"]
    from datetime import datetime

    assert data["creation_date"] == int(datetime.fromisoformat(created).timestamp())  # Unix seconds, UTC
    assert isinstance(data["modification_date"], int) and data["modification_date"] >= data["creation_date"]
    assert data["extensions"]["apc_workbench"]["statements"] == ["Ines Corvo bakes bread in Porto."]
    # and the V2 export has every V2 field
    v2 = json.loads(services.characters.export("Ines Corvo", "card-v2", tmp_path / "v2out.json").read_text())
    assert v2["spec"] == "chara_card_v2" and v2["spec_version"] == "2.0" and set(v2["data"]) == V2_SPEC_FIELDS


def test_v3_card_stays_v3_and_keeps_every_field(services, tmp_path):
    src = tmp_path / "ines.json"
    src.write_text(json.dumps(v3_card()))
    services.characters.import_files([src])
    assert [s.text for s in services.characters.get("Ines Corvo").statements] == STATEMENTS
    first = json.loads(services.characters.export("Ines Corvo", "card", tmp_path / "out1.json").read_text())
    assert first["spec"] == "chara_card_v3" and first["spec_version"] == "3.0"  # not downgraded to V2
    original = v3_card()
    assert without(first, "data") == without(original, "data")  # unknown top-level field kept
    for key, value in original["data"].items():
        if key != "modification_date":
            assert first["data"][key] == value, key  # every field, lorebook and unknown data field included
    assert first["data"]["creation_date"] == 1700000000  # never rewritten
    services.characters.delete("Ines Corvo")
    services.characters.purge("Ines Corvo")
    services.characters.import_files([tmp_path / "out1.json"])
    second = json.loads(services.characters.export("Ines Corvo", "card", tmp_path / "out2.json").read_text())
    assert without(second["data"], "modification_date") == without(first["data"], "modification_date")
    assert [s.text for s in services.characters.get("Ines Corvo").statements] == STATEMENTS
    # a defaulted nickname (= the name) follows a rename; a real one stays
    plain = {"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "Ines Corvo", "description": "x"}}
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    services.characters.import_files([tmp_path / "plain.json"], name="Ines Plain")
    services.characters.export("Ines Plain", "card", tmp_path / "plain_out.json")
    services.characters.import_files([tmp_path / "plain_out.json"], name="Ines Renamed")
    renamed = json.loads(services.characters.export("Ines Renamed", "card", tmp_path / "renamed.json").read_text())
    assert renamed["data"]["nickname"] == "Ines Renamed"
    services.characters.import_files([tmp_path / "out1.json"], name="Ines Other")
    assert json.loads(services.characters.export("Ines Other", "card", tmp_path / "o.json").read_text())["data"]["nickname"] == "Nes"


def test_card_png_writes_both_chunks_on_the_imported_art(services, tmp_path):
    src = art_png(tmp_path / "ines.png", {"chara": {**v3_card(), "spec": "chara_card_v2"}, "ccv3": v3_card()})
    original, _ = png_cards(src)
    services.characters.import_files([src])
    out = services.characters.export("Ines Corvo", "card-png", tmp_path / "out.png")
    img, cards = png_cards(out)
    assert img.size == (37, 23) and img.mode == "RGBA" and img.tobytes() == original.tobytes()  # the art, not a flat image
    assert img.text["Comment"] == "drawn for the test"  # the art's other chunks survive
    assert cards["chara"]["spec"] == "chara_card_v2" and cards["ccv3"]["spec"] == "chara_card_v3"
    assert cards["chara"]["data"]["creator_notes"].startswith("This character card is Character Card V3")  # the spec's backfill note
    assert cards["ccv3"]["data"]["creator_notes"] == "for tests" and cards["ccv3"]["data"]["nickname"] == "Nes"
    assert cards["ccv3"]["data"]["extensions"]["apc_workbench"]["statements"] == STATEMENTS
    assert out.read_bytes().count(b"tEXtccv3") == 1 and out.read_bytes().count(b"tEXtchara") == 1

    # round trip through the exported PNG: ccv3 is read, the art and statements stay
    services.characters.delete("Ines Corvo")
    services.characters.purge("Ines Corvo")
    services.characters.import_files([out])
    again = services.characters.export("Ines Corvo", "card-png", tmp_path / "again.png")
    img2, cards2 = png_cards(again)
    assert img2.tobytes() == original.tobytes()
    assert cards2["ccv3"]["data"]["creator_notes"] == "for tests"  # the backfill note never leaks into V3
    assert [s.text for s in services.characters.get("Ines Corvo").statements] == STATEMENTS

    # re-importing the JSON card of the same character keeps the art it came with
    (tmp_path / "ines.json").write_text(json.dumps(v3_card()))
    services.characters.import_files([tmp_path / "ines.json"])
    img3, _ = png_cards(services.characters.export("Ines Corvo", "card-png", tmp_path / "third.png"))
    assert img3.tobytes() == original.tobytes()


def test_v2_png_art_kept_and_plain_image_without_art(services, tmp_path):
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Pia Holm", "description": "Pia Holm rows."}}
    services.characters.import_files([art_png(tmp_path / "pia.png", {"chara": card})])
    img, cards = png_cards(services.characters.export("Pia Holm", "card-png", tmp_path / "pia_out.png"))
    assert img.size == (37, 23) and set(cards) == {"chara", "ccv3"}
    assert "Character Card V3" not in cards["chara"]["data"]["creator_notes"]  # a V2 card is no V3 backfill
    cid = services.characters.repo.row("Pia Holm")["id"]
    services.characters.delete("Pia Holm")
    services.characters.purge("Pia Holm")
    assert services.characters.repo.art(cid) is None  # the art goes with its character

    (tmp_path / "plain.json").write_text(json.dumps({"name": "Pia Holm", "statements": ["Pia Holm rows."]}))
    services.characters.import_files([tmp_path / "plain.json"])
    img, cards = png_cards(services.characters.export("Pia Holm", "card-png", tmp_path / "plain.png"))
    assert img.size == (400, 600) and cards["ccv3"]["data"]["extensions"]["apc_workbench"]["statements"] == ["Pia Holm rows."]


def test_v1_card_and_unknown_top_level_fields_survive(services, tmp_path):
    v1 = {"name": "Odo Brand", "description": "Odo Brand keeps bees.", "personality": "calm", "scenario": "an orchard",
          "first_mes": "Mind the hives.", "mes_example": "", "avatar": "none", "chat": "Odo - 2024-1-1", "talkativeness": "0.5",
          "create_date": "2024-1-1 @10h 00m"}  # fmt: skip
    (tmp_path / "odo.json").write_text(json.dumps(v1))
    (result,) = services.characters.import_files([tmp_path / "odo.json"])
    assert result.kind == "chara_card_v1"
    statements = [s.text for s in services.characters.get("Odo Brand").statements]
    first = json.loads(services.characters.export("Odo Brand", "card", tmp_path / "odo_out.json").read_text())
    assert first["spec"] == "chara_card_v2" and set(first["data"]) >= V2_SPEC_FIELDS
    for key, value in v1.items():
        assert first[key] == value, key  # every V1 field, known or not, is still at the top
        if key in ("name", "description", "personality", "scenario", "first_mes", "mes_example"):
            assert first["data"][key] == value, key
    assert "avatar" not in first["data"]
    services.characters.delete("Odo Brand")
    services.characters.purge("Odo Brand")
    services.characters.import_files([tmp_path / "odo_out.json"])
    second = json.loads(services.characters.export("Odo Brand", "card", tmp_path / "odo_again.json").read_text())
    assert second == first
    assert [s.text for s in services.characters.get("Odo Brand").statements] == statements


def test_cli_export_card_v3_and_bad_format(services, tmp_path):
    from typer.testing import CliRunner

    from apc_tui.cli import app

    (tmp_path / "ines.json").write_text(json.dumps(v3_card()))
    services.characters.import_files([tmp_path / "ines.json"])
    runner = CliRunner()
    r = runner.invoke(app, ["characters", "export", "Ines Corvo", "--format", "card-v3", "--out", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "c.json").read_text())["spec"] == "chara_card_v3"
    r = runner.invoke(app, ["characters", "export", "Ines Corvo", "--format", "card-v4", "--out", str(tmp_path / "d.json")])
    from engine.errors import InputError  # the CLI's entry point prints it as one `error:` line and exits 2

    assert isinstance(r.exception, InputError) and "card-v3" in str(r.exception) and not (tmp_path / "d.json").exists()
    r = runner.invoke(app, ["characters", "export", "--help"])
    assert "card-v3" in r.output and "card-png" in r.output


def test_sillytavern_v2_card_round_trips_with_its_top_level_mirror(services, tmp_path):
    data = {**{k: "" for k in V2_SPEC_FIELDS}, "name": "Lio Sand", "description": "Lio Sand fixes radios.",
            "alternate_greetings": [], "tags": ["radio"], "extensions": {"talkativeness": "0.5", "fav": False},
            "character_book": {"name": "radios", "entries": []}, "x_unknown": {"nested": [1]}}  # fmt: skip
    st = {"name": "Lio Sand", "description": "Lio Sand fixes radios.", "personality": "", "scenario": "", "first_mes": "",
          "mes_example": "", "avatar": "none", "chat": "Lio Sand - 2024-5-1", "create_date": "2024-5-1", "creatorcomment": "",
          "spec": "chara_card_v2", "spec_version": "2.0", "data": data}  # fmt: skip
    (tmp_path / "lio.json").write_text(json.dumps(st))
    services.characters.import_files([tmp_path / "lio.json"])
    out = json.loads(services.characters.export("Lio Sand", "card", tmp_path / "out.json").read_text())
    apc = out["data"]["extensions"].pop("apc_workbench")
    assert out == st and apc["statements"] == ["Lio Sand fixes radios."]  # nothing lost, nothing added but our extension

    services.characters.import_files([tmp_path / "lio.json"], name="Lio Renamed")  # the top-level mirror follows a rename
    renamed = json.loads(services.characters.export("Lio Renamed", "card", tmp_path / "renamed.json").read_text())
    assert renamed["name"] == renamed["data"]["name"] == "Lio Renamed" and renamed["avatar"] == "none"
