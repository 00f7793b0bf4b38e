"""The bad-input corpus: every case must be refused with exactly one `error:` line on stderr, a
non-zero exit, no traceback, and a database whose logical dump is unchanged.

Cases run in this process (the same `run` that `main()` calls) against a fresh copy of a seeded
database; the few that need a real process (a signal) run as a subprocess.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures_boundaries import copy_db, dump, run_apc

C = "Maelle Kervran"
CHAT = ["chat", "-c", C, "-q", "Hello?"]
TRAIN = ["dpo", "train", "-c", C, "--name", "corpus-a"]
PAIRS = ["dpo", "pairs", "-c", C]
EVAL = ["eval", "-c", C]
PIPE = ["pipeline", "-c", C]


def cli_number_cases() -> list[tuple[str, list[str]]]:
    bad = {
        "chat": (CHAT, [("--n", "0"), ("--n", "-1"), ("--n", "17"), ("--n", "abc"), ("--n", "1.5"), ("--k", "-3"), ("--k", "0"),
                        ("--temperature", "nan"), ("--temperature", "-1"), ("--temperature", "inf"), ("--top-p", "0"),
                        ("--top-p", "1.5"), ("--max-new-tokens", "0"), ("--seed", "-1"), ("--conversation", "0"),
                        ("--parent", "-2"), ("--method", "bogus"), ("--model", "hf:/nonexistent/model"),
                        ("--model", "hf:gpt2+lora:/nonexistent/adapter"), ("--model", "bogus:x"), ("--model", ""),
                        ("--profile", "nonsense"), ("--profile", "rel=/nope,nli=/nope"), ("--device", "tpu"),
                        ("--template", "/nonexistent/template.jinja")]),
        "dpo train": (TRAIN, [("--beta", "-1"), ("--beta", "nan"), ("--beta", "0"), ("--lora-r", "0"), ("--lora-r", "-4"),
                              ("--lr", "nan"), ("--lr", "0"), ("--lr", "inf"), ("--lr", "5"), ("--epochs", "-1"), ("--epochs", "1e9"),
                              ("--epochs", "0"), ("--epochs", "nan"), ("--max-steps", "0"), ("--max-length", "0"),
                              ("--grad-accum", "0"), ("--save-steps", "0"), ("--model", "openai:gpt-4o"), ("--device", "gpu0")]),
        "dpo pairs": (PAIRS, [("--margin", "nan"), ("--margin", "inf"), ("--margin", "-1"), ("--max-new-tokens", "0"), ("--max", "0"),
                              ("--k", "0"), ("--method", "eu"), ("--method", "x")]),
        "eval": (EVAL, [("--queries", "0"), ("--methods", ""), ("--methods", "none,bogus"), ("--seed", "-5"), ("--max-new-tokens", "-1"),
                        ("--k", "-1")]),
        "pipeline": (PIPE, [("--max", "0"), ("--margin", "nan"), ("--epochs", "0"), ("--lora-r", "0"), ("--max-steps", "-7"),
                            ("--queries", "-1")]),
        "eu train": (["eu", "train", "-c", C, "--name", "corpus-eu"], [("--lr", "-0.1"), ("--epochs", "inf"), ("--lora-r", "0")]),
    }
    cases = []
    for group, (base, pairs) in bad.items():
        cases += [(f"{group} {flag} {value}", [*base, flag, value]) for flag, value in pairs]
    cases += [
        ("dpo train bad name", ["dpo", "train", "-c", C, "--name", "bad name!"]),
        ("jobs list --limit 0", ["jobs", "list", "--limit", "0"]),
        ("jobs show 0", ["jobs", "show", "0"]),
        ("jobs show 999", ["jobs", "show", "999"]),
        ("conversations list --limit -1", ["conversations", "list", "--limit", "-1"]),
        ("conversations show 0", ["conversations", "show", "0"]),
        ("statements edit 0", ["statements", "edit", "0", "x"]),
        ("statements enable 999999", ["statements", "enable", "999999"]),
        ("chat unknown character", ["chat", "-c", "Nobody", "-q", "hi"]),
        ("chat empty query", ["chat", "-c", C, "-q", "   "]),
    ]
    return cases


def usage_cases() -> list[tuple[str, list[str]]]:
    return [
        ("chat missing --query", ["chat", "-c", C]),
        ("dpo pairs missing -c", ["dpo", "pairs"]),
        ("dpo train missing --name", ["dpo", "train", "-c", C]),
        ("unknown option", ["chat", "-c", C, "-q", "hi", "--bogus"]),
        ("option without value", ["chat", "-c", C, "-q"]),
        ("extra argument", ["characters", "show", C, "extra"]),
        ("no such command", ["nosuchcommand"]),
        ("missing argument", ["characters", "show"]),
        ("--db without value", ["--db"]),
        ("bad type for an id", ["jobs", "show", "abc"]),
        ("delete without confirmation (stdin closed)", ["characters", "delete", C]),
        ("delete unknown", ["characters", "delete", "Nobody", "--yes"]),
        ("restore not deleted", ["characters", "restore", C]),
    ]


def config_cases(tmp: Path) -> list[tuple[str, list[str], dict]]:
    def conf(name: str, text: str) -> dict:
        p = tmp / f"config-{name}.toml"
        p.write_text(text, encoding="utf-8")
        return {"APC_CONFIG": str(p)}

    return [
        ("config k = 'abc'", [], conf("k", 'k = "abc"\n')),
        ("config k = 0", [], conf("k0", "k = 0\n")),
        ("config k = -3", [], conf("kneg", "k = -3\n")),
        ("config k = 2.5", [], conf("kf", "k = 2.5\n")),
        ("config profile = 7", [], conf("p7", "profile = 7\n")),
        ("config profile unknown", [], conf("pu", 'profile = "nope"\n')),
        ("config model bogus", [], conf("m", 'model = "bogus:x"\n')),
        ("config model missing path", [], conf("mp", 'model = "hf:/nonexistent/dir"\n')),
        ("config device tpu", [], conf("d", 'device = "tpu"\n')),
        ("config method x", [], conf("me", 'method = "x"\n')),
        ("config trust_remote_code maybe", [], conf("t", 'trust_remote_code = "maybe"\n')),
        ("config annotator 5", [], conf("a", "annotator = 5\n")),
        ("config db_path 3", [], conf("db", "db_path = 3\n")),
        ("config base url", [], conf("u", 'openai_base_url = "not a url"\n')),
        ("config unknown key", [], conf("unk", 'modle = "tiny"\n')),
        ("config secret", [], conf("sec", 'api_key = "sk-abcdefghijklmnop"\n')),
        ("config invalid TOML", [], conf("toml", "k = = 3\n")),
        ("APC_CONFIG missing file", [], {"APC_CONFIG": str(tmp / "missing.toml")}),
        ("--config missing file", ["--config", str(tmp / "missing2.toml")], {}),
        ("env APC_K abc", [], {"APC_K": "abc"}),
        ("env APC_DEVICE tpu", [], {"APC_DEVICE": "tpu"}),
        ("env APC_MODEL bogus", [], {"APC_MODEL": "bogus:x"}),
        ("env APC_PROFILE x", [], {"APC_PROFILE": "x"}),
        ("env APC_METHOD x", [], {"APC_METHOD": "x"}),
    ]


def write_files(tmp: Path) -> dict[str, Path]:
    f: dict[str, Path] = {}

    def put(name: str, data) -> None:
        p = tmp / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        f[name] = p

    card = lambda **data: {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Ann", "description": "Ann is a pilot.", **data}}  # noqa: E731
    ext = lambda **apc: card(extensions={"apc_workbench": apc})  # noqa: E731
    put("empty.json", "")
    put("binary.txt", b"\x00\x01\x02\x03" * 100)
    put("latin1.txt", "Zoë lives in Brest.".encode("latin-1"))
    put("spaces.txt", "   \n\n  \t ")
    put("malformed.json", '{"name": "Ann", "statements": [')
    put("deep.json", "[" * 100_000 + "]" * 100_000)
    put("deep_obj.json", '{"a":' * 50_000 + "1" + "}" * 50_000)
    put("card_name_list.json", card(name=["Ann", "Bob"]))
    put("card_name_dict.json", card(name={"first": "Ann"}))
    put("card_name_nul.json", card(name="Ann\x00Evil"))
    put("card_statements_string.json", ext(statements="Ann is a pilot."))
    put("card_statements_numbers.json", ext(statements=[1, 2]))
    put("card_language_5.json", ext(language=5, statements=["Ann is a pilot."]))
    put("card_language_word.json", ext(language="English please", statements=["Ann is a pilot."]))
    put("card_description_list.json", card(description=["a", "b"]))
    put("stmts_string.json", {"name": "Ann", "statements": "Ann is a pilot."})
    put("stmts_nonstring.json", {"name": "Ann", "statements": ["Ann is a pilot.", {"x": 1}]})
    put("stmts_language_5.json", {"name": "Ann", "language": 5, "statements": ["Ann is a pilot."]})
    put("stmts_name_list.json", {"name": ["Ann"], "statements": ["Ann is a pilot."]})
    put("stmts_name_nul.json", {"name": "Ann\u0000", "statements": ["Ann is a pilot."]})
    put("stmts_empty.json", {"name": "Ann", "statements": []})
    put("stmts_huge_statement.json", {"name": "Ann", "statements": ["Ann " + "x" * (5 * 1024 * 1024)]})
    put("stmts_name_long.json", {"name": "A" * 500, "statements": ["Ann is a pilot."]})
    put("neither.json", {"hello": "world"})
    put("number.json", "42")
    put("wiki_huge_sentence.txt", "Ann " + "x" * 10_000 + " flies")
    put("png_corrupt.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    from PIL import Image

    Image.new("RGB", (2, 2)).save(tmp / "png_no_card.png")
    f["png_no_card.png"] = tmp / "png_no_card.png"
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("chara", base64.b64encode(json.dumps(card(name=["x"])).encode()).decode())
    Image.new("RGB", (2, 2)).save(tmp / "png_bad_card.png", pnginfo=info)
    f["png_bad_card.png"] = tmp / "png_bad_card.png"
    (tmp / "a_dir").mkdir(exist_ok=True)
    f["a_dir"] = tmp / "a_dir"
    f["missing.json"] = tmp / "missing.json"
    return f


def file_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    files = write_files(tmp)
    cases = [(f"import {name}", ["characters", "import", str(path)]) for name, path in files.items()]
    good = tmp / "good.json"
    good.write_text(json.dumps({"name": "Goody", "statements": ["Goody bakes bread."]}), encoding="utf-8")
    cases += [
        ("import good + bad (nothing stored)", ["characters", "import", str(good), str(files["stmts_string.json"])]),
        ("import --language bogus", ["characters", "import", str(good), "--language", "!!"]),
        ("import --name with NUL", ["characters", "import", str(good), "--name", "A\x01B"]),
        ("score --statements bad", ["score", "--statements", str(files["stmts_string.json"]), "-q", "x", "--response", "y"]),
        ("disc eval missing data", ["disc", "eval", "--task", "nli", "--data", str(tmp / "none.jsonl")]),
        ("export to a directory", ["characters", "export", C, "--out", str(files["a_dir"]), "--format", "bogus"]),
    ]
    return cases


def server_cases(tmp: Path) -> list[tuple[str, list[str], dict]]:
    """A chat server that is not there: refused with one line; no conversation, no user message stored."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": "sk-corpus-secret-key-123456"}
    return [
        ("chat server down", ["chat", "-c", C, "-q", "Hello?", "--model", "openai:gpt-x", "--method", "none", "--no-score"], env),
        ("chat server down (lcm)", ["chat", "-c", C, "-q", "Hi", "--model", "openai:gpt-x", "--method", "lcm", "--no-score", "--n", "1"], env),
    ]


