"""`apc models pull` against a real local hub mirror (tests/hub_server.py) reached through HF_ENDPOINT.

The suite runs with HF_HUB_OFFLINE=1; only the `apc` subprocesses started here drop it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_core import ROOT

TOKEN = "hf_test_secret_0123456789"


@pytest.fixture
def hub():
    from tests.hub_server import FakeHub

    server = FakeHub().start()
    yield server
    server.stop()


def _apc(hub, hf_home: Path, *args: str, offline: bool = False, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "apc_tui.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_pull_a_chat_model_resumes_prefers_safetensors_and_sends_the_token(hub, tiny_dir, tmp_path):
    big = os.urandom(12 * 2**20)  # over huggingface_hub's 10 MiB download chunk, so a drop resumes mid-file
    commit = hub.add_repo("org/tiny-chat", tiny_dir, extra={"big.safetensors": big, "pytorch_model.bin": b"pickle" * 10, "model.onnx": b"onnx"})
    hub.cut_after["big.safetensors"] = 11 * 2**20  # the connection drops after 11 MiB
    r = _apc(hub, tmp_path / "hf", "models", "pull", "hf:org/tiny-chat")
    assert r.returncode == 0, r.stderr
    snapshot = tmp_path / "hf" / "hub" / "models--org--tiny-chat" / "snapshots" / commit
    files = len(list(tiny_dir.iterdir())) + 1
    assert f"org/tiny-chat: {files} files, weights safetensors, in {snapshot}" in r.stdout
    assert (snapshot / "big.safetensors").read_bytes() == big  # resumed, not corrupted
    for f in tiny_dir.iterdir():
        assert (snapshot / f.name).read_bytes() == f.read_bytes()
    assert not (snapshot / "pytorch_model.bin").exists() and not (snapshot / "model.onnx").exists()  # one weights format
    got = [h for p, h in hub.downloads() if p.endswith("/big.safetensors")]
    assert len(got) == 2 and "range" not in got[0] and got[1]["range"] == f"bytes={10 * 2**20}-"  # only the missing part again
    assert "Fetching" in r.stderr  # huggingface_hub's progress bars
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for _, path, h in hub.requests if "/resolve/" in path)
    assert TOKEN not in r.stdout + r.stderr
    again = _apc(hub, tmp_path / "hf", "models", "pull", "hf:org/tiny-chat", "--json")  # all cached: nothing downloaded again
    assert again.returncode == 0 and json.loads(again.stdout)[0]["path"] == str(snapshot)
    assert len([p for p, _ in hub.downloads() if p.endswith("/big.safetensors")]) == 2


def test_pull_the_paper_profile_then_doctor_finds_it_offline(hub, tiny_dir, tmp_path):
    from engine.hub import PROFILE_REPOS

    for repo in PROFILE_REPOS["paper"]:  # any tiny checkpoint stands in: doctor looks for the files in the cache
        hub.add_repo(repo, tiny_dir)
    r = _apc(hub, tmp_path / "hf", "models", "pull", "paper", "--json")
    assert r.returncode == 0, r.stderr
    assert [row["repo"] for row in json.loads(r.stdout)] == list(PROFILE_REPOS["paper"])
    doctor = _apc(hub, tmp_path / "hf", "doctor", "--json", offline=True)
    rows = {row["check"]: row for row in json.loads(doctor.stdout)}
    assert rows["profile paper"]["ok"] and not rows["profile multilingual"]["ok"]
    assert "apc models pull multilingual" in rows["profile multilingual"]["fix"] and "hf download KomeijiForce/" in rows["profile multilingual"]["fix"]


def test_pull_errors_are_one_line(hub, tmp_path):
    missing = _apc(hub, tmp_path / "hf", "models", "pull", "hf:org/nope")
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith("error: org/nope: no such repo at http://127.0.0.1")
    assert "Traceback" not in missing.stderr and TOKEN not in missing.stderr
    offline = _apc(hub, tmp_path / "hf", "models", "pull", "paper", offline=True)
    assert offline.returncode == 2 and "HF_HUB_OFFLINE is set" in offline.stderr and "unset it" in offline.stderr


@pytest.mark.parametrize(
    ("target", "repos"),
    [("multilingual", ["KomeijiForce/xlm-roberta-large-relevance-multilingual-12character",
                       "KomeijiForce/xlm-roberta-large-nli-multilingual-12character"]),
     ("hf:google/gemma-1.1-7b-it", ["google/gemma-1.1-7b-it"]),
     ("hf:org/base+lora:org/adapter", ["org/base", "org/adapter"]),
     ("judge:hf:org/judge", ["org/judge"])],
)  # fmt: skip
def test_targets(target, repos):
    from engine.hub import repos_for

    assert repos_for(target) == repos


@pytest.mark.parametrize("target", ["embedded", "tiny", "openai:gpt-4o", "hf:/tmp", "bogus", "hf:a/b/c"])
def test_nothing_to_pull(target):
    from engine.errors import ConfigError
    from engine.hub import repos_for

    with pytest.raises(ConfigError, match="nothing to download|not something to pull|not a hub id"):
        repos_for(target)
