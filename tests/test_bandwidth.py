"""Memory bandwidth: formulas and tables, SMBIOS parsing (dmidecode text and raw type 17), detection,
the copy benchmark and its cache, and what `dslocal hw` reports.

Expected figures are computed by hand from the specifications: DDR peak = MT/s x 8 bytes per
64-bit channel (JEDEC), LPDDR = MT/s x bus bits / 8; Apple's published chip figures; the SMBIOS
3.x type 17 layout (offsets 0x0C size, 0x12 type, 0x15 speed, 0x1C extended size, 0x20 configured
speed, 0x54/0x58 extended speeds). Fixtures: tests/fixtures/memory (see SOURCES.md there).
"""

from __future__ import annotations

import json
import platform
import struct
import sys
from pathlib import Path

import pytest
from toolbox import fake_tool

from dslocal.hardware import bandwidth, membench, memory_spec
from dslocal.hardware.bandwidth import apple_bandwidth, from_memory_spec, gpu_bandwidth
from dslocal.hardware.memory_spec import (
    MemoryDevice,
    layout_from_devices,
    parse_dmidecode,
    parse_smbios_type17,
)

FIXTURES = Path(__file__).parent / "fixtures" / "memory"
GB = 1e9


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# -- formulas and tables --------------------------------------------------------------------------------

def test_ram_peak_from_type_and_channels():
    assert from_memory_spec("DDR4-3200", 2) == pytest.approx(51.2 * GB)
    assert from_memory_spec("DDR5 6400", 2) == pytest.approx(102.4 * GB)
    assert from_memory_spec("ddr5-4800", 12) == pytest.approx(460.8 * GB)
    # LPDDR channels are 16 bits; or the whole bus at once
    assert from_memory_spec("LPDDR5X-8533", 8) == pytest.approx(136.528 * GB)
    assert from_memory_spec("LPDDR5X-8533", 1, channel_bits=256) == pytest.approx(273.056 * GB)
    assert bandwidth.parse_ram_type("LPDDR5X-8533") == ("LPDDR5X", 8533)
    for bad in ("GDDR6-16000", "", "fast"):
        with pytest.raises(ValueError, match="not a RAM type"):
            from_memory_spec(bad, 2)
    with pytest.raises(ValueError, match="no transfer rate"):
        from_memory_spec("DDR5", 2)
    with pytest.raises(ValueError, match="at least 1"):
        from_memory_spec("DDR5-4800", 0)


def test_one_process_share_of_several_sockets():
    one = from_memory_spec("DDR5-4800", 12)
    assert from_memory_spec("DDR5-4800", 12, sockets=2, numa_nodes=2) == pytest.approx(one * 1.3)
    assert from_memory_spec("DDR5-4800", 12, sockets=2) == pytest.approx(one * 1.3)  # NUMA unknown: exposed
    assert from_memory_spec("DDR5-4800", 12, sockets=2, numa_nodes=1) == pytest.approx(one * 2)  # interleaved
    assert from_memory_spec("DDR5-4800", 12, sockets=2, numa_nodes=8, numa_aware=True) == pytest.approx(one * 2)
    assert bandwidth.single_process_share(4, 4) == pytest.approx(1.9)


def test_apple_chips():
    cases = {"Apple M1": 68.25, "Apple M1 Pro": 200, "Apple M1 Max": 400, "Apple M1 Ultra": 800, "Apple M2": 100,
             "Apple M2 Pro": 200, "Apple M2 Max": 400, "Apple M2 Ultra": 800, "Apple M3": 100, "Apple M3 Pro": 150,
             "Apple M3 Ultra": 819, "Apple M4": 120, "Apple M4 Pro": 273, "Apple M5": 153}
    for chip, gbs in cases.items():
        assert apple_bandwidth(chip) == pytest.approx(gbs * GB), chip
    assert apple_bandwidth("Apple M3 Max") == 400 * GB  # top bin when the cores are not known
    assert apple_bandwidth("Apple M3 Max", cpu_cores=14) == 300 * GB
    assert apple_bandwidth("Apple M4 Max", cpu_cores=14) == 410 * GB
    assert apple_bandwidth("Apple M4 Max", cpu_cores=16) == 546 * GB
    assert apple_bandwidth("Apple M9 Hyper") is None and apple_bandwidth("Intel(R) Core(TM) i9") is None


