"""`make bench`: time `vocabfix rewrite` against a plain copy of the same folder, with peak memory.

Each measurement runs in a fresh process; medians of --repeat runs, all in this one run of the script
(the machine is shared and noisy: compare ratios from the same run, not absolute times across runs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_checkpoint import build, folder_bytes  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command, measured from outside."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/env", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed: {proc.stderr.strip()[-500:]}")
    import resource
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def peak_rss_kib(cmd: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c",
                          "import resource,subprocess,sys;subprocess.run(sys.argv[1:],capture_output=True);"
                          "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)", *cmd],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=4, help="divide the E4B hidden sizes by this (1 = real size)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    vocabfix = str(Path(sys.executable).with_name("vocabfix"))
    root = Path(tempfile.mkdtemp(prefix="vocabfix-bench-", dir=args.workdir))
    try:
        src = build(root / "in", scale=args.scale)
        size = folder_bytes(src)
        rewrite, copy = [], []
        for i in range(args.repeat):
            wall, _ = timed(["cp", "-r", str(src), str(root / f"copy{i}")])
            copy.append(wall)
            shutil.rmtree(root / f"copy{i}")
            wall, _ = timed([vocabfix, "rewrite", str(src), str(root / f"out{i}")])
            rewrite.append(wall)
            shutil.rmtree(root / f"out{i}")
        rss = peak_rss_kib([vocabfix, "rewrite", str(src), str(root / "out-rss")])
        help_times = [timed([vocabfix, "--help"])[0] for _ in range(args.repeat)]
        result = {
            "checkpoint_bytes": size,
            "rewrite_median_s": statistics.median(rewrite),
            "copy_median_s": statistics.median(copy),
            "rewrite_over_copy": statistics.median(rewrite) / statistics.median(copy),
            "rewrite_MB_per_s": size / statistics.median(rewrite) / 1e6,
            "rewrite_peak_rss_MiB": rss / 1024,
            "help_median_s": statistics.median(help_times),
        }
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
