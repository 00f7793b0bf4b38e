"""The workbench in a real terminal (tmux): it draws the characters, switches screens, opens help,
quits cleanly, and never prints a traceback."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_core import ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install -y tmux)")


class Tmux:
    """A private tmux server (its own socket): the user's sessions are never touched."""

    def __init__(self):
        self.socket = f"apc-test-{os.getpid()}"
        self.session = "apc"

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20)
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", self.session)

    def wait_for(self, *texts: str, timeout: float = 60) -> str:
        """The pane once it shows every text (frames are drawn in parts: poll until all are there)."""
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if all(t in shown for t in texts):
                return shown
            time.sleep(0.3)
        raise AssertionError(f"{texts!r} never all appeared on the terminal; it shows:\n{shown}")


@pytest.fixture
def tmux():
    t = Tmux()
    yield t
    t("kill-server", check=False)


def test_apc_runs_in_tmux(tmux, tmp_path):
    apc = Path(sys.executable).parent / "apc"
    (tmp_path / "none.toml").touch()  # an APC_CONFIG that names a missing file is refused
    command = shlex.quote(str(apc)) if apc.exists() else f"{shlex.quote(sys.executable)} -m apc_tui.cli"
    env = f"APC_DB={shlex.quote(str(tmp_path / 'apc.db'))} APC_CONFIG={shlex.quote(str(tmp_path / 'none.toml'))} TERM=xterm-256color"
    script = f"cd {shlex.quote(str(ROOT))} && env {env} {command}; echo APC-EXIT=$?; sleep 60"
    tmux("new-session", "-d", "-s", tmux.session, "-x", "100", "-y", "30", script)

    tmux.wait_for("Kaito Renn", "Maelle Kervran", "顾明澜", "Characters F2", "Kaito Renn · 24 statements")

    tmux("send-keys", "-t", tmux.session, "F3")
    tmux.wait_for("› message", "MEANINGLESS")  # no conversation yet: the message box waits, focused  # the default model is tiny: the banner says so

    tmux("send-keys", "-t", tmux.session, "F1")
    tmux.wait_for("Keys on Chat")
    tmux("send-keys", "-t", tmux.session, "Escape")
    tmux("send-keys", "-t", tmux.session, "F5")
    tmux.wait_for("new training job")

    tmux("send-keys", "-t", tmux.session, "C-q")
    shown = tmux.wait_for("APC-EXIT=")
    assert "APC-EXIT=0" in shown, shown
    assert "Traceback" not in shown and "Error" not in shown, shown


def test_new_character_chat_takes_a_typed_question_at_80x24(tmux, tmp_path):
    """A newcomer's first minute over SSH: Enter on a character with no conversation opens Chat with
    the input focused, the typed question lands in the input (not in shortcuts), Escape leaves it
    and `m` comes back to it without typing an "m"."""
    apc = Path(sys.executable).parent / "apc"
    command = shlex.quote(str(apc)) if apc.exists() else f"{shlex.quote(sys.executable)} -m apc_tui.cli"
    (tmp_path / "none.toml").touch()  # an APC_CONFIG that names a missing file is refused
    env = f"APC_DB={shlex.quote(str(tmp_path / 'apc.db'))} APC_CONFIG={shlex.quote(str(tmp_path / 'none.toml'))} TERM=xterm-256color"
    script = f"cd {shlex.quote(str(ROOT))} && env {env} {command}; echo APC-EXIT=$?; sleep 60"
    tmux("new-session", "-d", "-s", tmux.session, "-x", "80", "-y", "24", script)
    tmux.wait_for("Kaito Renn", "Characters")
    time.sleep(0.5)
    tmux("send-keys", "-t", tmux.session, "Enter")
    tmux.wait_for("New conversation: type below")
    time.sleep(0.5)
    question = "Where do you live? tell me plenty"  # n, e, p, t, u, ? would all be shortcuts
    tmux("send-keys", "-t", tmux.session, "-l", question)
    tmux.wait_for(question, timeout=30)
    tmux("send-keys", "-t", tmux.session, "Escape")
    time.sleep(0.5)
    tmux("send-keys", "-t", tmux.session, "m")
    time.sleep(0.5)
    tmux("send-keys", "-t", tmux.session, "-l", "!")
    shown = tmux.wait_for(question + "!", timeout=30)
    assert "m" + question not in shown and question + "m" not in shown, shown
    tmux("send-keys", "-t", tmux.session, "C-q")
    shown = tmux.wait_for("APC-EXIT=")
    assert "APC-EXIT=0" in shown and "Traceback" not in shown, shown