def test_gpu_table_tells_close_names_apart():
    def bw(name: str, cc: str | None = None) -> float:
        found = gpu_bandwidth(name, cc)
        assert found is not None, name
        return found[0] / GB

    assert (bw("NVIDIA H20"), bw("NVIDIA H200"), bw("NVIDIA H200 NVL")) == (4000, 4800, 4800)
    assert gpu_bandwidth("NVIDIA H20")[1] == 148e12 and gpu_bandwidth("NVIDIA H200")[1] == 989e12
    assert (bw("NVIDIA L4"), bw("NVIDIA L40"), bw("NVIDIA L40S"), bw("NVIDIA L20")) == (300, 864, 864, 864)
    assert (bw("NVIDIA H100 PCIe"), bw("NVIDIA H100 80GB HBM3"), bw("NVIDIA H100 NVL")) == (2000, 3350, 3900)
    assert (bw("NVIDIA A100-SXM4-80GB"), bw("NVIDIA A100-PCIE-40GB"), bw("NVIDIA A100 80GB PCIe")) == (2039, 1555, 1935)
    assert (bw("NVIDIA A800-SXM4-80GB"), bw("NVIDIA H800")) == (2039, 3350)
    assert bw("NVIDIA B200") == 8000 and bw("NVIDIA GeForce RTX 5090") == 1792
    assert (bw("NVIDIA GeForce RTX 4070 Ti SUPER"), bw("NVIDIA GeForce RTX 4070 Ti"), bw("NVIDIA GeForce RTX 4070")) \
        == (672, 504, 504)
    assert (bw("AMD Radeon RX 7900 XTX"), bw("AMD Radeon RX 7900 XT")) == (960, 800)
    assert bw("AMD Instinct MI250X") == 3277 and bw("Apple M2 Ultra") == 800
    assert bw("NVIDIA Graphics Device", "10.0") == 8000  # a new name: the compute capability's generation
    assert gpu_bandwidth("NVIDIA Graphics Device", "9.0") is None  # Hopper: H20 and H100 differ 4x in compute
    assert gpu_bandwidth("Hygon DCU") is None and gpu_bandwidth("") is None


