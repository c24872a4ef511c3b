"""NVIDIA GPUs: NVML (nvidia-ml-py) first, ``nvidia-smi --query-gpu`` as the fallback."""

from __future__ import annotations

import re

from dslocal.hardware.profile import Gpu
from dslocal.hardware.runner import run_tool

MIB = 1 << 20
QUERY_FIELDS = (
    "index,name,uuid,memory.total,memory.free,memory.used,driver_version,compute_cap,pci.bus_id,mig.mode.current"
)
SMI_QUERY = ["nvidia-smi", f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader,nounits"]
_MISSING = {"[n/a]", "n/a", "[not supported]", "[unknown error]", "[insufficient permissions]", ""}
_MIG_LINE = re.compile(r"^\s+MIG\s+(?P<profile>\S+)\s+Device\s+(?P<index>\d+):\s+\(UUID:\s*(?P<uuid>[^)]+)\)")
_GPU_LINE = re.compile(r"^GPU\s+(?P<index>\d+):\s+(?P<name>.+?)\s+\(UUID:\s*(?P<uuid>[^)]+)\)")


class ProbeError(Exception):
    """The tool ran but its output says it cannot report (no driver, unknown field, ...)."""


def _value(text: str) -> str | None:
    text = text.strip()
    return None if text.lower() in _MISSING else text


def _mib(text: str) -> int | None:
    value = _value(text)
    if value is None:
        return None
    try:
        return int(float(value) * MIB)
    except ValueError:
        return None


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=QUERY_FIELDS --format=csv,noheader,nounits``."""
    lowered = text.lower()
    if "couldn't communicate with the nvidia driver" in lowered or "nvidia-smi has failed" in lowered:
        raise ProbeError("nvidia-smi cannot talk to the NVIDIA driver (driver not loaded or mismatched)")
    if "is not a valid field to query" in lowered:
        raise ProbeError("this nvidia-smi is too old for the query (" + text.strip().splitlines()[0] + ")")
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 10 or not cells[0].isdigit():
            continue
        index, name, uuid, total, free, _used, driver, cc, bus, mig = cells
        memory_total = _mib(total)
        gpus.append(
            Gpu(
                vendor="nvidia",
                name=name,
                index=int(index),
                memory_total_bytes=memory_total,
                memory_free_bytes=_mib(free),
                driver_version=_value(driver),
                compute_capability=_value(cc),
                pci_bus_id=_value(bus),
                uuid=_value(uuid),
                mig=(_value(mig) or "").lower() or None,
                unified_memory=memory_total is None,  # GB10 / Jetson report [N/A]: memory is the system's
                source="nvidia-smi",
            )
        )
    return gpus


def parse_nvidia_smi_list(text: str) -> dict[int, list[str]]:
    """``nvidia-smi -L``: MIG profiles per GPU index, e.g. ``{0: ["3g.40gb", "3g.40gb"], 1: []}``."""
    result: dict[int, list[str]] = {}
    current: int | None = None
    for line in text.splitlines():
        gpu = _GPU_LINE.match(line)
        if gpu:
            current = int(gpu["index"])
            result[current] = []
            continue
        mig = _MIG_LINE.match(line)
        if mig and current is not None:
            result[current].append(mig["profile"])
    return result


def _nvml_gpus() -> list[Gpu]:
    import pynvml

    pynvml.nvmlInit()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            runtime = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except pynvml.NVMLError:
            runtime = None
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            try:
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                total, free = int(memory.total), int(memory.free)
            except pynvml.NVMLError:
                total = free = None
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            try:
                mig_current, _ = pynvml.nvmlDeviceGetMigMode(handle)
                mig = "enabled" if mig_current else "disabled"
            except pynvml.NVMLError:
                mig = None
            bus = pynvml.nvmlDeviceGetPciInfo(handle).busId
            gpus.append(
                Gpu(
                    vendor="nvidia",
                    name=name.decode() if isinstance(name, bytes) else name,
                    index=i,
                    memory_total_bytes=total,
                    memory_free_bytes=free,
                    driver_version=driver.decode() if isinstance(driver, bytes) else driver,
                    runtime_version=runtime,
                    compute_capability=f"{major}.{minor}",
                    pci_bus_id=bus.decode() if isinstance(bus, bytes) else bus,
                    uuid=_decode(pynvml.nvmlDeviceGetUUID(handle)),
                    mig=mig,
                    unified_memory=total is None,
                    source="nvml",
                )
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _decode(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def probe() -> tuple[list[Gpu], list[str]]:
    """NVIDIA GPUs and notes; never raises."""
    notes: list[str] = []
    try:
        return _nvml_gpus(), notes
    except Exception as exc:  # noqa: BLE001 - NVML raises many error types; any means "try nvidia-smi"
        nvml_problem = f"NVML: {type(exc).__name__}: {exc}"
    run = run_tool(SMI_QUERY)
    if not run.found:
        if "LibraryNotFound" not in nvml_problem and "NVMLError_LibraryNotFound" not in nvml_problem:
            notes.append(nvml_problem)
        return [], notes
    try:
        gpus = parse_nvidia_smi_csv(run.stdout + run.stderr)
    except ProbeError as exc:
        return [], [str(exc)]
    if run.note and not gpus:
        notes.append(run.note)
    if any(g.mig == "enabled" for g in gpus):
        notes.append("MIG is enabled on some NVIDIA GPUs: one process sees one MIG instance, not the whole GPU")
    return gpus, notes
