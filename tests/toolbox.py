"""Small helpers the tests share: free loopback ports and stand-in executables on PATH."""

from __future__ import annotations

import socket
import stat
import sys
from pathlib import Path

FAKE_OLLAMA = Path(__file__).parent / "fake_ollama.py"


def free_port() -> int:
    """A TCP port nothing listens on now (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    """An executable ``bin_dir/name`` running the shell ``body``."""
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def fake_ollama(bin_dir: Path) -> Path:
    """``bin_dir/ollama``: the fake Ollama server (tests/fake_ollama.py) under the real binary's name."""
    return fake_tool(bin_dir, "ollama", f'exec "{sys.executable}" "{FAKE_OLLAMA}" "$@"')