def test_every_detected_accelerator_fixture_and_preset_resolves():
    """The names dslocal's own parsers produce from captured tool output, and every preset's GPUs."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_hw_parsers import GPU_CASES
    from test_hw_parsers import fixture as hw_fixture

    from dslocal.hardware.presets import PRESETS

    unpublished = {"hygon", "kunlunxin", "iluvatar"}
    names = set()
    for name, parse in GPU_CASES.items():
        result = parse(hw_fixture(name))
        gpus = result[0] if isinstance(result, tuple) else result
        names |= {(g.vendor, g.name, g.compute_capability) for g in gpus}
    names |= {(g.vendor, g.name, g.compute_capability) for p in PRESETS.values() for g in p.gpus}
    missing = [n for n in names if n[0] not in unpublished and "310P" not in n[1] and gpu_bandwidth(n[1], n[2]) is None]
    assert not missing
    assert {"MetaX C500", "MTT S4000", "Ascend 910B3", "AMD Instinct MI300X", "NVIDIA GB10"} <= {n[1] for n in names}


# -- dmidecode text -------------------------------------------------------------------------------------

def test_two_socket_epyc_with_24_ddr5_dimms():
    devices = parse_dmidecode(fixture("epyc9654-2s-24x-ddr5-4800.txt"))
    assert len(devices) == 24 and all(d.size_bytes == 64 << 30 and d.kind == "DDR5" for d in devices)
    layout = layout_from_devices(devices, "dmidecode", cpu_model="AMD EPYC 9654 96-Core Processor", numa_nodes=2)
    assert (layout.sockets, layout.channels_per_socket, layout.rate_mts) == (2, 12, 4800)
    assert layout.bytes_per_s == pytest.approx(12 * 4800e6 * 8 * 1.3)  # 599 GB/s: one socket + 30 %
    assert layout.describe() == ("24 x DDR5-4800 in 12 channels per socket, 2 sockets "
                                 "(one process: 1.3x one socket) (dmidecode)")


def test_desktop_with_two_of_four_slots_filled():
    devices = parse_dmidecode(fixture("desktop-2of4-ddr4-3200.txt"))
    assert [d.size_bytes for d in devices] == [0, 16 << 30, 0, 16 << 30]
    layout = layout_from_devices(devices, "dmidecode", cpu_model="AMD Ryzen 9 5950X 16-Core Processor")
    assert (layout.dimms, layout.channels_per_socket, layout.sockets) == (2, 2, 1)
    assert layout.bytes_per_s == pytest.approx(51.2 * GB)
    assert layout.describe() == "2 x DDR4-3200 in 2 channels, 1 socket (dmidecode)"


def test_laptop_with_soldered_lpddr5():
    devices = parse_dmidecode(fixture("laptop-lpddr5-6400-soldered.txt"))
    assert [d.size_bytes for d in devices] == [8 << 30] * 4  # dmidecode 3.6 "GiB"
    layout = layout_from_devices(devices, "dmidecode")
    assert layout.bus_bits == 128 and layout.bytes_per_s == pytest.approx(6400e6 * 16)
    assert layout.describe() == "4 x LPDDR5-6400 on a 128-bit bus, soldered (dmidecode)"


def device(locator: str, bank: str = "", kind: str = "DDR5", mts: int = 5600, conf: int | None = None) -> MemoryDevice:
    return MemoryDevice(16 << 30, kind, mts, conf, locator, bank, 64)


def test_channels_from_slot_names_and_platform_caps():
    # four DIMMs on a two-channel desktop: two per channel, still 2 channels, at the slower configured speed
    four = [device("DIMM 0", "P0 CHANNEL A", conf=4800), device("DIMM 1", "P0 CHANNEL A", conf=4400),
            device("DIMM 0", "P0 CHANNEL B", conf=4800), device("DIMM 1", "P0 CHANNEL B", conf=4800)]
    layout = layout_from_devices(four, "dmidecode", cpu_model="AMD Ryzen 9 7950X 16-Core Processor")
    assert (layout.channels_per_socket, layout.rate_mts) == (2, 4400)
    # no channel in the names: one DIMM per channel, capped by the platform (Core: 2), else at 12
    unnamed = [device(f"DIMM{i}") for i in range(4)]
    assert layout_from_devices(unnamed, "x", cpu_model="Intel(R) Core(TM) i9-14900K").channels_per_socket == 2
    many = [device(f"SLOT{i}") for i in range(16)]
    assert layout_from_devices(many, "x").channels_per_socket == 12
    # Intel laptops name two controllers, each with a channel A
    intel = [device("Controller0-ChannelA-DIMM0"), device("Controller1-ChannelA-DIMM0")]
    assert layout_from_devices(intel, "x").channels_per_socket == 2
    # HP servers: "PROC 2 DIMM 12" gives the socket
    hp = [device(f"PROC {p} DIMM {i}", "Not Specified", "DDR4", 2933) for p in (1, 2) for i in range(1, 7)]
    layout = layout_from_devices(hp, "x", cpu_model="Intel(R) Xeon(R) Gold 6248", numa_nodes=2)
    assert (layout.sockets, layout.channels_per_socket) == (2, 6)
    assert memory_spec.platform_channels("AMD EPYC 9654 96-Core Processor") == 12
    assert memory_spec.platform_channels("Intel(R) Xeon(R) Platinum 8480+") == 8
    assert memory_spec.platform_channels("Intel(R) Xeon(R) 6980P") == 12
    assert memory_spec.platform_channels(None) is None


def test_old_dmidecode_mhz_and_unusable_entries():
    old = ("Handle 0x1100, DMI type 17, 34 bytes\nMemory Device\n\tData Width: 64 bits\n\tSize: 4096 MB\n"
           "\tLocator: DIMM_A2\n\tType: DDR3\n\tSpeed: 1600 MHz\n\tConfigured Clock Speed: 1067 MHz\n")
    (dev,) = parse_dmidecode(old)
    assert (dev.size_bytes, dev.speed_mts, dev.configured_mts, dev.rate_mts) == (4 << 30, 1600, 1067, 1067)
    assert layout_from_devices(parse_dmidecode("# dmidecode 3.4\n# No SMBIOS nor DMI entry point found.\n"), "x") is None
    no_speed = "Memory Device\n\tSize: 8 GB\n\tType: DDR4\n\tSpeed: Unknown\n"
    assert layout_from_devices(parse_dmidecode(no_speed), "x") is None


# -- raw SMBIOS type 17 -----------------------------------------------------------------------------------

def smbios17(size: int, kind: int, speed: int, configured: int | None, locator: str, bank: str, *,
             ext_size: int = 0, ext_speed: int = 0, ext_conf: int = 0, width: int = 64) -> bytes:
    """A type 17 structure as SMBIOS 3.3 lays it out (0x5C bytes), its strings after it."""
    body = bytearray(0x5C)
    body[0], body[1] = 17, 0x5C if configured is not None else 0x1C
    struct.pack_into("<HHHHHH", body, 0x02, 0x0040, 0x003E, 0xFFFE, width + 8, width, size)
    body[0x0E], body[0x10], body[0x11], body[0x12] = 0x09, 1, 2, kind
    struct.pack_into("<H", body, 0x15, speed)
    struct.pack_into("<I", body, 0x1C, ext_size)
    if configured is not None:
        struct.pack_into("<H", body, 0x20, configured)
        struct.pack_into("<II", body, 0x54, ext_speed, ext_conf)
    formatted = bytes(body[: body[1]])
    return formatted + locator.encode() + b"\0" + bank.encode() + b"\0\0"


def test_raw_type17_structures():
    dev = parse_smbios_type17(smbios17(16384, 0x22, 5600, 5200, "DIMM 1", "P0 CHANNEL A"))
    assert dev == MemoryDevice(16 << 30, "DDR5", 5600, 5200, "DIMM 1", "P0 CHANNEL A", 64)
    # 32 GB and more: 0x7FFF and the extended size in MB (a word of 0x8000 would mean 0 KB units)
    big = parse_smbios_type17(smbios17(0x7FFF, 0x22, 0xFFFF, 0xFFFF, "P1-DIMMA1", "P0_Node0_Channel0_Dimm0",
                                       ext_size=256 << 10, ext_speed=8800, ext_conf=8000))
    assert (big.size_bytes, big.speed_mts, big.configured_mts) == (256 << 30, 8800, 8000)
    old = parse_smbios_type17(smbios17(0x8000 | 512 * 1024 // 1024, 0x1A, 2400, None, "A1", "", width=64))
    assert (old.size_bytes, old.kind, old.configured_mts) == (512 << 10, "DDR4", None)  # KB granularity, no 0x20
    empty = parse_smbios_type17(smbios17(0, 0x02, 0, 0, "DIMM 0", "P0 CHANNEL B"))
    assert empty.size_bytes == 0 and empty.kind is None
    lp = parse_smbios_type17(smbios17(8192, 0x23, 6400, 6400, "DIMM 0", "P0 CHANNEL A", width=32))
    assert (lp.kind, lp.data_width_bits) == ("LPDDR5", 32)
    assert parse_smbios_type17(b"\x04\x30" + bytes(0x30)) is None  # a processor entry
    assert parse_smbios_type17(b"\x11\x5c\x00") is None  # truncated


def test_sysfs_entries_are_read_and_detected(tmp_path):
    entries = tmp_path / "entries"
    for i, (ch, size) in enumerate((("A", 16384), ("A", 0), ("B", 16384), ("B", 0))):
        (entries / f"17-{i}").mkdir(parents=True)
        (entries / f"17-{i}" / "raw").write_bytes(smbios17(size, 0x1A, 3200, 3200, f"DIMM {i % 2}", f"P0 CHANNEL {ch}"))
    (entries / "4-0").mkdir()  # other types are not read
    devices, why = memory_spec.read_smbios_entries(entries)
    assert why is None and len(devices) == 4
    absent = tmp_path / "bin-empty"
    absent.mkdir()
    found = memory_spec.detect_layout("AMD Ryzen 7 5800X", run=lambda argv: membench_absent(argv), dmi_root=entries,
                                      node_root=tmp_path, cpu_root=tmp_path)
    assert found.layout is not None and found.layout.how == "SMBIOS sysfs"
    assert found.layout.bytes_per_s == pytest.approx(51.2 * GB)
    none = memory_spec.detect_layout(None, run=membench_absent, dmi_root=tmp_path / "no-such", node_root=tmp_path,
                                     cpu_root=tmp_path)
    assert none.layout is None and "dmidecode is not installed" in none.reason and "no memory device" in none.reason


def membench_absent(argv: list[str]):
    """run_tool's answer for a tool that is not on PATH (dmidecode on most desktops)."""
    from dslocal.hardware.runner import run_tool

    return run_tool(["dslocal-test-no-such-tool", *argv[1:]])


