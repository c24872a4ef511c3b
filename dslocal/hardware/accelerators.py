"""Accelerators with nvidia-smi-like tools: Intel, Ascend, Hygon, MetaX, Moore Threads, Kunlunxin,
Cambricon and Iluvatar. Each has a pure ``parse_*`` of the tool's text and a probe.

Memory in these tools' "MB"/"MiB" columns is MiB. Formats: see tests/fixtures/hw/SOURCES.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from dslocal.hardware.profile import Gpu
from dslocal.hardware.runner import run_tool

MIB = 1 << 20
_BUS = r"(?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])"


def _banner(text: str, pattern: str) -> str | None:
    match = re.search(pattern, text)
    return match[1] if match else None


def _paired_rows(
    text: str, first: re.Pattern[str], memory: re.Pattern[str], *, vendor: str, source: str,
    driver: str | None, runtime: str | None = None, name: Callable[[str], str] = str.strip,
) -> list[Gpu]:
    """Devices whose first row matches ``first``; memory (used, total MiB) is on it or the next two rows."""
    lines = [line.rstrip() for line in text.splitlines()]
    gpus: list[Gpu] = []
    for i, line in enumerate(lines):
        row = first.match(line)
        if row is None:
            continue
        mem = next((m for m in (memory.search(n) for n in lines[i : i + 3]) if m), None)
        total = int(mem["total"]) * MIB if mem else None
        used = int(mem["used"]) * MIB if mem else None
        gpus.append(
            Gpu(
                vendor=vendor, name=name(row["name"]), index=len(gpus),
                memory_total_bytes=total,
                memory_free_bytes=total - used if total is not None and used is not None else None,
                driver_version=driver, runtime_version=runtime,
                pci_bus_id=row.groupdict().get("bus"), source=source,
            )
        )
    return gpus


def parse_ixsmi(text: str) -> list[Gpu]:
    """Iluvatar CoreX ``ixsmi``."""
    return _paired_rows(
        text, re.compile(rf"^\|\s*\d+\s+(?P<name>Iluvatar.+?)\s*\|\s*{_BUS}\s*\|"),
        re.compile(r"(?P<used>\d+)MiB\s*/\s*(?P<total>\d+)MiB"),
        vendor="iluvatar", source="ixsmi", driver=_banner(text, r"Driver Version:\s*(\S+)"),
    )


def parse_cnmon(text: str) -> list[Gpu]:
    """Cambricon ``cnmon``."""
    return _paired_rows(
        text, re.compile(rf"^\|\s*\d+\s+\S+\s+(?P<name>MLU\S+)\s+\S+\s*\|\s*{_BUS}\s*\|"),
        re.compile(r"(?P<used>\d+)\s*MiB\s*/\s*(?P<total>\d+)\s*MiB"),
        vendor="cambricon", source="cnmon", driver=_banner(text, r"Driver v(\S+)"),
    )


def parse_kunlunxin_xpu_smi(text: str) -> list[Gpu]:
    """Kunlunxin ``xpu-smi`` (the nvidia-smi clone; the third row is L3 SRAM, not memory)."""
    return _paired_rows(
        text, re.compile(rf"^\|\s*\d+\s+(?P<name>.+?)\s+\S+\s*\|\s*{_BUS}\s"),
        re.compile(r"\|\s*(?P<used>\d+)MiB\s*/\s*(?P<total>\d+)MiB\s*\|\s*\d+%"),
        vendor="kunlunxin", source="xpu-smi", driver=_banner(text, r"Driver Version:\s*(\S+)"),
        runtime=_banner(text, r"XPU-RT Version:\s*(\S+)"),
    )


def parse_mthreads_gmi(text: str) -> list[Gpu]:
    """Moore Threads ``mthreads-gmi``: memory reads ``USEDMiB(TOTALMiB)`` on the first row."""
    return _paired_rows(
        text, re.compile(rf"^(?P<idx>\d+)\s+(?P<name>MTT\s+\S+)\s*\|{_BUS}"),
        re.compile(r"(?P<used>\d+)MiB\((?P<total>\d+)MiB\)"),
        vendor="moorethreads", source="mthreads-gmi", driver=_banner(text, r"Driver Version:\s*(\S+)"),
    ) if "MTT" in text else []


def parse_mx_smi(text: str) -> list[Gpu]:
    """MetaX ``mx-smi``."""
    return _paired_rows(
        text, re.compile(rf"^\|\s*\d+\s+(?P<name>MetaX\s+\S+)\s*\|\s*\d+\s+\S+\s*\|\s*{_BUS}\s*\|"),
        re.compile(r"(?P<used>\d+)\s*/\s*(?P<total>\d+)\s*MiB"),
        vendor="metax", source="mx-smi", driver=_banner(text, r"Kernel Mode Driver Version:\s*(\S+)"),
        runtime=_banner(text, r"MACA Version:\s*(\S+)"),
    )


_NPU_ROW1 = re.compile(r"^\|\s*(?P<npu>\d+)\s+(?P<name>[0-9A-Za-z]+)\s*\|\s*(?P<health>\S+)\s*\|")
_NPU_ROW2 = re.compile(rf"^\|\s*\d+(?:\s+\d+)?\s*\|\s*{_BUS}\s*\|(?P<rest>.*)\|")


def parse_npu_smi(text: str) -> list[Gpu]:
    """Huawei Ascend ``npu-smi info`` (910B: HBM-Usage; 310P: Memory-Usage; the last ``used / total``)."""
    if "dcmi mod" in text and "initialize" in text:
        return []
    driver = _banner(text, r"Version:\s*(\S+)")
    lines = [line.rstrip() for line in text.splitlines()]
    gpus: list[Gpu] = []
    for i, line in enumerate(lines[:-1]):
        row1, row2 = _NPU_ROW1.match(line), _NPU_ROW2.match(lines[i + 1])
        if row1 is None or row2 is None:
            continue
        pairs = re.findall(r"(\d+)\s*/\s*(\d+)", row2["rest"])
        used, total = (int(pairs[-1][0]) * MIB, int(pairs[-1][1]) * MIB) if pairs else (None, None)
        gpus.append(
            Gpu(
                vendor="huawei", name=f"Ascend {row1['name']}", index=len(gpus), memory_total_bytes=total,
                memory_free_bytes=total - used if total is not None and used is not None else None,
                driver_version=driver, pci_bus_id=row2["bus"], source="npu-smi",
            )
        )
    return gpus


_HY_MEM = re.compile(r"^(?:DCU|HCU|GPU)\[(\d+)\]\s*:\s*vram Total (Used )?Memory \((\w+)\):\s*(\d+)", re.I | re.M)
_UNIT = {"b": 1, "kib": 1 << 10, "mib": MIB, "gib": 1 << 30, "kb": 1 << 10, "mb": MIB, "gb": 1 << 30}


def parse_hy_smi_meminfo(text: str) -> list[Gpu]:
    """Hygon ``hy-smi --showmeminfo vram`` (the unit is in the label: MiB in DTK 24, bytes in older builds)."""
    totals: dict[int, int] = {}
    used: dict[int, int] = {}
    for index, is_used, unit, value in _HY_MEM.findall(text):
        amount = int(value) * _UNIT.get(unit.lower(), 1)
        (used if is_used else totals)[int(index)] = amount
    return [
        Gpu(
            vendor="hygon", name="Hygon DCU", index=i, memory_total_bytes=totals[i],
            memory_free_bytes=totals[i] - used[i] if i in used else None, source="hy-smi",
        )
        for i in sorted(totals)
    ]


def parse_hy_smi(text: str) -> list[int]:
    """Device indices from the concise ``hy-smi`` table (which has no names or memory sizes)."""
    return [int(m[1]) for m in re.finditer(r"^(\d+)\s+[\d.]+C\s", text, re.M)]


def parse_intel_xpu_smi(text: str) -> list[Gpu]:
    """Intel ``xpu-smi discovery`` (a table of ``Key: Value`` per device)."""
    gpus: list[Gpu] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        if fields.get("Device Name"):
            size = re.match(r"([\d.]+)\s*MiB", fields.get("Memory Physical Size", ""))
            gpus.append(
                Gpu(
                    vendor="intel", name=fields["Device Name"], index=len(gpus),
                    memory_total_bytes=int(float(size[1]) * MIB) if size else None,
                    driver_version=fields.get("Driver Version"), pci_bus_id=fields.get("PCI BDF Address"),
                    source="xpu-smi",
                )
            )

    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2:
            continue
        if cells[0].isdigit():
            flush()
            fields = {}
        key, sep, value = cells[1].partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    flush()
    return gpus


def parse_xpu_smi(text: str) -> list[Gpu]:
    """Both vendors ship a tool called ``xpu-smi``; tell them apart by the banner."""
    if "XPU-RT Version" in text or "XPU-SMI" in text:
        return parse_kunlunxin_xpu_smi(text)
    return parse_intel_xpu_smi(text)


# tool argv -> parser; each probe runs only if the tool is on PATH.
TOOLS: tuple[tuple[list[str], Callable[[str], list[Gpu]]], ...] = (
    (["npu-smi", "info"], parse_npu_smi),
    (["hy-smi", "--showmeminfo", "vram"], parse_hy_smi_meminfo),
    (["mx-smi"], parse_mx_smi),
    (["mthreads-gmi"], parse_mthreads_gmi),
    (["xpu-smi", "discovery"], parse_xpu_smi),
    (["cnmon"], parse_cnmon),
    (["ixsmi"], parse_ixsmi),
)


def probe_tool(argv: list[str], parse: Callable[[str], list[Gpu]]) -> tuple[list[Gpu], list[str]]:
    """Run one tool and parse it; a missing tool is silent, a failing or unreadable one is a note."""
    run = run_tool(argv)
    if not run.found:
        return [], []
    if run.note and not run.stdout.strip():
        return [], [run.note]
    try:
        gpus = parse(run.stdout)
    except Exception as exc:  # noqa: BLE001 - a parser must never break detection
        return [], [f"{argv[0]} printed output dslocal cannot read ({type(exc).__name__})"]
    if not gpus:
        return [], [f"{argv[0]} is installed but reported no device" + (f" ({run.note})" if run.note else "")]
    return gpus, []
