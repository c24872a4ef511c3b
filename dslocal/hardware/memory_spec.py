"""The RAM a machine has, from SMBIOS: DIMMs, type, configured speed and channels; and its bandwidth.

Linux: ``dmidecode -t memory`` (root), else the kernel's copy of the SMBIOS type 17 structures in
``/sys/firmware/dmi/entries/17-*/raw`` (also root-only on most distributions). macOS: the chip
from ``sysctl`` and Apple's published figure (:func:`dslocal.hardware.bandwidth.apple_bandwidth`).

Channels are not in SMBIOS: they are read from the slots' names where those say a channel
("P0 CHANNEL A", "ChannelB-DIMM1", "DIMM_A1"), else counted as one populated DIMM per channel,
never more per socket than the platform has (12 on EPYC 9004/9005, 8 on Xeon Scalable 3rd-5th
generation, 2 on desktop CPUs; 12 when the CPU is not known).
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dslocal.hardware import bandwidth
from dslocal.hardware.runner import ToolRun, run_tool

DMI_ENTRIES = Path("/sys/firmware/dmi/entries")
NODE_ROOT = Path("/sys/devices/system/node")
CPU_ROOT = Path("/sys/devices/system/cpu")
MAX_CHANNELS_PER_SOCKET = 12

# SMBIOS 3.x, 7.18.2 Memory Device - Type (the codes dmidecode names).
SMBIOS_MEMORY_TYPES = {
    0x12: "DDR", 0x13: "DDR2", 0x18: "DDR3", 0x1A: "DDR4", 0x1B: "LPDDR", 0x1C: "LPDDR2", 0x1D: "LPDDR3",
    0x1E: "LPDDR4", 0x20: "HBM", 0x21: "HBM2", 0x22: "DDR5", 0x23: "LPDDR5", 0x24: "HBM3",
}


@dataclass(frozen=True)
class MemoryDevice:
    """One SMBIOS type 17 entry: a slot, populated or not."""

    size_bytes: int  # 0: no module installed
    kind: str | None = None  # DDR4, DDR5, LPDDR5 ...
    speed_mts: int | None = None  # the module's rated speed
    configured_mts: int | None = None  # what the memory controller runs it at
    locator: str = ""
    bank_locator: str = ""
    data_width_bits: int | None = None

    @property
    def rate_mts(self) -> int | None:
        return self.configured_mts or self.speed_mts


@dataclass(frozen=True)
class MemoryLayout:
    """What the populated slots add up to."""

    kind: str
    rate_mts: int
    dimms: int
    channels_per_socket: int
    sockets: int
    numa_nodes: int | None
    bus_bits: int | None  # soldered LPDDR: the whole bus; None for DIMM channels (64 bits each)
    how: str  # "dmidecode" | "SMBIOS sysfs"

    @property
    def bytes_per_s(self) -> float:
        if self.bus_bits:
            return bandwidth.from_memory_spec(f"{self.kind}-{self.rate_mts}", 1, self.sockets, self.numa_nodes,
                                              channel_bits=self.bus_bits)
        return bandwidth.from_memory_spec(f"{self.kind}-{self.rate_mts}", self.channels_per_socket, self.sockets,
                                          self.numa_nodes, channel_bits=bandwidth.DIMM_CHANNEL_BITS)

    def describe(self) -> str:
        """``"8 x DDR5-4800 in 8 channels, 1 socket (dmidecode)"``."""
        if self.bus_bits:
            return f"{self.dimms} x {self.kind}-{self.rate_mts} on a {self.bus_bits}-bit bus, soldered ({self.how})"
        text = f"{self.dimms} x {self.kind}-{self.rate_mts} in {self.channels_per_socket} channels"
        if self.sockets == 1:
            return f"{text}, 1 socket ({self.how})"
        share = bandwidth.single_process_share(self.sockets, self.numa_nodes)
        return f"{text} per socket, {self.sockets} sockets (one process: {share:g}x one socket) ({self.how})"


# -- parsing -------------------------------------------------------------------------------------------

_SIZE = re.compile(r"^(\d+)\s*(bytes|[kKMGT]i?B)$")  # dmidecode 3.6+ prints binary units as "GiB"
_UNITS = {"bytes": 1, "k": 1 << 10, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _rate(text: str) -> int | None:
    match = re.match(r"^(\d+)\s*(MT/s|MHz)", text)  # dmidecode before 3.3 printed MT/s as "MHz"
    return int(match[1]) or None if match else None


def parse_dmidecode(text: str) -> list[MemoryDevice]:
    """The "Memory Device" records of ``dmidecode -t memory`` (or ``-t 17``), empty slots included."""
    devices = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines()]
        if "Memory Device" not in lines:
            continue
        fields: dict[str, str] = {}
        for line in lines:
            key, sep, value = line.partition(":")
            if sep and key not in fields:
                fields[key.strip()] = value.strip()
        size = _SIZE.match(fields.get("Size", ""))
        width = re.match(r"^(\d+) bits", fields.get("Data Width", ""))
        kind = fields.get("Type", "")
        devices.append(MemoryDevice(
            size_bytes=int(size[1]) * _UNITS[size[2][0] if size[2] != "bytes" else "bytes"] if size else 0,
            kind=kind if kind and kind not in ("Unknown", "Other") else None,
            speed_mts=_rate(fields.get("Speed", "")),
            configured_mts=_rate(fields.get("Configured Memory Speed", fields.get("Configured Clock Speed", ""))),
            locator=fields.get("Locator", ""), bank_locator=fields.get("Bank Locator", ""),
            data_width_bits=int(width[1]) if width else None,
        ))
    return devices


def _word(raw: bytes, offset: int) -> int | None:
    return struct.unpack_from("<H", raw, offset)[0] if len(raw) >= offset + 2 else None


def _dword(raw: bytes, offset: int) -> int | None:
    return struct.unpack_from("<I", raw, offset)[0] if len(raw) >= offset + 4 else None


def _smbios_size(raw: bytes) -> int:
    size = _word(raw, 0x0C)
    if size in (None, 0, 0xFFFF):
        return 0  # not installed, or unknown
    if size == 0x7FFF:  # the extended size (SMBIOS 2.7+), in MB
        return ((_dword(raw, 0x1C) or 0) & 0x7FFFFFFF) << 20
    return (size & 0x7FFF) << (10 if size & 0x8000 else 20)  # bit 15: KB granularity


def _smbios_speed(raw: bytes, offset: int, extended: int) -> int | None:
    speed = _word(raw, offset)
    if speed == 0xFFFF:  # SMBIOS 3.3: the real value is in the extended field
        speed = (_dword(raw, extended) or 0) & 0x7FFFFFFF
    return speed or None


def parse_smbios_type17(raw: bytes) -> MemoryDevice | None:
    """One binary SMBIOS type 17 structure (formatted area and its strings), as the kernel exposes it."""
    if len(raw) < 0x15 or raw[0] != 17 or raw[1] > len(raw):
        return None
    length = raw[1]
    formatted = raw[:length]
    strings = raw[length:].split(b"\0")

    def string(offset: int) -> str:
        index = formatted[offset] if len(formatted) > offset else 0
        return strings[index - 1].decode("ascii", "replace").strip() if 0 < index <= len(strings) else ""

    width = _word(formatted, 0x0A)
    return MemoryDevice(
        size_bytes=_smbios_size(formatted),
        kind=SMBIOS_MEMORY_TYPES.get(formatted[0x12]),
        speed_mts=_smbios_speed(formatted, 0x15, 0x54),
        configured_mts=_smbios_speed(formatted, 0x20, 0x58) if length > 0x21 else None,
        locator=string(0x10), bank_locator=string(0x11),
        data_width_bits=width if width not in (None, 0, 0xFFFF) else None,
    )


# -- from slots to a layout ----------------------------------------------------------------------------

_SOCKET = re.compile(r"(?:^|[^A-Z])(?:P|CPU|PROC|SOCKET|NODE)\s*[-_]?(\d+)(?![0-9])", re.IGNORECASE)
_CHANNEL = re.compile(r"CHANNEL\s*[-_]?([A-Z]|\d+)(?![A-Z0-9])|DIMM\s*[-_]?([A-P])\d", re.IGNORECASE)
_CONTROLLER = re.compile(r"CONTROLLER\s*[-_]?(\d+)", re.IGNORECASE)
_PLATFORM_CHANNELS: tuple[tuple[str, int], ...] = (
    (r"EPYC\s+9\d{2}[45]", 12), (r"EPYC\s+8\d{2}4", 6), (r"EPYC\s+7\d{2}[123]", 8), (r"EPYC\s+4\d{2}4", 2),
    (r"Threadripper\s+PRO", 8), (r"Threadripper", 4),
    (r"Xeon.*\b69\d{2}[PE]", 12), (r"Xeon.*\b67\d{2}[PE]", 8), (r"Xeon.*\b[3-9][4-5]\d{2}", 8),
    (r"Xeon.*\b[5-8]3\d{2}", 8), (r"Xeon.*\b[3-8]2\d{2}", 6), (r"Xeon.*\bw[79]-3\d{3}", 8),
    (r"Xeon.*\bw[357]-2\d{3}", 4), (r"Core\(TM\)|Core Ultra|Ryzen", 2),
)


def platform_channels(cpu_model: str | None) -> int | None:
    """Memory channels per socket of the CPU, when its model name says (None when it does not)."""
    for pattern, channels in _PLATFORM_CHANNELS:
        if cpu_model and re.search(pattern, cpu_model, re.IGNORECASE):
            return channels
    return None


def _socket_of(device: MemoryDevice) -> str | None:
    match = _SOCKET.search(device.bank_locator) or _SOCKET.search(device.locator)
    return match[1] if match else None


def _channel_of(device: MemoryDevice) -> str | None:
    for text in (device.bank_locator, device.locator):
        match = _CHANNEL.search(text)
        if match:
            controller = _CONTROLLER.search(text)
            return (controller[1] + ":" if controller else "") + (match[1] or match[2]).upper()
    return None


def layout_from_devices(devices: list[MemoryDevice], how: str, *, cpu_model: str | None = None,
                        sockets: int | None = None, numa_nodes: int | None = None) -> MemoryLayout | None:
    """The populated slots as channels per socket; None when no slot says its type and speed."""
    populated = [d for d in devices if d.size_bytes > 0 and d.kind and d.rate_mts]
    if not populated:
        return None
    kind = Counter(d.kind for d in populated).most_common(1)[0][0]
    populated = [d for d in populated if d.kind == kind]
    rate = min(d.rate_mts or 0 for d in populated)  # every channel runs at the slowest module's speed
    seen_sockets = {_socket_of(d) for d in populated}
    if None not in seen_sockets and len(seen_sockets) > 1:
        sockets = len(seen_sockets)
    sockets = max(1, sockets or 1)
    if kind.startswith("LPDDR"):  # soldered: the whole bus, from each package's data width
        bus = sum(d.data_width_bits or bandwidth.LPDDR_CHANNEL_BITS for d in populated)
        return MemoryLayout(kind, rate, len(populated), len(populated), 1, numa_nodes, bus, how)
    channels = {(_socket_of(d), _channel_of(d)) for d in populated}
    if all(c for _, c in channels):
        per_socket = -(-len(channels) // sockets)
    else:
        per_socket = -(-len(populated) // sockets)
    cap = platform_channels(cpu_model) or MAX_CHANNELS_PER_SOCKET
    return MemoryLayout(kind, rate, len(populated), min(per_socket, cap), sockets, numa_nodes, None, how)


# -- this machine ---------------------------------------------------------------------------------------

def count_sockets(cpu_root: Path = CPU_ROOT) -> int | None:
    try:
        ids = {p.read_text().strip() for p in cpu_root.glob("cpu[0-9]*/topology/physical_package_id")}
    except OSError:
        return None
    return len(ids) or None


def count_numa_nodes(node_root: Path = NODE_ROOT) -> int | None:
    try:
        return sum(1 for _ in node_root.glob("node[0-9]*")) or None
    except OSError:
        return None


def read_smbios_entries(root: Path = DMI_ENTRIES) -> tuple[list[MemoryDevice], str | None]:
    """Type 17 entries from sysfs, or why not (missing, or readable by root only)."""
    try:
        paths = sorted(root.glob("17-*/raw"))
    except OSError as exc:
        return [], f"{root}: {exc.strerror or exc}"
    if not paths:
        return [], f"{root} has no memory device entries"
    devices = []
    for path in paths:
        try:
            device = parse_smbios_type17(path.read_bytes())
        except PermissionError:
            return [], f"{root} is readable by root only"
        except OSError as exc:
            return [], f"cannot read {path}: {exc.strerror or exc}"
        if device:
            devices.append(device)
    return devices, None


@dataclass(frozen=True)
class Detected:
    layout: MemoryLayout | None
    reason: str | None  # why there is no layout


def detect_layout(cpu_model: str | None = None, *, run: Callable[[list[str]], ToolRun] = run_tool,
                  dmi_root: Path = DMI_ENTRIES, node_root: Path = NODE_ROOT, cpu_root: Path = CPU_ROOT) -> Detected:
    """This Linux machine's memory layout: dmidecode, then sysfs; the reasons when neither answers."""
    topology = {"cpu_model": cpu_model, "sockets": count_sockets(cpu_root), "numa_nodes": count_numa_nodes(node_root)}
    reasons = []
    tool = run(["dmidecode", "-t", "memory"])
    if not tool.found:
        reasons.append("dmidecode is not installed")
    elif not tool.ok:
        reasons.append(tool.note or "dmidecode failed")
    else:
        layout = layout_from_devices(parse_dmidecode(tool.stdout), "dmidecode", **topology)
        if layout:
            return Detected(layout, None)
        reasons.append("dmidecode lists no memory module with a type and speed")
    devices, why = read_smbios_entries(dmi_root)
    if devices:
        layout = layout_from_devices(devices, "SMBIOS sysfs", **topology)
        if layout:
            return Detected(layout, None)
        why = "SMBIOS lists no memory module with a type and speed"
    reasons.append(why or "no SMBIOS memory entries")
    return Detected(None, "; ".join(reasons))


