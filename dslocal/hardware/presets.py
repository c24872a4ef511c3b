"""Named machines to plan for (``--hw rtx4090-64gb``), and loading saved profiles (``--hw FILE``)."""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path

from dslocal.errors import InputError, UsageError
from dslocal.hardware.bandwidth import apple_bandwidth, from_memory_spec
from dslocal.hardware.profile import Cpu, Gpu, HardwareProfile, Memory

GIB = 1 << 30
MIB = 1 << 20
_X86 = ("avx2", "f16c", "fma")
_X86_512 = (*_X86, "avx512_bf16", "avx512_vnni", "avx512f")


def _nvidia(name: str, count: int, mib: int, cc: str) -> tuple[Gpu, ...]:
    return tuple(
        Gpu("nvidia", name, i, mib * MIB, mib * MIB, compute_capability=cc, source="preset") for i in range(count)
    )


def _ram(ram_type: str, channels: int, sockets: int = 1, what: str = "") -> tuple[int, str]:
    """The bandwidth a preset assumes, from the RAM it names (one process's share across sockets)."""
    value = from_memory_spec(ram_type, channels, sockets, numa_nodes=sockets)
    layout = f"{sockets} sockets x {channels}" if sockets > 1 else f"{channels}"
    share = f", one process {value / from_memory_spec(ram_type, channels):.2g}x one socket" if sockets > 1 else ""
    return int(value), f"set: preset, {layout} channels {ram_type}{what}, theoretical peak{share}"


DESKTOP_DDR5 = _ram("DDR5-5600", 2)


def _machine(name: str, cores: int, ram_gib: int, gpus: tuple[Gpu, ...] = (), *, flags=_X86, arch="x86_64",
             os_name="linux", model: str | None = None, ram: tuple[int, str] = DESKTOP_DDR5) -> HardwareProfile:
    return HardwareProfile(
        os=os_name, arch=arch,
        cpu=Cpu(vendor=None, model=model, sockets=1, physical_cores=cores, threads=cores * (1 if arch != "x86_64" else 2),
                numa_nodes=1, flags=tuple(sorted(flags))),
        memory=Memory(total_bytes=ram_gib * GIB, available_bytes=int(ram_gib * GIB * 0.9),
                      bandwidth_bytes_per_s=ram[0], bandwidth_source=ram[1]),
        gpus=gpus, origin=f"preset:{name}",
    )


def _mac(name: str, chip: str, ram_gib: int, cores: int) -> HardwareProfile:
    budget = int(ram_gib * GIB * (0.75 if ram_gib > 36 else 2 / 3))
    gpu = Gpu("apple", chip, 0, budget, budget, runtime_version="metal3", unified_memory=True, source="preset")
    unified = int(apple_bandwidth(chip, cores) or 0)
    ram = (unified, f"set: preset, {chip} ({cores}-core CPU) unified memory, Apple's published figure")
    return _machine(name, cores, ram_gib, (gpu,), flags=("dotprod", "neon"), arch="arm64", os_name="darwin", model=chip,
                    ram=ram)


PRESETS: dict[str, HardwareProfile] = {
    p.origin.removeprefix("preset:"): p
    for p in (
        _machine("cpu-only-32gb", 8, 32),
        _machine("cpu-only-64gb", 16, 64),
        _machine("cpu-only-512gb", 64, 512, flags=_X86_512, model="AMD EPYC 9554", ram=_ram("DDR5-4800", 12)),
        _machine("rtx3090-64gb", 12, 64, _nvidia("NVIDIA GeForce RTX 3090", 1, 24576, "8.6"), ram=_ram("DDR4-3200", 2)),
        _machine("rtx4090-64gb", 16, 64, _nvidia("NVIDIA GeForce RTX 4090", 1, 24564, "8.9")),
        _machine("rtx4090-128gb", 16, 128, _nvidia("NVIDIA GeForce RTX 4090", 1, 24564, "8.9"),
                 ram=_ram("DDR5-4800", 2, what=" (4 DIMMs run slower than 2)")),
        _machine("2xrtx4090-256gb", 32, 256, _nvidia("NVIDIA GeForce RTX 4090", 2, 24564, "8.9"), flags=_X86_512,
                 ram=_ram("DDR5-4800", 8, what=" (a Threadripper PRO workstation)")),
        _machine("a100-80gb-256gb", 32, 256, _nvidia("NVIDIA A100-SXM4-80GB", 1, 81920, "8.0"), flags=_X86_512,
                 ram=_ram("DDR4-3200", 8, what=" (an EPYC 7003 server)")),
        _machine("2xh100-512gb", 64, 512, _nvidia("NVIDIA H100 80GB HBM3", 2, 81559, "9.0"), flags=_X86_512,
                 ram=_ram("DDR5-4800", 12, what=" (an EPYC 9004 server)")),
        _machine("8xh100-2tb", 112, 2048, _nvidia("NVIDIA H100 80GB HBM3", 8, 81559, "9.0"), flags=_X86_512,
                 ram=_ram("DDR5-4800", 8, 2, " (DGX H100: 2 x Xeon 8480C)")),
        _machine("8xh20-2tb", 112, 2048, _nvidia("NVIDIA H20", 8, 97871, "9.0"), flags=_X86_512,
                 ram=_ram("DDR5-4800", 8, 2, " (2 x Xeon Sapphire Rapids)")),
        _mac("mac-m2-ultra-192gb", "Apple M2 Ultra", 192, 24),
        _mac("mac-m3-max-128gb", "Apple M3 Max", 128, 16),
        _mac("mac-m4-max-64gb", "Apple M4 Max", 64, 16),
    )
}


def load_profile(value: str) -> HardwareProfile:
    """``--hw VALUE``: a saved profile (``dslocal hw --save`` or ``--json`` output) or a preset name."""
    if value in PRESETS:
        return PRESETS[value]
    path = Path(value).expanduser()
    if path.is_file():
        return _load_file(path)
    if value.strip() and path.is_dir():
        raise InputError(f"--hw {path} is a folder", "name a profile file written by 'dslocal hw --save FILE'")
    close = difflib.get_close_matches(value, PRESETS, n=3, cutoff=0.5)
    if not close:
        close = [name for name in PRESETS if value.strip() and name.startswith(value.strip().lower())][:3]
    listed = f"did you mean {', '.join(close)}?" if close else f"presets: {', '.join(PRESETS)};"
    raise UsageError(
        f"--hw {value!r} is neither a profile file nor a preset",
        f"{listed} or save a profile with 'dslocal hw --save FILE'",
    )


def _load_file(path: Path) -> HardwareProfile:
    hint = "write one with 'dslocal hw --save FILE' on the machine you plan for"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", hint) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not a dslocal hardware profile (not JSON: {exc})"[:300], hint) from None
    if isinstance(data, dict) and "data" in data and "version" in data:  # a `dslocal hw --json` envelope
        data = data["data"]
    try:
        profile = HardwareProfile.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a dslocal hardware profile: {exc}", hint) from None
    return dataclasses.replace(profile, origin=f"file:{path}")
