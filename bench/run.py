"""`make bench`: how fast and how lean `vocabfix` is, measured in one run.

- inspect on an E4B-shaped checkpoint (real tensor names and shapes, real-size tokenizer files; the shards
  are headers + sparse holes, since inspect reads headers only), and `vocabfix --help`;
- rewrite of an extended checkpoint with real bytes (E4B id space, hidden sizes / --scale) against `cp` of the
  same folder: the ratio says how close the rewrite is to disk speed;
- peak RSS of the rewrite on both: it must not grow with the checkpoint.

Every measurement runs in a fresh process; medians of --repeat runs. The machine is shared and noisy: compare
the ratios of one run, not absolute times across runs. `--full` also rewrites the E4B-shaped checkpoint for
real (15.7 GB written).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the checkpoint builders are test fixtures
from fixtures.e4b_shaped import build_e4b_shaped  # noqa: E402
from fixtures.make_checkpoint import build, folder_bytes  # noqa: E402


def run(cmd: list[str], ok=(0,)) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command in a fresh process."""
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True)\n"
             "w = time.perf_counter() - t\n"
             "print(p.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.stderr.write(p.stderr.decode()[-400:])")
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True)
    code, wall, rss = proc.stdout.split()
    if int(code) not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {proc.stderr}")
    return float(wall), int(rss) / 1024


def median_of(repeat: int, cmd: list[str], ok=(0,), after=None) -> tuple[float, float]:
    walls, peaks = [], []
    for _ in range(repeat):
        wall, rss = run(cmd, ok)
        walls.append(wall)
        peaks.append(rss)
        if after:
            after()
    return statistics.median(walls), max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, help="divide the E4B hidden sizes by this (1 = real size)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="also rewrite the 15.7 GB E4B-shaped checkpoint")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    vocabfix = str(Path(sys.executable).with_name("vocabfix"))
    root = Path(tempfile.mkdtemp(prefix="vocabfix-bench-", dir=args.workdir))
    results: dict[str, float | int | str] = {}
    try:
        e4b = build_e4b_shaped(root / "e4b", extended_tokens=3)
        results["inspect_e4b_median_s"], results["inspect_e4b_peak_rss_MiB"] = median_of(
            args.repeat, [vocabfix, "inspect", str(e4b)], ok=(1,))
        results["help_median_s"], _ = median_of(args.repeat, [vocabfix, "--help"])
        results["rewrite_e4b_dry_run_median_s"], results["rewrite_e4b_dry_run_peak_rss_MiB"] = median_of(
            args.repeat, [vocabfix, "rewrite", "--dry-run", str(e4b), str(root / "unused")])

        src = build(root / "in", scale=args.scale)
        out = root / "out"
        results["rewrite_checkpoint_bytes"] = folder_bytes(src)
        copy_s, _ = median_of(args.repeat, ["cp", "-r", str(src), str(out)], after=lambda: shutil.rmtree(out))
        rewrite_s, rewrite_rss = median_of(args.repeat, [vocabfix, "rewrite", str(src), str(out)],
                                           after=lambda: shutil.rmtree(out))
        results.update(copy_median_s=copy_s, rewrite_median_s=rewrite_s, rewrite_over_copy=rewrite_s / copy_s,
                       rewrite_MB_per_s=folder_bytes(src) / rewrite_s / 1e6, rewrite_peak_rss_MiB=rewrite_rss)
        if args.full:
            wall, rss = run([vocabfix, "rewrite", str(e4b), str(root / "e4b-out")])
            results.update(rewrite_e4b_full_s=wall, rewrite_e4b_full_peak_rss_MiB=rss,
                           rewrite_e4b_full_bytes=folder_bytes(root / "e4b-out"))
        results["python"] = sys.version.split()[0]
        results["self_peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