def _apple(sysctl_run: Callable[[list[str]], ToolRun]) -> tuple[int | None, str | None, str | None]:
    tool = sysctl_run(["sysctl", "-n", "machdep.cpu.brand_string", "hw.physicalcpu"])
    if not tool.ok:
        return None, None, tool.note or "sysctl did not answer"
    lines = tool.stdout.strip().splitlines()
    brand = lines[0].strip() if lines else ""
    cores = int(lines[1]) if len(lines) > 1 and lines[1].strip().isdigit() else None
    value = bandwidth.apple_bandwidth(brand, cores)
    if value is None:
        return None, None, f"memory bandwidth: {brand or 'this chip'} is not in dslocal's Apple table"
    binned = isinstance(bandwidth.APPLE_BANDWIDTH_GBS.get(bandwidth.apple_chip(brand) or ""), dict)
    detail = f", {cores}-core CPU" if binned and cores else ""
    return int(value), f"detected: {brand}{detail}, Apple's published unified memory bandwidth (sysctl)", None


def memory_bandwidth(cpu_model: str | None, os_name: str, *, run: Callable[[list[str]], ToolRun] = run_tool,
                     **roots: Path) -> tuple[int | None, str | None, str | None]:
    """(bytes/s, source, note) for the profile: the theoretical peak from SMBIOS or Apple's table.

    The note says why there is no value (the planner then assumes one), or is None.
    """
    if os_name == "darwin":
        return _apple(run)
    if os_name != "linux":
        return None, None, f"memory bandwidth: not detected on {os_name} (measure it: dslocal hw --measure)"
    found = detect_layout(cpu_model, run=run, **roots)
    if found.layout is None:
        return None, None, f"memory bandwidth not detected: {found.reason} (measure it: dslocal hw --measure)"
    return int(found.layout.bytes_per_s), f"detected: {found.layout.describe()}, theoretical peak", None