# -- detection with real tools on PATH --------------------------------------------------------------------



def test_dmidecode_on_path_feeds_the_profile_value(fake_bin, tmp_path):
    fake_tool(fake_bin, "dmidecode", f'[ "$1 $2" = "-t memory" ] || exit 3\ncat "{FIXTURES / "epyc9654-2s-24x-ddr5-4800.txt"}"')
    nodes = tmp_path / "node"
    for n in (0, 1):
        (nodes / f"node{n}").mkdir(parents=True)
    value, source, note = memory_spec.memory_bandwidth("AMD EPYC 9654 96-Core Processor", "linux", node_root=nodes,
                                                       cpu_root=tmp_path, dmi_root=tmp_path)
    assert value == int(12 * 4800e6 * 8 * 1.3) and note is None
    assert source.startswith("detected: 24 x DDR5-4800 in 12 channels per socket, 2 sockets") and "(dmidecode)" in source
    fake_tool(fake_bin, "dmidecode", 'echo "/dev/mem: Permission denied" >&2; exit 1')
    value, source, note = memory_spec.memory_bandwidth(None, "linux", dmi_root=tmp_path / "none")
    assert value is None and source is None and "Permission denied" in note and "hw --measure" in note


def test_macos_chip_from_sysctl(fake_bin):
    fake_tool(fake_bin, "sysctl", 'printf "Apple M3 Max\\n14\\n"')
    value, source, note = memory_spec.memory_bandwidth(None, "darwin")
    assert value == 300 * 10**9 and note is None
    assert source == "detected: Apple M3 Max, 14-core CPU, Apple's published unified memory bandwidth (sysctl)"
    fake_tool(fake_bin, "sysctl", 'printf "Apple M9 Hyper\\n64\\n"')
    assert memory_spec.memory_bandwidth(None, "darwin")[2].startswith("memory bandwidth: Apple M9 Hyper is not in")


