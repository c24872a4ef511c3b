"""Merge a split GGUF set against ``cp`` of the same shards, side by side in one run.

Generates a split deepseek2 model (random weights, llama.cpp layout, 2.2 GB by
default), then alternates: ``cp`` of the shards (+ ``sync`` of the copies, since the
merge fsyncs its output), ``dslocal gguf merge``, ``dslocal gguf merge --sha256``, and
the pull's own merge (``layout="ollama"``, sha256 on: llama-quantize COPY's form, which
reads the shards out of order), each in a subprocess whose peak RSS is read from ``wait4``.

    .venv/bin/python benchmarks/merge.py [--gb 2.2] [--runs 3] [--dir /path/on/disk]

Targets: ``merge`` and ``merge --sha256`` each at most 1.25x the copy's time; peak RSS at
most 100 MB. Figures measured are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dslocal.testing.ggufgen import ModelSpec


# The pull's merge (dslocal/pipeline): the canonical layout, with the blob's sha256.
PULL_MERGE = (
    "import sys; from dslocal.gguf_tools.merge import merge_shards; "
    "merge_shards(sys.argv[1], sys.argv[2], layout='ollama', compute_sha256=True)"
)


def spec_for(target_bytes: int) -> ModelSpec:
    """A deepseek2 whose f16 size is about ``target_bytes`` (experts dominate, as in R1)."""
    base = dict(n_embd=1024, n_head=8, n_ff=2048, n_ff_exp=512, q_lora_rank=256, kv_lora_rank=128, n_layer=8)
    per_expert_layer = 3 * 1024 * 512 * 2  # gate, up, down of one expert in f16
    n_expert = max(8, int(target_bytes / (base["n_layer"] - 1) / per_expert_layer))
    return ModelSpec.deepseek2("mla", n_expert=n_expert, **base)


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark: {argv[0]} failed")
    return elapsed, usage.ru_maxrss * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.2, help="model size in GB (default 2.2)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp folder)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dslocal-bench-merge-", dir=args.dir))
    try:
        src, dst = work / "shards", work / "out"
        src.mkdir()
        dst.mkdir()
        t0 = time.perf_counter()
        # Generate in a child process: a forked child's peak RSS starts from its parent's,
        # so this process must stay small for the merge's own peak to be measured.
        generate = (
            "import sys; sys.path.insert(0, sys.argv[1]); from merge import spec_for; "
            "from dslocal.testing.ggufgen import write_model; "
            "write_model(sys.argv[2], spec_for(int(float(sys.argv[3]))), dtype='f16', shards=5, fast_fill=True)"
        )
        subprocess.run(
            [sys.executable, "-c", generate, str(Path(__file__).parent), str(src / "bench.gguf"), str(args.gb * 1e9)],
            check=True,
        )
        shards = sorted(src.glob("bench-*-of-*.gguf"))
        total = sum(p.stat().st_size for p in shards)
        print(f"generated {len(shards)} shards, {total / 1e9:.2f} GB, in {time.perf_counter() - t0:.1f} s")
        sync = shutil.which("sync") or "sync"
        cp_cmd = ["sh", "-c", 'cp "$@" "$0" && sync "$0"/*', str(dst), *map(str, shards)]
        merge_cmd = [sys.executable, "-m", "dslocal", "gguf", "merge", str(shards[0]), "-o", str(dst / "merged.gguf"), "-q"]
        hash_cmd = [*merge_cmd, "--sha256"]
        pull_cmd = [sys.executable, "-c", PULL_MERGE, str(shards[0]), str(dst / "merged.gguf")]
        cases = (("cp+sync", cp_cmd), ("merge", merge_cmd), ("merge --sha256", hash_cmd), ("pull's merge", pull_cmd))
        results: dict[str, list[float]] = {name: [] for name, _ in cases}
        rss: list[int] = []
        for run in range(args.runs):
            # Rotate the order so no case always follows the deletion of the previous output.
            for name, argv in cases[run % len(cases):] + cases[: run % len(cases)]:
                for leftover in dst.iterdir():
                    leftover.unlink()
                subprocess.run([sync], check=False)
                seconds, peak = timed(argv)
                results[name].append(seconds)
                if name != "cp+sync":
                    rss.append(peak)
        copy = statistics.median(results["cp+sync"])
        print(f"median of {args.runs} runs, {total / 1e9:.2f} GB:")
        for name, samples in results.items():
            med = statistics.median(samples)
            print(f"  {name:16s} {med:7.2f} s  {total / med / 1e9:6.2f} GB/s  {med / copy:5.2f}x cp"
                  f"   (runs: {' '.join(f'{x:.2f}' for x in samples)})")
        ratio = statistics.median(results["merge"]) / copy
        hashed = statistics.median(results["merge --sha256"]) / copy
        peak_mb = max(rss) / 1e6
        print(f"merge peak RSS: {peak_mb:.1f} MB")
        ok = ratio <= 1.25 and hashed <= 1.25 and peak_mb <= 100
        print(
            f"target merge and merge --sha256 <= 1.25x cp, RSS <= 100 MB: {'PASS' if ok else 'FAIL'} "
            f"({ratio:.2f}x, {hashed:.2f}x, {peak_mb:.1f} MB)"
        )
        return 0 if ok else 2
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
