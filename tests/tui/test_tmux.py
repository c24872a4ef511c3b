"""The real ``dslocal`` on a real terminal: tmux runs it in a 100x30 pane, keys go in, the pane is read back.

No doubles: the TUI is wired to this machine, with its own home in tmp_path and Ollama at a closed port."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

REPO = Path(__file__).resolve().parents[2]
EXIT_MARK = "DSLOCAL-EXITED-WITH="


class Pane:
    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "-f", os.devnull, *args], capture_output=True, text=True,
                              timeout=30, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        """What the pane shows now."""
        return self.tmux("capture-pane", "-p", "-t", "dslocal")

    def everything(self) -> str:
        """The pane and its scrollback (what was printed after the TUI left the alternate screen)."""
        return self.tmux("capture-pane", "-p", "-S", "-", "-t", "dslocal")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "dslocal", *keys)

    def wait_for(self, ok: Callable[[str], bool], what: str, timeout: float = 60.0, *, whole: bool = False) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.everything() if whole else self.screen()
            assert "Traceback" not in text, f"a traceback in the pane:\n{self.everything()}"
            if ok(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"the pane never showed {what} within {timeout:g} s; it shows:\n{text}")


@pytest.fixture
def pane(tmp_path):
    socket = f"dslocal-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    pane = Pane(socket)
    try:
        yield pane
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30, check=False)


def test_the_real_tui_in_tmux(pane, tmp_path):
    env = {
        "DSLOCAL_HOME": str(tmp_path / "home"),
        "OLLAMA_HOST": "127.0.0.1:9",  # the discard port: nothing answers there
        "TERM": "xterm-256color",
        "PYTHONPATH": str(REPO),
    }
    settings = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    command = (f"cd {shlex.quote(str(REPO))} && env -u DSLOCAL_NO_TUI -u DSLOCAL_CONFIG {settings} "
               f"{shlex.quote(sys.executable)} -m dslocal; echo {EXIT_MARK}$?; sleep 300")
    pane.tmux("new-session", "-d", "-s", "dslocal", "-x", "100", "-y", "30", "sh", "-c", command)
    pane.tmux("set-option", "-t", "dslocal", "history-limit", "5000")

    first = pane.wait_for(lambda t: "This machine" in t and "CPU" in t, "the hardware screen")
    assert "detecting the hardware" not in first or "CPU" in first
    assert pane.tmux("display-message", "-p", "-t", "dslocal", "#{pane_width}x#{pane_height}").strip() == "100x30"

    pane.keys("6")
    panel = pane.wait_for(lambda t: "127.0.0.1:9" in t and ("not running" in t or "not installed" in t),
                          "the Ollama panel saying Ollama is down")
    assert "Log of dslocal's Ollama server" in panel

    pane.keys("1")
    pane.wait_for(lambda t: "This machine" in t and "CPU" in t, "the hardware screen again")

    pane.keys("q")
    after = pane.wait_for(lambda t: EXIT_MARK in t, "dslocal exiting", timeout=30, whole=True)
    assert f"{EXIT_MARK}0" in after, after
    assert "Traceback" not in after and "Error" not in after.split(EXIT_MARK)[0], after
