"""The Ollama daemon: find it, read its version, and run a dslocal-managed ``ollama serve``.

A managed server has a PID file and a log file under dslocal's folders, binds to
127.0.0.1 unless told otherwise, and gets the environment DeepSeek needs (flash
attention, a long load timeout for 100+ GB models, no calls to ollama.com).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dslocal.errors import OllamaError
from dslocal.fsutil import atomic_write_bytes
from dslocal.ollama.client import OllamaClient, base_url

COMMON_LOCATIONS = ("/usr/local/bin/ollama", "/usr/bin/ollama", "/opt/homebrew/bin/ollama",
                    "~/.local/bin/ollama", "/Applications/Ollama.app/Contents/Resources/ollama")


@dataclass(frozen=True)
class DaemonFiles:
    pid_file: Path
    log_file: Path
    managed_binary: Path  # where 'dslocal ollama install' puts it

    @classmethod
    def of(cls, paths) -> DaemonFiles:  # noqa: ANN001 - dslocal.paths.Paths
        """The managed server's files in dslocal's own folders."""
        return cls(pid_file=paths.state_dir / "ollama.pid", log_file=paths.log_dir / "ollama.log",
                   managed_binary=paths.data_dir / "ollama" / "bin" / "ollama")


def find_binary(files: DaemonFiles) -> Path | None:
    found = shutil.which("ollama")
    if found:
        return Path(found)
    for candidate in (str(files.managed_binary), *COMMON_LOCATIONS):
        path = Path(candidate).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


BINARY_TIMEOUT = 10.0


def probe_binary(binary: Path, timeout: float = BINARY_TIMEOUT) -> tuple[str | None, str | None]:
    """``(version, None)`` from ``BINARY --version``, or ``(None, why it gave none)``."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, errors="replace", check=False)
    except subprocess.TimeoutExpired:
        return None, f"'{binary.name} --version' did not finish in {timeout:g} s"
    except OSError as exc:
        return None, f"it cannot be run: {exc.strerror or exc}"
    match = re.search(r"(\d+\.\d+\.\d+)", out.stdout + out.stderr)
    if match:
        return match[1], None
    said = next((line.strip() for line in (out.stderr + out.stdout).splitlines() if line.strip()), "")
    said = f": {said[:120]}" if said else ""
    return None, f"'{binary.name} --version' exited {out.returncode} without a version{said}"


def binary_version(binary: Path) -> str | None:
    return probe_binary(binary)[0]


def is_system_service() -> bool:
    """Whether systemd runs Ollama (the official Linux installer sets that up)."""
    if not shutil.which("systemctl"):
        return False
    try:
        out = subprocess.run(["systemctl", "is-active", "ollama"], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "active"


def _read_pid(files: DaemonFiles) -> int | None:
    try:
        pid = int(files.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` listens on loopback only (0.0.0.0 and :: do not)."""
    hostname = urlsplit(base_url(host, connectable=False)).hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _port_open(host: str) -> bool:
    parts = urlsplit(base_url(host))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 11434), timeout=1):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Status:
    host: str
    running: bool
    managed_pid: int | None
    api_version: str | None
    binary: str | None
    binary_version: str | None
    system_service: bool
    silent: bool = False  # something accepts connections at host but does not answer HTTP
    binary_error: str | None = None  # why the binary gave no version (broken, not executable, ...)


def status(files: DaemonFiles, host: str) -> Status:
    client = OllamaClient(host, timeout=3)
    state = client.probe()
    version = None
    if state == "answers":
        try:
            version = client.version()
        except OllamaError:
            state = "silent"
    binary = find_binary(files)
    found, problem = probe_binary(binary) if binary else (None, None)
    return Status(
        host=base_url(host), running=state == "answers", managed_pid=_read_pid(files), api_version=version,
        binary=str(binary) if binary else None, binary_version=found, system_service=is_system_service(),
        silent=state == "silent", binary_error=problem,
    )


def running_managed(files: DaemonFiles, host: str) -> int | None:
    """The pid of dslocal's own server when it runs and answers at ``host``, else None."""
    pid = _read_pid(files)
    return pid if pid and OllamaClient(host).is_running() else None


def server_env(host: str, models_dir: Path, *, kv_cache_type: str | None = None, context_length: int | None = None,
               keep_alive: str = "30m", large_models: bool = True) -> dict[str, str]:
    env = {
        **os.environ,
        "OLLAMA_HOST": host,
        "OLLAMA_MODELS": str(models_dir),
        "OLLAMA_KEEP_ALIVE": keep_alive,
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_NUM_PARALLEL": "1",  # one KV cache: DeepSeek's is large
        "OLLAMA_NO_CLOUD": "1",  # no start-up calls to ollama.com (offline and intranet machines)
    }
    if large_models:
        env["OLLAMA_LOAD_TIMEOUT"] = "30m"  # loading 100+ GB from disk takes longer than the 5 m default
    if kv_cache_type:
        env["OLLAMA_KV_CACHE_TYPE"] = kv_cache_type
    if context_length:
        env["OLLAMA_CONTEXT_LENGTH"] = str(context_length)
    return env


def start(files: DaemonFiles, host: str, models_dir: Path, *, wait: float = 30.0, **env_options: object) -> int:
    """Start a managed ``ollama serve``; returns its pid. Raises OllamaError with the next step."""
    client = OllamaClient(host)
    state = client.probe()
    if state == "answers":
        pid = _read_pid(files)
        if pid:
            raise OllamaError(f"dslocal's Ollama server is already running (pid {pid})", "'dslocal ollama status'")
        raise OllamaError(
            f"an Ollama server not started by dslocal already answers at {client.url}",
            "use it as it is, or stop it first (systemctl stop ollama, or quit the Ollama app)",
        )
    if state == "silent" and _read_pid(files):
        raise client.silent_error(2)
    if _port_open(host):
        raise OllamaError(
            f"{client.url} is taken by another program",
            "choose another port: dslocal config set ollama_host 127.0.0.1:11435",
        )
    binary = find_binary(files)
    if binary is None:
        raise OllamaError("Ollama is not installed", "install it with 'dslocal ollama install' (or from ollama.com)")
    models_dir.mkdir(parents=True, exist_ok=True)
    files.log_file.parent.mkdir(parents=True, exist_ok=True)
    files.pid_file.parent.mkdir(parents=True, exist_ok=True)
    env = server_env(host, models_dir, **env_options)  # type: ignore[arg-type]
    with open(files.log_file, "ab") as log:
        proc = subprocess.Popen(
            [str(binary), "serve"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
    atomic_write_bytes(files.pid_file, str(proc.pid).encode())
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            files.pid_file.unlink(missing_ok=True)
            tail = tail_log(files, 3)
            raise OllamaError(f"ollama serve exited at once: {tail[-1] if tail else 'no output'}", "see 'dslocal ollama logs'")
        if client.is_running():
            return proc.pid
        time.sleep(0.1)
    stop(files)
    raise OllamaError(f"ollama serve did not answer within {wait:g} s", "see 'dslocal ollama logs'")


def stop(files: DaemonFiles, grace: float = 10.0) -> bool:
    """SIGTERM the managed server, then SIGKILL after ``grace`` seconds; returns whether one was running."""
    pid = _read_pid(files)
    if pid is None:
        files.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                break
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    files.pid_file.unlink(missing_ok=True)
    return True


def tail_log(files: DaemonFiles, lines: int = 50) -> list[str]:
    try:
        text = files.log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
