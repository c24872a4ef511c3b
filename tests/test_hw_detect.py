"""Whole-profile detection: real on this machine, and with fake vendor tools on PATH."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psutil
import pytest
from toolbox import fake_tool

from dslocal.hardware.detect import detect
from dslocal.hardware.presets import PRESETS, load_profile
from dslocal.hardware.profile import Gpu, HardwareProfile
from dslocal.hardware.support import verdict

FIXTURES = Path(__file__).parent / "fixtures" / "hw"




def test_real_detection_matches_the_os_and_is_fast(tmp_path):
    start = time.perf_counter()
    profile = detect(models_dir=tmp_path, pci_root=Path("/sys/bus/pci/devices"))
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"detection took {elapsed:.2f} s"
    assert profile.cpu.threads == os.cpu_count()
    assert profile.cpu.physical_cores == psutil.cpu_count(logical=False)
    assert profile.memory.total_bytes == psutil.virtual_memory().total
    assert profile.disk.free_bytes and profile.disk.free_bytes > 0
    assert profile.gpus == ()  # this machine has no accelerator


def test_fake_vendor_tools_on_path_make_the_whole_profile(fake_bin, tmp_path):
    fake_tool(fake_bin, "nvidia-smi", f'cat "{FIXTURES / "nvidia-smi-query-2gpu.csv"}"')
    fake_tool(fake_bin, "npu-smi", f'cat "{FIXTURES / "npu-smi-info-910b.txt"}"')
    fake_tool(fake_bin, "mx-smi", f'cat "{FIXTURES / "mx-smi-metax.txt"}"')
    fake_tool(fake_bin, "hy-smi", f'cat "{FIXTURES / "hy-smi-showmeminfo.txt"}"')
    fake_tool(fake_bin, "cnmon", "sleep 30")  # hangs: must become a note after the 2 s timeout
    fake_tool(fake_bin, "ixsmi", "kill -SEGV $$")  # crashes
    fake_tool(fake_bin, "mthreads-gmi", "printf '\\377\\376 garbage ||| 12 MiB'")  # garbage
    fake_tool(fake_bin, "amd-smi", "echo 'ERROR: amdgpu driver not loaded' >&2; exit 2")
    start = time.perf_counter()
    profile = detect(models_dir=tmp_path, pci_root=tmp_path / "no-pci")
    elapsed = time.perf_counter() - start
    vendors = [g.vendor for g in profile.gpus]
    assert vendors.count("nvidia") == 2 and vendors.count("huawei") == 8
    assert vendors.count("metax") == 8 and vendors.count("hygon") == 8
    nvidia = [g for g in profile.gpus if g.vendor == "nvidia"]
    assert nvidia[0].memory_total_bytes == 24564 * 2**20 and nvidia[0].compute_capability == "8.9"
    notes = " | ".join(profile.notes)
    assert "cnmon did not answer within 2 s" in notes
    assert "ixsmi exited with code" in notes
    assert "mthreads-gmi" in notes
    assert "amd-smi exited with code 2" in notes
    assert elapsed < 6, "a hanging tool must not stall detection beyond its timeout"
    ascend = next(g for g in profile.gpus if g.vendor == "huawei")
    assert not verdict(ascend).ollama and "CANN" in verdict(ascend).advisory
    assert "A100" in verdict(ascend).equivalence


def test_pci_names_accelerators_whose_tool_is_missing(tmp_path):
    root = tmp_path / "pci"
    for address, vendor, device, klass in (
        ("0000:c1:00.0", "0x19e5", "0xd802", "0x120000"),
        ("0000:21:00.0", "0x1d94", "0x6211", "0x038000"),
        ("0000:02:00.0", "0x1a03", "0x2000", "0x030000"),
    ):
        folder = root / address
        folder.mkdir(parents=True)
        for name, value in (("vendor", vendor), ("device", device), ("class", klass)):
            (folder / name).write_text(value + "\n")
    profile = detect(models_dir=tmp_path, pci_root=root)
    names = [g.name for g in profile.gpus]
    assert any("Huawei Ascend device 19e5:d802" in n for n in names)
    assert any("Hygon DCU device 1d94:6211" in n for n in names)
    assert len(names) == 2  # the ASPEED BMC display is not an accelerator
    notes = " ".join(profile.notes)
    assert "npu-smi reported none" in notes and "hy-smi reported none" in notes


def test_profile_round_trips_through_json(tmp_path):
    for profile in PRESETS.values():
        assert HardwareProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


def test_presets_and_bad_hw_values(tmp_path):
    from dslocal.errors import InputError, UsageError

    assert load_profile("rtx4090-64gb").gpus[0].memory_total_bytes == 24564 * 2**20
    assert load_profile("2xh100-512gb").vram_total_bytes == 2 * 81559 * 2**20
    mac = load_profile("mac-m2-ultra-192gb")
    assert mac.gpus[0].unified_memory and mac.vram_total_bytes == 0
    assert load_profile("cpu-only-32gb").gpus == ()
    with pytest.raises(UsageError, match="neither a profile file nor a preset"):
        load_profile("rtx9090")
    bad = tmp_path / "bad.json"
    bad.write_text('{"cpu": 1}')
    with pytest.raises(InputError, match="not a dslocal hardware profile"):
        load_profile(str(bad))


def test_support_verdicts():
    assert verdict(Gpu("nvidia", "GTX 770", compute_capability="3.0")).ollama is False
    assert verdict(Gpu("amd", "RX 7900 XTX", gfx_target="gfx1100")).backend == "rocm"
    override = verdict(Gpu("amd", "RX 6700 XT", gfx_target="gfx1031"))
    assert override.ollama and "HSA_OVERRIDE_GFX_VERSION=10.3.0" in override.reason
    assert verdict(Gpu("amd", "Old APU", gfx_target="gfx803")).backend == "vulkan"
    metax = verdict(Gpu("metax", "MetaX C500"))
    assert not metax.ollama and "RTX 3090" in metax.equivalence and "70B" in metax.equivalence
    assert "DTK" in verdict(Gpu("hygon", "Hygon DCU")).advisory


def test_cli_hw_json_contract_save_and_reload(cli, dslocal_home, tmp_path):
    result = cli("hw", "--json", "--save", str(tmp_path / "me.json"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["version"] == 1 and doc["command"] == "hw"
    data = doc["data"]
    assert data["cpu"]["physical_cores"] == psutil.cpu_count(logical=False)
    assert data["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert isinstance(data["gpus"], list)
    again = json.loads(cli("hw", "--json", "--hw", str(tmp_path / "me.json")).stdout)["data"]
    assert again["cpu"] == data["cpu"] and again["origin"].startswith("file:")
    preset = json.loads(cli("hw", "--json", "--hw", "2xh100-512gb").stdout)["data"]
    gpu = preset["gpus"][0]
    assert {"vendor", "name", "memory_total_bytes", "support"} <= set(gpu)
    assert gpu["support"]["ollama"] is True
    human = cli("hw", "--hw", "mac-m2-ultra-192gb")
    assert human.returncode == 0 and "Metal" in human.stdout
    bad = cli("hw", "--hw", "nope")
    assert bad.returncode == 2 and "presets:" in bad.stderr
