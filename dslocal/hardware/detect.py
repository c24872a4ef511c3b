"""Detect this machine's hardware profile; probes run in parallel and never break detection."""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dslocal.hardware import accelerators, amd, apple, nvidia, pci
from dslocal.hardware.cpu import detect_cpu, detect_disk, detect_memory
from dslocal.hardware.profile import Gpu, HardwareProfile, Memory

Probe = Callable[[], tuple[list[Gpu], list[str]]]


def _safe(name: str, probe: Probe) -> tuple[list[Gpu], list[str]]:
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - a probe that crashes is a note, never an error
        return [], [f"{name} probe failed: {type(exc).__name__}: {exc}"]


def gpu_probes() -> dict[str, Probe]:
    probes: dict[str, Probe] = {"nvidia": nvidia.probe, "amd": amd.probe}
    if platform.system() == "Darwin":
        probes["apple"] = apple.probe
    for argv, parse in accelerators.TOOLS:
        probes[argv[0] + ":" + parse.__name__] = lambda argv=argv, parse=parse: accelerators.probe_tool(argv, parse)
    return probes


def _pci_placeholders(found: list[Gpu], devices: list[pci.PciDevice]) -> tuple[list[Gpu], list[str]]:
    """Devices the PCI bus shows whose vendor's tool reported nothing: name them, with the fix."""
    seen = {g.vendor for g in found}
    extra: list[Gpu] = []
    notes: list[str] = []
    by_vendor: dict[str, list[pci.PciDevice]] = {}
    for device in devices:
        by_vendor.setdefault(device.vendor, []).append(device)
    for vendor, group in by_vendor.items():
        if vendor in seen or (vendor in ("intel", "amd") and all(d.class_code >> 16 == 0x03 for d in group)):
            continue  # integrated graphics and ordinary display adapters need no note
        notes.append(
            f"the PCI bus shows {len(group)} {pci.VENDOR_NAMES[vendor]} device(s) but {pci.TOOLS[vendor]} "
            f"reported none: install the vendor's driver and tools to use them"
        )
        for device in group:
            extra.append(
                Gpu(vendor=vendor, name=device.label, index=len(extra), pci_bus_id=device.address, source="pci")
            )
    return extra, notes


def _bandwidth(cpu_model: str | None) -> tuple[int | None, str | None, list[str]]:
    """RAM bandwidth for the profile: this machine's kept measurement (``hw --measure``), else SMBIOS/Apple."""
    from dslocal.hardware import membench, memory_spec

    value, source, note = memory_spec.memory_bandwidth(cpu_model, platform.system().lower())
    measured = membench.load()
    if measured is None:
        return value, source, [note] if note else []
    peak = [f"memory bandwidth: {value / 1e9:.0f} GB/s theoretical peak ({source.removeprefix('detected: ')})"] \
        if value and source else []
    return measured.bytes_per_s, measured.source(), peak


def _safe_bandwidth(cpu_model: str | None) -> tuple[int | None, str | None, list[str]]:
    try:
        return _bandwidth(cpu_model)
    except Exception as exc:  # noqa: BLE001 - like a probe: a note, never an error
        return None, None, [f"memory bandwidth detection failed: {type(exc).__name__}: {exc}"]


def with_bandwidth(memory: Memory, found: tuple[int | None, str | None, list[str]]) -> tuple[Memory, list[str]]:
    value, source, notes = found
    return dataclasses.replace(memory, bandwidth_bytes_per_s=value, bandwidth_source=source if value else None), notes


def detect(models_dir: Path | None = None, pci_root: Path = Path("/sys/bus/pci/devices")) -> HardwareProfile:
    """The profile of this machine. Takes well under a second when no vendor tool hangs."""
    probes = gpu_probes()
    with ThreadPoolExecutor(max_workers=len(probes) + 2) as pool:
        futures = {name: pool.submit(_safe, name, probe) for name, probe in probes.items()}
        pci_future = pool.submit(pci.scan, pci_root)
        cpu = detect_cpu()
        bandwidth_future = pool.submit(_safe_bandwidth, cpu.model)
        memory = detect_memory()
        disk = detect_disk(models_dir or Path.home())
        gpus: list[Gpu] = []
        notes: list[str] = []
        for future in futures.values():
            found, found_notes = future.result()
            gpus.extend(found)
            notes.extend(found_notes)
        try:
            devices = pci_future.result()
        except Exception as exc:  # noqa: BLE001
            devices, notes = [], [*notes, f"PCI scan failed: {exc}"]
        memory, bandwidth_notes = with_bandwidth(memory, bandwidth_future.result())
    extra, pci_notes = _pci_placeholders(gpus, devices)
    return HardwareProfile(
        os=platform.system().lower(),
        arch=platform.machine().lower(),
        cpu=cpu,
        memory=memory,
        disk=disk,
        gpus=tuple(gpus + extra),
        notes=tuple(notes + pci_notes + bandwidth_notes),
        origin="detected",
    )
