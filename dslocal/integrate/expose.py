"""Opening the managed Ollama beyond loopback, on purpose, and closing it again.

The managed daemon gets ``OLLAMA_HOST`` from the ``ollama_host`` setting (``dslocal ollama start`` passes
it to ``ollama serve``), so exposing sets that setting in the config file and undoing restores the value
the file had before (or removes it), from a record kept in the state folder. Ollama has no keys: whoever
reaches the port can chat, pull, create, copy and delete models and upload blobs. The warning says so;
a reverse proxy that checks a key, or ``dslocal serve --api-key``, is the safe way to share it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dslocal.config import read_config_file, set_config_value, unset_config_value
from dslocal.errors import UsageError
from dslocal.fsutil import atomic_write_bytes
from dslocal.ollama.client import base_url

RECORD = "ollama-exposure.json"
MODES = ("lan", "docker")
PROXY_KEY_ENV = "OLLAMA_PROXY_KEY"


@dataclass(frozen=True)
class Exposure:
    mode: str
    listen: str  # the new OLLAMA_HOST
    previous: str | None  # the config file's ollama_host before dslocal exposed it (None: not set)


def port_of(host: str) -> int:
    from urllib.parse import urlsplit

    return urlsplit(base_url(host)).port or 11434


def listen_address(mode: str, host: str, gateway: str | None = None) -> str:
    port = port_of(host)
    if mode == "lan":
        return f"0.0.0.0:{port}"
    if mode == "docker":
        if not gateway:
            raise UsageError("no Docker bridge here to listen on", "start Docker first, or use --lan")
        return f"{gateway}:{port}"
    raise UsageError(f"unknown exposure {mode!r}", "--lan or --docker")


def warning(mode: str, listen: str) -> str:
    port = port_of(listen)
    who = ("every machine that can reach this one on TCP " f"{port} (the LAN, a VPN, or the internet if the "
           "port is forwarded)") if mode == "lan" else (
           f"every container on this machine (and nothing beyond it): Ollama listens on {listen.rsplit(':', 1)[0]}, "
           "the Docker bridge, and no longer on 127.0.0.1, so local tools must use that address")
    return (f"warning: Ollama will listen on {listen}, reachable by {who}.\n"
            "Ollama has no authentication: anyone who reaches it can chat with every model, pull, create, copy and "
            "delete models, upload blobs until the disk is full, and keep the GPU busy.\n"
            f"Safer: a reverse proxy that checks a key in front of 127.0.0.1:{port} (below), or "
            "'dslocal serve MODEL --engine embedded --host 0.0.0.0 --api-key KEY'.")


def proxy_snippets(port: int) -> tuple[tuple[str, str], ...]:
    """Caddy and nginx in front of a loopback Ollama, refusing requests without the key (kept out of the files)."""
    caddy = (f"# Caddyfile: the key comes from the environment ({PROXY_KEY_ENV}), not this file\n"
             ":11435 {\n"
             f"\t@nokey not header Authorization \"Bearer {{${PROXY_KEY_ENV}}}\"\n"
             "\trespond @nokey 401\n"
             f"\treverse_proxy 127.0.0.1:{port} {{\n"
             f"\t\theader_up Host localhost:{port}  # Ollama on loopback accepts local Host names only\n"
             "\t}\n}\n")
    nginx = ("# /etc/nginx/conf.d/ollama.conf; the key lives in /etc/nginx/ollama-key.conf (chmod 600), holding:\n"
             "#   if ($http_authorization != \"Bearer <YOUR-KEY>\") { return 401; }\n"
             "server {\n    listen 11435;\n    location / {\n        include /etc/nginx/ollama-key.conf;\n"
             f"        proxy_pass http://127.0.0.1:{port};\n        proxy_set_header Host localhost:{port};\n"
             "        proxy_buffering off;  # stream tokens as they come\n        proxy_read_timeout 600s;\n    }\n}\n")
    return (("caddy", caddy), ("nginx", nginx))


def _record(state_dir: Path) -> Path:
    return state_dir / RECORD


def exposed(state_dir: Path) -> Exposure | None:
    try:
        data = json.loads(_record(state_dir).read_text())
        return Exposure(str(data["mode"]), str(data["listen"]), data.get("previous"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def apply(config_file: Path, state_dir: Path, mode: str, listen: str) -> Exposure:
    """Set ``ollama_host`` to ``listen`` in the config file, remembering what it was (the first time)."""
    before = exposed(state_dir)
    previous = before.previous if before else read_config_file(config_file).get("ollama_host")
    exposure = Exposure(mode, listen, None if previous is None else str(previous))
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(_record(state_dir), json.dumps(
        {"mode": mode, "listen": listen, "previous": exposure.previous}).encode())
    set_config_value(config_file, "ollama_host", listen)
    return exposure


def undo(config_file: Path, state_dir: Path) -> Exposure | None:
    """Put ``ollama_host`` back as it was before :func:`apply`; None when dslocal had not exposed it."""
    exposure = exposed(state_dir)
    if exposure is None:
        return None
    if exposure.previous is None:
        unset_config_value(config_file, "ollama_host")
    else:
        set_config_value(config_file, "ollama_host", exposure.previous)
    _record(state_dir).unlink(missing_ok=True)
    return exposure
