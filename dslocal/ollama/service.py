"""A systemd user unit that runs the dslocal-managed Ollama, so that it starts with the user's session.

The unit runs the same ``ollama serve`` as ``dslocal ollama start``, with the same environment
(:func:`dslocal.ollama.daemon.server_env`: host, models folder, flash attention, no cloud calls) and
the same log file, so ``dslocal ollama logs`` reads it. Written to ``$XDG_CONFIG_HOME/systemd/user``
(systemd.unit(5), "User Unit Search Path"). Quoting follows systemd.syntax(7) and systemd.service(5):
values in double quotes with C escapes and ``%`` doubled (specifiers); the program's path in ExecStart=
gets no ``$`` expansion (only its arguments would, and ``serve`` has none).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import InputError, OllamaError
from dslocal.fsutil import atomic_write_bytes
from dslocal.ollama.daemon import DaemonFiles, find_binary, server_env

UNIT_NAME = "dslocal-ollama.service"
# GPU selection the managed server inherits from the shell; a unit does not see the shell, so it gets them written in
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL",
                 "HSA_OVERRIDE_GFX_VERSION", "GGML_VK_VISIBLE_DEVICES")
SYSTEMCTL_TIMEOUT = 30.0


def unit_dir() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user`` (default ``~/.config/systemd/user``)."""
    import platformdirs

    return Path(platformdirs.user_config_dir()).absolute() / "systemd" / "user"


def unit_path() -> Path:
    return unit_dir() / UNIT_NAME


def _quoted(value: str) -> str:
    if any(ch in value for ch in "\n\r\0"):
        raise InputError(f"{value!r} holds a line break; a systemd unit cannot carry it",
                         "use a folder or setting without line breaks")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def _path_value(path: Path) -> str:
    """A path as an unquoted setting value (StandardOutput=append:PATH): only specifiers are escaped."""
    _quoted(str(path))  # refuses line breaks
    return str(path).replace("%", "%%")


def managed_environment(host: str, models_dir: Path, **options: object) -> dict[str, str]:
    """What ``dslocal ollama start`` gives ``ollama serve`` that a systemd unit would not have by itself.

    Its OLLAMA_* settings (with any the shell sets, as a managed start inherits them) and the shell's GPU
    selection; the rest of the environment (PATH, HOME) the user manager provides.
    """
    full = server_env(host, models_dir, **options)  # type: ignore[arg-type]
    return {key: value for key, value in sorted(full.items()) if key.startswith("OLLAMA_") or key in GPU_VARIABLES}


def unit_text(binary: Path, environment: Mapping[str, str], log_file: Path) -> str:
    """The unit file."""
    lines = [
        "# Written by 'dslocal ollama service install'; 'dslocal ollama service uninstall' removes it.",
        "[Unit]",
        "Description=Ollama server managed by dslocal",
        "Documentation=https://github.com/dslocal/dslocal",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={_quoted(str(binary))} serve",  # the program's path gets no $VAR expansion (verify shows it)
        *(f"Environment={_quoted(f'{key}={value}')}" for key, value in environment.items()),
        f"StandardOutput=append:{_path_value(log_file)}",
        "StandardError=inherit",
        "Restart=on-failure",
        "RestartSec=5",
        "TimeoutStopSec=30",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"


def render(files: DaemonFiles, host: str, models_dir: Path, **options: object) -> str:
    """The unit for this machine's Ollama binary and settings; raises OllamaError when there is no binary."""
    binary = find_binary(files)
    if binary is None:
        raise OllamaError("Ollama is not installed", "install it with 'dslocal ollama install' (or from ollama.com)")
    return unit_text(binary.absolute(), managed_environment(host, models_dir, **options), files.log_file)


@dataclass(frozen=True)
class Systemctl:
    """``systemctl --user``, or why it cannot be used here."""

    program: str | None
    problem: str | None  # None: the user manager answers

    @classmethod
    def find(cls) -> Systemctl:
        program = shutil.which("systemctl")
        if program is None:
            return cls(None, "systemctl is not installed (this system does not run systemd)")
        done = _run([program, "--user", "show-environment"])
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            return cls(program, f"systemd --user is not running here ({said[-1] if said else f'exit {done.returncode}'})")
        return cls(program, None)

    @property
    def available(self) -> bool:
        return self.problem is None

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.program is not None
        return _run([self.program, "--user", *args])

    def check(self, *args: str) -> None:
        done = self.run(*args)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise OllamaError(f"systemctl --user {' '.join(args)} failed: {said[-1] if said else done.returncode}",
                              f"see 'systemctl --user status {UNIT_NAME}' and 'dslocal ollama logs'")

    def state(self, verb: str) -> str:
        """``is-enabled`` / ``is-active``'s one word (enabled, disabled, active, inactive, failed...)."""
        done = self.run(verb, UNIT_NAME)
        return (done.stdout.strip().splitlines() or ["unknown"])[0]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"did not answer within {SYSTEMCTL_TIMEOUT:g} s")
    except OSError as exc:
        return subprocess.CompletedProcess(argv, 126, "", exc.strerror or str(exc))


@dataclass(frozen=True)
class ServiceStatus:
    unit_file: str
    installed: bool
    systemd_user: bool
    problem: str | None  # why systemd --user cannot be asked; then enabled and active are None
    enabled: str | None
    active: str | None


def status(systemctl: Systemctl | None = None) -> ServiceStatus:
    systemctl = systemctl or Systemctl.find()
    path = unit_path()
    ask = systemctl.available
    return ServiceStatus(
        unit_file=str(path), installed=path.is_file(), systemd_user=ask, problem=systemctl.problem,
        enabled=systemctl.state("is-enabled") if ask else None, active=systemctl.state("is-active") if ask else None,
    )


def install(text: str, *, start: bool, systemctl: Systemctl | None = None) -> ServiceStatus:
    """Write the unit; where systemd --user runs, reload it, enable it and (``start``) start it now."""
    systemctl = systemctl or Systemctl.find()
    atomic_write_bytes(unit_path(), text.encode(), perms=0o644)
    if systemctl.available:
        systemctl.check("daemon-reload")
        systemctl.check("enable", *(["--now"] if start else []), UNIT_NAME)
    return status(systemctl)


def uninstall(systemctl: Systemctl | None = None) -> bool:
    """Stop and disable the unit, then remove it; returns whether there was one."""
    systemctl = systemctl or Systemctl.find()
    path = unit_path()
    if not path.is_file():
        return False
    if systemctl.available:
        systemctl.check("disable", "--now", UNIT_NAME)
    path.unlink()
    if systemctl.available:
        systemctl.check("daemon-reload")
    return True