def test_real_detection_gives_a_sane_value_or_a_reason():
    value, source, note = memory_spec.memory_bandwidth(platform.processor(), platform.system().lower())
    if value is None:
        assert source is None and note and "hw --measure" in note
    else:
        assert 5 * GB <= value <= 2000 * GB and source.startswith("detected: ")


# -- the benchmark and its cache --------------------------------------------------------------------------

def test_measure_is_short_and_plausible(tmp_path):
    result = membench.measure(seconds=0.4, buffer_bytes=64 << 20)
    assert result.seconds < 5
    assert [n for n, _ in result.tried] == membench.thread_steps(result.tried[-1][0])
    assert 10**8 <= result.bytes_per_s <= 10**13 and result.bytes_per_s == max(r for _, r in result.tried)
    path = membench.save(result, tmp_path / "c" / "bw.json")
    assert membench.load(path) == result
    assert membench.load(path, machine="another-machine") is None
    path.write_text("{not json")
    assert membench.load(path) is None
    assert membench.thread_steps(6) == [1, 2, 4, 6] and membench.thread_steps(1) == [1]


def test_cli_hw_reports_bandwidth_and_measure_keeps_it(cli, dslocal_home, tmp_path):
    before = json.loads(cli("hw", "--json").stdout)["data"]
    summary = before["memory_bandwidth"]
    assert summary["basis"] in ("detected", "assumed by the planner")
    if summary["basis"] == "assumed by the planner":
        assert before["memory"]["bandwidth_bytes_per_s"] is None
        assert "assumed by the planner" in cli("hw").stdout
    measured = cli("hw", "--measure", "--json")
    assert measured.returncode == 0, measured.stderr
    assert "copy bandwidth" in measured.stderr and "kept in" in measured.stderr
    data = json.loads(measured.stdout)["data"]
    assert data["memory_bandwidth"]["basis"] == "measured"
    assert data["memory"]["bandwidth_source"].startswith("measured 20")
    assert (dslocal_home / "cache" / membench.CACHE_NAME).is_file()
    again = cli("hw")  # a later run reuses the kept measurement, with its date
    assert again.returncode == 0 and "(measured 20" in again.stdout
    assert data["memory"]["bandwidth_bytes_per_s"] == json.loads(cli("hw", "--json").stdout)["data"]["memory"][
        "bandwidth_bytes_per_s"]
    bad = cli("hw", "--measure", "--hw", "cpu-only-32gb")
    assert bad.returncode == 2 and "--measure measures this machine" in bad.stderr and "Traceback" not in bad.stderr