def check(ran, before: list[str], after: list[str]) -> str:
    """'' when the case was refused properly, else what went wrong."""
    lines = [line for line in ran.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if ran.crashed or "Traceback" in ran.err or "Traceback" in ran.out:
        return "traceback: " + (ran.crashed or ran.err)[-400:]
    if ran.code == 0:
        return "exit code 0"
    if len(errors) != 1:
        return f"{len(errors)} error lines: {ran.err[-400:]!r}"
    if any(ch in ran.err for ch in "╭│╰"):
        return "a Rich box"
    if "sk-corpus-secret" in ran.err + ran.out:
        return "the API key was printed"
    if before != after:
        return "database changed"
    return ""


def test_bad_input_corpus(seeded_db, tmp_path, capsys):
    cases: list[tuple[str, str, list[str], dict]] = []
    cases += [("cli numbers", n, a, {}) for n, a in cli_number_cases()]
    cases += [("usage", n, a, {}) for n, a in usage_cases()]
    cases += [("config", n, [*a, "characters", "list"], e) for n, a, e in config_cases(tmp_path)]
    cases += [("files", n, a, {}) for n, a in file_cases(tmp_path)]
    cases += [("servers", n, a, e) for n, a, e in server_cases(tmp_path)]
    failures, counts = [], Counter()
    for i, (kind, name, args, env) in enumerate(cases):
        db = copy_db(seeded_db, tmp_path / f"case{i}.db")
        before = dump(db)
        ran = run_apc(args, env={"APC_DB": str(db), **env})
        problem = check(ran, before, dump(db))
        counts[kind] += 1
        if problem:
            failures.append(f"[{kind}] {name}: {problem}")
        elif os.environ.get("APC_CORPUS_SHOW"):
            print(f"[{kind}] {name}: {ran.err.strip()}")
    with capsys.disabled():
        print(f"\nbad-input corpus: {sum(counts.values())} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    assert sum(counts.values()) >= 100
    assert not failures, "\n".join(failures)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_at_a_prompt_changes_nothing(seeded_db, tmp_path):
    """Ctrl-C while `characters delete` asks: one error line, non-zero exit, nothing deleted."""
    db = copy_db(seeded_db, tmp_path / "sig.db")
    before = dump(db)
    env = {**os.environ, "APC_DB": str(db), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "apc_tui.cli", "characters", "delete", C], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    out = ""
    while "Delete" not in out and time.monotonic() < deadline:  # wait for the question
        out += proc.stdout.read1(4096).decode() if hasattr(proc.stdout, "read1") else os.read(proc.stdout.fileno(), 4096).decode()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert proc.returncode != 0 and len(errors) == 1 and "Traceback" not in err, err
    assert dump(db) == before
