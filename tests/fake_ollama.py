#!/usr/bin/env python3
"""A fake ``ollama`` executable for dslocal's tests: a test double, not Ollama.

* ``fake_ollama.py --version`` (or ``-v``) prints ``ollama version is X``; X comes from
  ``FAKE_OLLAMA_VERSION`` (default 0.32.15).
* ``fake_ollama.py serve`` serves :mod:`ollama_double` (the folder of this script) on ``OLLAMA_HOST``
  (default 127.0.0.1:11434; ``host:port``, ``http://host:port``, a bare host gets 11434, a scheme
  without a port gets 80/443), with the store in ``OLLAMA_MODELS`` (default ~/.ollama/models) and
  pruning off when ``OLLAMA_NOPRUNE`` is true, and ``OLLAMA_GO_TEMPLATE`` as the server reads it. It logs ``Listening on HOST:PORT (version X)`` to
  stderr and runs until SIGTERM or SIGINT (exit 0). A taken port prints
  ``Error: listen tcp HOST:PORT: bind: address already in use`` and exits 1.

Tests run it through a small shell wrapper named ``ollama``; ``python fake_ollama.py ARGS`` works too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ollama_double import DEFAULT_VERSION, serve_forever

USAGE = """Large language model runner (fake, for tests)

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information
"""


def parse_host(value: str | None) -> tuple[str, int]:
    """envconfig.Host: default 127.0.0.1:11434; http://h means port 80, https://h 443."""
    text = (value or "").strip().strip("\"'")
    if not text:
        return "127.0.0.1", 11434
    default_port = 11434
    scheme, sep, rest = text.partition("://")
    if sep:
        default_port = {"http": 80, "https": 443}.get(scheme.lower(), 11434)
        text = rest
    text = text.split("/", 1)[0]
    host, port = text, default_port
    if text.startswith("["):  # [ipv6]:port
        end = text.find("]")
        host = text[1:end]
        if text[end + 1 : end + 2] == ":" and text[end + 2 :]:
            port = int(text[end + 2 :])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if port_text:
            port = int(port_text)
    return host or "127.0.0.1", port


def env_bool(name: str) -> bool:
    """envconfig.Bool: unset or empty is false; unparseable values count as true."""
    value = os.environ.get(name, "").strip()
    if not value:
        return False
    return value.lower() not in ("0", "f", "false")


def main(argv: list[str]) -> int:
    version = os.environ.get("FAKE_OLLAMA_VERSION") or DEFAULT_VERSION
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] in ("-v", "--version"):
        print(f"ollama version is {version}")
        return 0
    if argv[0] == "serve":
        try:
            host, port = parse_host(os.environ.get("OLLAMA_HOST"))
        except ValueError:
            print(f"Error: invalid OLLAMA_HOST {os.environ.get('OLLAMA_HOST')!r}", file=sys.stderr)
            return 1
        models = Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()
        go_template = os.environ.get("OLLAMA_GO_TEMPLATE")
        return serve_forever(models, version, host, port, noprune=env_bool("OLLAMA_NOPRUNE"),
                             go_template=go_template if go_template else None)
    print(f'Error: unknown command "{argv[0]}" for "ollama"', file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