def test_presets_and_hw_files_carry_a_set_bandwidth(cli, dslocal_home, tmp_path):
    from dslocal.hardware.presets import PRESETS

    for name, profile in PRESETS.items():
        assert profile.memory.bandwidth_bytes_per_s and profile.memory.bandwidth_source.startswith("set: preset, "), name
    assert PRESETS["cpu-only-32gb"].memory.bandwidth_bytes_per_s == int(89.6 * GB)
    assert PRESETS["cpu-only-512gb"].memory.bandwidth_bytes_per_s == int(460.8 * GB)
    assert PRESETS["mac-m2-ultra-192gb"].memory.bandwidth_bytes_per_s == 800 * 10**9
    doc = PRESETS["rtx3090-64gb"].to_dict()
    doc["memory"].update(bandwidth_bytes_per_s=77 * 10**9, bandwidth_source="set: by hand, 2 x DDR5-4800")
    (tmp_path / "mine.json").write_text(json.dumps(doc))
    data = json.loads(cli("hw", "--json", "--hw", str(tmp_path / "mine.json")).stdout)["data"]
    assert data["memory_bandwidth"] == {"bytes_per_s": 77 * 10**9, "basis": "set",
                                        "source": "set: by hand, 2 x DDR5-4800"}
    text = cli("hw", "--hw", "mac-m3-max-128gb").stdout
    assert "400.0 GB/s (set: preset, Apple M3 Max (16-core CPU)" in text
