"""Cold start of ``dslocal --help`` and ``dslocal --version`` (median of several runs).

Target: under 0.3 s each. Measured side by side in one run with a bare interpreter
start (``python -c pass``) and with what an eager CLI would pay (importing textual and
huggingface_hub), so the ratios hold on a noisy machine.

    .venv/bin/python benchmarks/cold_start.py [--runs 15]

Figures measured are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_seconds(argv: list[str], runs: int) -> float:
    subprocess.run(argv, capture_output=True, check=True)  # warm the page cache once
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = shutil.which("dslocal", path=str(Path(sys.executable).parent)) or shutil.which("dslocal")
    if script is None:
        print("benchmark: the dslocal console script is not installed; run pip install -e . first", file=sys.stderr)
        return 1
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "dslocal --help": [script, "--help"],
        "dslocal --version": [script, "--version"],
        "python -m dslocal --help": [sys.executable, "-m", "dslocal", "--help"],
        "import textual, huggingface_hub": [sys.executable, "-c", "import textual.app, huggingface_hub"],
    }
    results = {name: median_seconds(argv, args.runs) for name, argv in cases.items()}
    base = results["python -c pass"]
    print(f"median of {args.runs} runs each")
    for name, seconds in results.items():
        print(f"{name:34s} {seconds * 1000:7.1f} ms   {seconds / base:5.2f}x bare python")
    worst = max(results["dslocal --help"], results["dslocal --version"])
    verdict = "PASS" if worst < 0.3 else "FAIL"
    print(f"target < 300 ms for --help and --version: {verdict} ({worst * 1000:.1f} ms)")
    return 0 if verdict == "PASS" else 2


if __name__ == "__main__":
    raise SystemExit(main())
