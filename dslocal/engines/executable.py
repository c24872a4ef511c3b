"""The ``llama-server`` engine: llama.cpp's server executable, on PATH or the one in an Ollama >= 0.30
Linux bundle (``lib/ollama/llama-server``, with the GPU libraries Ollama already installed next to it),
run with the plan as arguments (expert placement included, which Ollama itself never passes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from dslocal.engines.launch import Launch
from dslocal.engines.process import ServerProcess
from dslocal.errors import NotFoundError

NAME = "llama-server"


def bundle_server(ollama_binary: Path) -> Path | None:
    """``.../bin/ollama`` -> ``.../lib/ollama/llama-server`` when the bundle has one (v0.30 and later)."""
    root = ollama_binary.resolve().parent.parent
    candidate = root / "lib" / "ollama" / NAME
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def find_server(explicit: str | None, ollama_binaries: Iterable[Path] = ()) -> Path:
    """``explicit`` (a path, or a name on PATH), else ``llama-server`` on PATH, else an Ollama bundle's."""
    if explicit:
        found = shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
        if not found:
            raise NotFoundError(f"no llama-server at {explicit}", "give the path of a llama-server executable")
        return Path(found)
    found = shutil.which(NAME)
    if found:
        return Path(found)
    for binary in ollama_binaries:
        bundled = bundle_server(binary)
        if bundled is not None:
            return bundled
    raise NotFoundError("no llama-server executable here (not on PATH, and no Ollama >= 0.30 bundle has one)",
                        "use --engine embedded, or install llama.cpp or Ollama ('dslocal ollama install')")


class ExecutableServer(ServerProcess):
    name = NAME

    def __init__(self, binary: Path, launch: Launch, log_path: Path) -> None:
        super().__init__(launch, log_path)
        self.binary = binary

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "LLAMA_API_KEY"}
        env.update(self.launch.environment())
        folder = str(self.binary.resolve().parent)  # a bundle's libggml*.so and GPU runtimes sit beside it
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (folder, env.get("LD_LIBRARY_PATH", "")) if p)
        return env

    def _spawn(self) -> subprocess.Popen:
        if self.launch.port == 0:
            raise ValueError("the llama-server engine needs a port (pick a free one first)")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            return subprocess.Popen([str(self.binary), *self.launch.args()], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=self.environment(), close_fds=True)
        finally:
            log.close()

    def _address(self, deadline: float) -> str:
        host = self.launch.host
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):
            shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        return f"http://{shown}:{self.launch.port}"


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
