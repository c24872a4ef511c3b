"""Where a client can reach this machine from: loopback, the Docker bridge, the LAN.

* The LAN address is the source address the kernel picks for a route off this machine (a UDP socket
  "connected" to a documentation address sends nothing).
* Docker is present only when its daemon answers (``docker info``), not when the binary exists: an
  installed client without a running daemon is "no Docker". The bridge gateway is what
  ``host.docker.internal:host-gateway`` resolves to on Linux (Docker's default ``host-gateway`` is the
  default bridge's gateway, docker0's address, usually 172.17.0.1).
* Listening sockets are read from ``/proc/net/tcp`` and ``/proc/net/tcp6`` (state 0A = LISTEN), so a
  failure can say "listens on 127.0.0.1 only" instead of guessing.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

DOCKER_TIMEOUT = 5.0
_ROUTE_PROBE = "192.0.2.1"  # TEST-NET-1: nothing is sent, only a route is chosen


def lan_address() -> str | None:
    """This machine's address on its default route, or None (no network but loopback)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((_ROUTE_PROBE, 9))
            address = sock.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


@dataclass(frozen=True)
class Docker:
    available: bool
    reason: str  # why not, or the server version
    gateway: str | None = None  # the default bridge's gateway (host-gateway on Linux)


def _run(args: list[str], timeout: float = DOCKER_TIMEOUT) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None


def docker_status(binary: str | None = None) -> Docker:
    """Whether a Docker daemon answers here, and the bridge gateway address containers reach the host at."""
    docker = binary or shutil.which("docker")
    if not docker:
        return Docker(False, "docker is not installed")
    info = _run([docker, "info", "--format", "{{.ServerVersion}}"])
    if info is None:
        return Docker(False, f"'docker info' did not answer within {DOCKER_TIMEOUT:g} s")
    if info.returncode != 0:
        said = next((line.strip() for line in (info.stderr + info.stdout).splitlines() if line.strip()), "")
        return Docker(False, f"the Docker daemon does not answer ({said[:160] or f'exit {info.returncode}'})")
    gateway = None
    inspect = _run([docker, "network", "inspect", "bridge", "--format",
                    "{{range .IPAM.Config}}{{.Gateway}} {{end}}"])
    if inspect is not None and inspect.returncode == 0:
        gateway = next((g for g in inspect.stdout.split() if _is_ipv4(g)), None)
    gateway = gateway or interface_address("docker0")
    return Docker(True, f"Docker {info.stdout.strip()}", gateway)


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def interface_address(name: str) -> str | None:
    """The IPv4 address of interface ``name`` (``ip -4 -o addr show NAME``), or None."""
    if not shutil.which("ip"):
        return None
    out = _run(["ip", "-4", "-o", "addr", "show", name], timeout=2)
    if out is None or out.returncode != 0:
        return None
    match = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/", out.stdout)
    return match[1] if match else None


def _parse_address(hex_address: str) -> str:
    """A ``/proc/net/tcp[6]`` address (little-endian 32-bit words in hex) as text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def parse_listeners(text: str, port: int) -> list[str]:
    """The local addresses listening on ``port`` in one ``/proc/net/tcp`` or ``tcp6`` table."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # 0A: TCP_LISTEN
            continue
        address, _, port_hex = fields[1].partition(":")
        if int(port_hex, 16) == port:
            found.append(_parse_address(address))
    return found


def listeners(port: int, proc: Path = Path("/proc/net")) -> list[str] | None:
    """The addresses this machine listens on at TCP ``port`` (None: unknown, e.g. not Linux)."""
    tables = [proc / "tcp", proc / "tcp6"]
    if not any(t.exists() for t in tables):
        return None
    found: list[str] = []
    for table in tables:
        try:
            found += parse_listeners(table.read_text(), port)
        except OSError:
            continue
    return sorted(set(found))


def binds_everywhere(addresses: list[str]) -> bool:
    return any(ipaddress.ip_address(a).is_unspecified for a in addresses)


def only_loopback(addresses: list[str]) -> bool:
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
