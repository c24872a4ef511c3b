"""Every vendor-tool parser against captured outputs (tests/fixtures/hw, see SOURCES.md)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dslocal.hardware import accelerators, amd, apple, cpu, nvidia, pci
from dslocal.hardware.support import verdict

FIXTURES = Path(__file__).parent / "fixtures" / "hw"
GPU_KEYS = ("name", "memory_total_bytes", "memory_free_bytes", "driver_version", "compute_capability",
            "gfx_target", "pci_bus_id")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def expected(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.expected.json").read_text(encoding="utf-8"))


GPU_CASES = {
    "nvidia-smi-query-2gpu.csv": nvidia.parse_nvidia_smi_csv,
    "nvidia-smi-query-h100-mig.csv": nvidia.parse_nvidia_smi_csv,
    "nvidia-smi-na-values.csv": nvidia.parse_nvidia_smi_csv,
    "rocm-smi-showmeminfo-vram-json.json": amd.parse_rocm_smi_json,
    "npu-smi-info-910b.txt": accelerators.parse_npu_smi,
    "npu-smi-info-310p.txt": accelerators.parse_npu_smi,
    "npu-smi-info-no-device.txt": accelerators.parse_npu_smi,
    "hy-smi-showmeminfo.txt": accelerators.parse_hy_smi_meminfo,
    "mx-smi-metax.txt": accelerators.parse_mx_smi,
    "mthreads-gmi-s4000.txt": accelerators.parse_mthreads_gmi,
    "xpu-smi-kunlunxin.txt": accelerators.parse_xpu_smi,
    "xpu-smi-discovery-intel.txt": accelerators.parse_xpu_smi,
    "cnmon-mlu370.txt": accelerators.parse_cnmon,
    "ixsmi-bi150.txt": accelerators.parse_ixsmi,
}


@pytest.mark.parametrize("name", sorted(GPU_CASES))
def test_gpu_parsers_match_the_captures(name):
    got = GPU_CASES[name](fixture(name))
    want = expected(name)["devices"]
    assert len(got) == len(want)
    for gpu, device in zip(got, want):
        assert gpu.vendor == device["vendor"]
        for key in GPU_KEYS:
            if device.get(key) is not None:
                assert getattr(gpu, key) == device[key], (name, key)


@pytest.mark.parametrize("static, metric", [
    ("amd-smi-static-json.json", "amd-smi-metric-mem-json.json"),
    ("amd-smi-static-json-rocm7.json", "amd-smi-metric-mem-json-rocm7.json"),
])
def test_amd_smi_both_json_shapes(static, metric):
    (gpu,) = amd.parse_amd_smi(fixture(static), fixture(metric))
    want_static, want_metric = expected(static)["devices"][0], expected(metric)["devices"][0]
    assert (gpu.name, gpu.gfx_target, gpu.pci_bus_id) == (want_static["name"], "gfx1100", want_static["pci_bus_id"])
    assert gpu.driver_version == want_static["driver_version"]
    assert gpu.memory_total_bytes == want_metric["memory_total_bytes"]
    assert gpu.memory_free_bytes == want_metric["memory_free_bytes"]
    (static_only,) = amd.parse_amd_smi(fixture(static))
    assert static_only.memory_total_bytes == want_static["memory_total_bytes"]


@pytest.mark.parametrize("name, needle", [
    ("nvidia-smi-no-driver.txt", "driver"),
    ("nvidia-smi-query-old-driver.csv", "too old"),
])
def test_nvidia_smi_failures_become_probe_errors(name, needle):
    with pytest.raises(nvidia.ProbeError, match=needle):
        nvidia.parse_nvidia_smi_csv(fixture(name))


def test_nvidia_mig_listing():
    migs = nvidia.parse_nvidia_smi_list(fixture("nvidia-smi-L-mig.txt"))
    want = expected("nvidia-smi-L-mig.txt")["devices"]
    assert migs == {d["index"]: [m["profile"] for m in d["mig_devices"]] for d in want}
    gpus = nvidia.parse_nvidia_smi_csv(fixture("nvidia-smi-query-h100-mig.csv"))
    assert [g.mig for g in gpus] == ["enabled", "disabled"]
    assert "MIG" in verdict(gpus[0]).reason


def test_gb10_with_na_memory_is_unified_not_zero():
    (gpu,) = nvidia.parse_nvidia_smi_csv(fixture("nvidia-smi-na-values.csv"))
    assert gpu.memory_total_bytes is None and gpu.unified_memory


def test_rocm_smi_without_driver_reports_nothing():
    with pytest.raises(ValueError):
        amd.parse_rocm_smi_json(fixture("rocm-smi-no-device.txt"))
    assert amd.parse_rocm_smi_json("{}") == []


def test_hy_smi_concise_table_lists_indices():
    assert accelerators.parse_hy_smi(fixture("hy-smi-dcu.txt")) == list(range(8))


@pytest.mark.parametrize("name", [
    "lscpu-epyc-9654-2socket.txt", "lscpu-xeon-sapphire-rapids.txt", "lscpu-zh_CN.txt", "lscpu-kunpeng-920-arm.txt",
])
def test_lscpu_in_english_and_chinese(name):
    got = cpu.parse_lscpu(fixture(name))
    want = expected(name)
    assert (got.vendor, got.model) == (want["vendor"], want["model"])
    assert (got.sockets, got.physical_cores, got.threads, got.numa_nodes) == (
        want["sockets"], want["physical_cores"], want["threads"], want["numa_nodes"]
    )
    flags = want["flags_of_interest"]
    assert got.has("avx2") == flags["avx2"] and got.has("avx512f") == flags["avx512f"]
    assert got.has("avx512_bf16") == flags["avx512_bf16"] and got.has("avx512_vnni") == flags["avx512_vnni"]
    assert got.has("amx_bf16") == flags["amx"] and got.has("neon") == flags["neon"] and got.has("sve") == flags["sve"]


def test_proc_cpuinfo_on_graviton():
    vendor, _model, flags = cpu.parse_cpuinfo(fixture("cpuinfo-graviton3.txt"))
    assert vendor == "ARM"
    assert {"neon", "sve", "i8mm", "bf16", "dotprod"} <= set(flags)


def test_apple_m2_ultra():
    sysctl = apple.parse_sysctl(fixture("sysctl-apple-m2-ultra.txt"))
    displays = apple.parse_sp_displays(fixture("system_profiler-displays-m2-ultra.json"))
    hardware = apple.parse_sp_hardware(fixture("system_profiler-hardware-m2-ultra.json"))
    want = expected("system_profiler-hardware-m2-ultra.json")
    assert hardware["memory_total_bytes"] == want["memory_total_bytes"] == int(sysctl["hw.memsize"])
    assert (hardware["performance_cores"], hardware["efficiency_cores"]) == (16, 8)
    assert displays == {"chip": "Apple M2 Ultra", "gpu_cores": 76, "metal": "metal3"}
    gpu = apple.apple_gpu(sysctl, displays)
    assert gpu is not None and gpu.unified_memory and gpu.name == "Apple M2 Ultra"
    assert gpu.memory_total_bytes == int(192 * 2**30 * 0.75)  # macOS's default Metal share above 36 GB
    assert apple.metal_budget(192 * 2**30, wired_limit_mb=180_000) == 180_000 * 2**20
    assert verdict(gpu).ollama and verdict(gpu).backend == "metal"


def test_pci_scan_names_accelerators_and_skips_the_rest():
    devices = pci.parse_pci_listing(fixture("sysfs-pci-devices.txt"))
    want = {d["bdf"]: d for d in expected("sysfs-pci-devices.txt")["devices"]}
    found = {d.address for d in devices}
    for bdf, device in want.items():
        if device["vendor"] == "metax" or device.get("is_accelerator") is None:
            continue
        assert (bdf in found) == device["is_accelerator"], bdf
    assert {"huawei", "hygon", "cambricon", "kunlunxin", "iluvatar", "moorethreads", "nvidia", "amd"} <= {
        d.vendor for d in devices
    }


@pytest.mark.parametrize("parser", [
    accelerators.parse_npu_smi, accelerators.parse_mx_smi, accelerators.parse_xpu_smi, accelerators.parse_cnmon,
    accelerators.parse_ixsmi, accelerators.parse_mthreads_gmi, accelerators.parse_hy_smi_meminfo,
    nvidia.parse_nvidia_smi_csv, cpu.parse_lscpu, pci.parse_pci_listing,
])
def test_text_parsers_survive_garbage(parser):
    rng = random.Random(4)
    samples = [fixture(n) for n in sorted(GPU_CASES)]
    for _ in range(200):
        text = rng.choice(samples)
        cut = rng.randrange(len(text))
        garbage = text[:cut] + "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(40))) + text[cut:][::-1]
        parser(garbage)  # must not raise


def test_probe_tool_turns_parser_crashes_into_notes(monkeypatch):
    from dslocal.hardware import runner

    monkeypatch.setattr(
        accelerators, "run_tool",
        lambda argv: runner.ToolRun(argv[0], True, 0, "anything", "", None),
    )

    def broken(_text):
        raise ZeroDivisionError("boom")

    gpus, notes = accelerators.probe_tool(["cnmon"], broken)
    assert gpus == [] and "cannot read" in notes[0]
