"""Download throughput with verification on, against ``curl`` for the same file, side by side.

Serves a generated file of at least 1 GB from the loopback hub double (tests/hubdouble.py,
zero-copy sendfile; ``/resolve`` answers a 302 to its CDN on another loopback address, as the
Hub does) and alternates: ``curl -L -o`` (one connection, no verification) and ``dslocal
download`` in a subprocess (one resolve, then 4 ranged connections to the CDN, sha256 checked
against the listing's LFS oid, fsync before rename; its time includes starting Python, pinning
the revision to its commit and listing the repository).
curl's time includes a ``sync`` of its file, since dslocal's includes the fsync. Prints
both throughputs and the ratio.

    .venv/bin/python benchmarks/download.py [--gb 1.5] [--runs 3]

Target: dslocal at least 0.7x curl's throughput. Figures are recorded in benchmarks/README.md.
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

REPO = "bench/Bench-GGUF"
NAME = "bench-00001-of-00001.gguf"


def make_file(path: Path, size: int) -> None:
    block = os.urandom(16 << 20)
    with open(path, "wb") as handle:
        left = size
        while left > 0:
            handle.write(block[: min(left, len(block))])
            left -= len(block)


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    curl = shutil.which("curl")
    if curl is None:
        print("benchmark: curl is not installed (apt-get install curl)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from hubdouble import run_hub

    work = Path(tempfile.mkdtemp(prefix="dslocal-bench-download-"))
    try:
        root = work / "hub"
        (root / REPO).mkdir(parents=True)
        size = int(args.gb * 1e9)
        make_file(root / REPO / NAME, size)
        env = {**os.environ, "DSLOCAL_HOME": str(work / "home")}
        with run_hub(root) as hub:
            hub.sha256(root / REPO / NAME)  # the listing's LFS oid, computed once up front
            url = f"{hub.url}/{REPO}/resolve/main/{NAME}"
            results: dict[str, list[float]] = {"curl": [], "dslocal": [], "curl, no sync": []}
            for _ in range(args.runs):
                for name in results:
                    out = work / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    subprocess.run(["sync"], check=False)
                    if name == "curl, no sync":
                        argv = [curl, "-sSfL", "-o", str(out / NAME), url]
                    elif name == "curl":
                        # + sync: dslocal fsyncs before renaming into place, so both end durable on disk
                        argv = ["sh", "-c", f'"{curl}" -sSfL -o "$0" "$1" && sync "$0"', str(out / NAME), url]
                    else:
                        argv = [sys.executable, "-m", "dslocal", "download", REPO, "--source", hub.url,
                                "--dir", str(out), "-q", "--json"]
                    results[name].append(timed(argv, env))
        print(f"median of {args.runs} runs, {size / 1e9:.2f} GB from a loopback server:")
        speeds = {name: size / statistics.median(samples) for name, samples in results.items()}
        for name, speed in speeds.items():
            print(f"  {name:14s} {statistics.median(results[name]):6.2f} s  {speed / 1e6:8.1f} MB/s")
        ratio = speeds["dslocal"] / speeds["curl"]
        verdict = "PASS" if ratio >= 0.7 else "FAIL"
        print(f"target dslocal >= 0.7x curl (with sha256 verification): {verdict} ({ratio:.2f}x)")
        return 0 if verdict == "PASS" else 2
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
