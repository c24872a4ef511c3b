"""A PCI scan of sysfs: names accelerators even when their vendor's tool is missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# PCI vendor id -> dslocal vendor key (pci.ids; see tests/fixtures/hw/SOURCES.md).
VENDORS = {
    0x10DE: "nvidia",
    0x1002: "amd",
    0x8086: "intel",
    0x19E5: "huawei",
    0x1D94: "hygon",
    0x9999: "metax",
    0x1ED5: "moorethreads",
    0x1D22: "kunlunxin",
    0xCABC: "cambricon",
    0x1E3E: "iluvatar",
    # Biren's vendor id could not be verified in pci.ids, so Biren cards are not named from PCI.
}
VENDOR_NAMES = {
    "nvidia": "NVIDIA", "amd": "AMD", "intel": "Intel", "huawei": "Huawei Ascend", "hygon": "Hygon DCU",
    "metax": "MetaX", "moorethreads": "Moore Threads", "kunlunxin": "Kunlunxin", "cambricon": "Cambricon",
    "iluvatar": "Iluvatar CoreX", "biren": "Biren",
}
# The vendor tool that reports each vendor's devices.
TOOLS = {
    "nvidia": "nvidia-smi", "amd": "amd-smi or rocm-smi", "intel": "xpu-smi", "huawei": "npu-smi",
    "hygon": "hy-smi", "metax": "mx-smi", "moorethreads": "mthreads-gmi", "kunlunxin": "xpu-smi",
    "cambricon": "cnmon", "iluvatar": "ixsmi", "biren": "brsmi",
}
# Classes that can hold a compute device: display (0x03), processing accelerator (0x12), co-processor (0x0b40).
_CLASSES = (0x03, 0x12)


@dataclass(frozen=True)
class PciDevice:
    address: str
    vendor_id: int
    device_id: int
    class_code: int
    vendor: str  # dslocal vendor key

    @property
    def label(self) -> str:
        return f"{VENDOR_NAMES[self.vendor]} device {self.vendor_id:04x}:{self.device_id:04x} at {self.address}"


def _is_compute(class_code: int) -> bool:
    # Intel's and AMD's many other functions (bridges, NICs, audio) fall outside these classes.
    return class_code >> 16 in _CLASSES or class_code >> 8 == 0x0B40


def parse_pci_listing(text: str) -> list[PciDevice]:
    """Lines of ``ADDRESS VENDOR DEVICE CLASS`` (hex), as :func:`scan` reads them from sysfs."""
    devices = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        try:
            vendor_id, device_id, class_code = (int(p, 16) for p in parts[1:])
        except ValueError:
            continue
        vendor = VENDORS.get(vendor_id)
        if vendor and _is_compute(class_code):
            devices.append(PciDevice(parts[0], vendor_id, device_id, class_code, vendor))
    return devices


def read_sysfs(root: Path = Path("/sys/bus/pci/devices")) -> str:
    lines = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return ""
    for entry in entries:
        try:
            values = [(entry / name).read_text().strip() for name in ("vendor", "device", "class")]
        except OSError:
            continue
        lines.append(" ".join([entry.name, *values]))
    return "\n".join(lines)


def scan(root: Path = Path("/sys/bus/pci/devices")) -> list[PciDevice]:
    return parse_pci_listing(read_sysfs(root))
