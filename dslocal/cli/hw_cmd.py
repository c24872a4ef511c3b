"""``dslocal hw``: the hardware report, saved profiles and presets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, key_values, note
from dslocal.units import format_bytes

PRESET_HELP = (
    "Report a saved profile (FILE from 'dslocal hw --save') or a preset such as rtx4090-64gb, "
    "2xh100-512gb, mac-m2-ultra-192gb or cpu-only-32gb, instead of this machine."
)


def bandwidth_summary(memory: Any) -> dict[str, Any]:
    """RAM bandwidth and how dslocal knows it: measured, detected, set, or assumed by the planner."""
    value, source = memory.bandwidth_bytes_per_s, memory.bandwidth_source
    if not value:
        return {"bytes_per_s": None, "basis": "assumed by the planner", "source": None}
    basis = next((word for word in ("measured", "detected", "set") if (source or "").startswith(word)), "set")
    return {"bytes_per_s": value, "basis": basis, "source": source or "set"}


def profile_data(profile: Any) -> dict[str, Any]:
    """The profile as JSON, with each device's engine-support verdict and the RAM bandwidth's basis."""
    from dslocal.hardware.support import verdict

    data = profile.to_dict()
    data["memory_bandwidth"] = bandwidth_summary(profile.memory)
    for gpu, entry in zip(profile.gpus, data["gpus"]):
        v = verdict(gpu)
        entry["support"] = {
            "ollama": v.ollama, "backend": v.backend, "reason": v.reason,
            "advisory": v.advisory, "equivalence": v.equivalence,
        }
    return data


@click.command(
    "hw",
    epilog="""\b
Examples:
  dslocal hw                          what this machine has, and what Ollama can use
  dslocal hw --json | jq .data.gpus
  dslocal hw --save server.json       then on a laptop: dslocal plan r1-671b-q2 --hw server.json
  dslocal hw --save server.json --force   replace the saved profile
  dslocal hw --hw mac-m2-ultra-192gb  show a preset
  dslocal hw --measure                measure RAM copy bandwidth (a few seconds); plans reuse it
""",
)
@click.option("--save", "save", type=click.Path(dir_okay=False, path_type=Path), help="Write the profile to FILE.")
@click.option("--force", is_flag=True, help="Let --save replace an existing FILE.")
@click.option("--hw", "hw", metavar="FILE|PRESET", help=PRESET_HELP)
@click.option("--measure", is_flag=True,
              help="Measure this machine's RAM copy bandwidth (a few seconds) and keep it for later plans.")
@json_option
@click.pass_obj
def hw_cmd(app: AppContext, save: Path | None, force: bool, hw: str | None, measure: bool, as_json: bool) -> None:
    """Detect CPUs, memory, disk and GPUs/accelerators, with what Ollama can use."""
    import json

    from dslocal.errors import InputError, UsageError
    from dslocal.fsutil import atomic_write_bytes
    from dslocal.hardware.detect import detect
    from dslocal.hardware.presets import load_profile

    if save is not None and os.path.lexists(save) and not force:
        raise InputError(f"{save} already exists", "pass --force to replace it, or choose another --save FILE")
    if hw and measure:
        raise UsageError("--measure measures this machine, not --hw " + hw, "drop --hw, or drop --measure")
    if measure:
        _measure()
    if hw:
        profile = load_profile(hw)
    else:
        profile = detect(models_dir=app.settings().models_dir)
    data = profile_data(profile)
    if save is not None:
        atomic_write_bytes(save, (json.dumps(profile.to_dict(), indent=2) + "\n").encode())
        note(f"saved the hardware profile to {save}")
    emit("hw", data, as_json=as_json, human=lambda: _print(data))


def _measure() -> None:
    from dslocal.hardware import membench

    note("measuring memory copy bandwidth (a few seconds)...")
    result = membench.measure()
    path = membench.save(result)
    steps = ", ".join(f"{n}: {rate / 1e9:.1f}" for n, rate in result.tried)
    note(f"copy bandwidth {result.bytes_per_s / 1e9:.1f} GB/s with {result.threads} thread(s) "
         f"(GB/s by threads: {steps}); kept in {path}")


def bandwidth_text(summary: dict[str, Any]) -> str:
    if not summary["bytes_per_s"]:
        return "not known: assumed by the planner (dslocal hw --measure measures it)"
    return f"{summary['bytes_per_s'] / 1e9:.1f} GB/s ({summary['source']})"


def _print(d: dict[str, Any]) -> None:
    cpu, mem, disk = d["cpu"], d["memory"], d["disk"]
    flags = ", ".join(cpu["flags"]) or "none detected"
    rows = [
        ("machine", f"{d['os']} {d['arch']} ({d['origin']})"),
        ("cpu", f"{cpu['model'] or 'unknown model'}: {cpu['physical_cores']} cores, {cpu['threads']} threads, "
                f"{cpu['numa_nodes']} NUMA node(s)"),
        ("isa", flags),
        ("memory", f"{format_bytes(mem['total_bytes'])} total, {format_bytes(mem['available_bytes'])} available, "
                   f"swap {format_bytes(mem['swap_total_bytes'])}"),
        ("ram bandwidth", bandwidth_text(d["memory_bandwidth"])),
    ]
    if disk.get("free_bytes") is not None:
        rows.append(("disk", f"{format_bytes(disk['free_bytes'])} free at {disk['path']} ({disk['filesystem'] or '?'})"))
    key_values(rows)
    click.echo("")
    if not d["gpus"]:
        click.echo("accelerators: none found; DeepSeek will run on the CPU")
    for gpu in d["gpus"]:
        memory = format_bytes(gpu["memory_total_bytes"]) if gpu["memory_total_bytes"] else "memory unknown"
        extra = gpu["compute_capability"] and f"cc {gpu['compute_capability']}" or gpu["gfx_target"] or ""
        shared = ", unified" if gpu["unified_memory"] else ""
        click.echo(f"[{gpu['index']}] {gpu['name']}  {memory}{shared}  {extra}".rstrip())
        support = gpu["support"]
        mark = "Ollama: yes" if support["ollama"] else "Ollama: no"
        click.echo(f"    {mark} ({support['reason']})")
        if support["advisory"]:
            click.echo(f"    works instead: {support['advisory']}")
        if support["equivalence"]:
            click.echo(f"    for planning: {support['equivalence']}")
    for line in d["notes"]:
        click.echo(f"note: {line}")
