"""`make bench`: how fast and how lean `vocabfix` is, measured in one run.

- inspect on an E4B-shaped checkpoint (real tensor names and shapes, real-size tokenizer files; the shards
  are headers + sparse holes, since inspect reads headers only), and `vocabfix --help`;
- rewrite of an extended checkpoint with real bytes (E4B id space, hidden sizes / --scale) against `cp` of the
  same folder: the ratio says how close the rewrite is to disk speed;
- peak RSS of the rewrite on both: it must not grow with the checkpoint;
- `vocabfix verify IN OUT` on that rewrite (it reads IN and OUT: bytes_read is ~2x the checkpoint) against reading
  the same bytes with `cat` of both folders and against the `cp -r` above. Warm, the page cache holds both folders:
  these are reads from memory. Cold (only as root): `sync; echo 3 > /proc/sys/vm/drop_caches` before each run of
  verify and of cat (verify's imports start cold too). Verify's peak RSS also on a checkpoint of --verify-scale
  (2x the bytes by default, same tokenizer files): it must not grow with the tensor bytes (it does grow with the
  tokenizer files: this checkpoint's tokenizer.json is 8.7 MB without merges; see verify_e4b_full_* under --full).

Every measurement runs in a fresh process; medians of --repeat runs. The machine is shared and noisy: compare
the ratios of one run, not absolute times across runs. `--full` also rewrites the E4B-shaped checkpoint for
real (15.7 GB written) and verifies that rewrite (its input shards are sparse holes).
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
    wall, rss, _ = run_with_stdout(cmd, ok)
    return wall, rss


def run_with_stdout(cmd: list[str], ok=(0,)) -> tuple[float, float, str]:
    """run(), and the command's stdout."""
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True)\n"
             "w = time.perf_counter() - t\n"
             "print(p.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.stdout.write(p.stdout.decode(errors='replace'))\n"
             "sys.stderr.write(p.stderr.decode()[-400:])")
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True)
    head, _, stdout = proc.stdout.partition("\n")
    code, wall, rss = head.split()
    if int(code) not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {proc.stderr}")
    return float(wall), int(rss) / 1024, stdout


def median_of(repeat: int, cmd: list[str], ok=(0,), after=None, before=None) -> tuple[float, float]:
    walls, peaks = [], []
    for _ in range(repeat):
        if before:
            before()
        wall, rss = run(cmd, ok)
        walls.append(wall)
        peaks.append(rss)
        if after:
            after()
    return statistics.median(walls), max(peaks)


def verify_runs(repeat: int, cmd: list[str], before=None) -> dict[str, float]:
    """Median wall seconds, peak RSS, and from the --json report the median of its own `seconds` (the
    comparison, without start-up) and bytes_read, of `vocabfix verify --json` run `repeat` times."""
    walls, peaks, inner, read = [], [], [], set()
    for _ in range(repeat):
        if before:
            before()
        wall, rss, stdout = run_with_stdout(cmd)
        report = json.loads(stdout)
        if not report["ok"]:
            raise SystemExit(f"{' '.join(cmd)}: not verified: {report['differences'][:3]}")
        walls.append(wall)
        peaks.append(rss)
        inner.append(report["seconds"])
        read.add(report["bytes_read"])
    return {"median_s": statistics.median(walls), "peak_rss_MiB": max(peaks),
            "report_median_s": statistics.median(inner), "bytes_read": max(read)}


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def can_drop_caches() -> str | None:
    """None when this process may drop the page cache, else why not."""
    try:
        drop_caches()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"cannot drop the page cache ({type(e).__name__}: {e}); run as root for cold numbers"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, help="divide the E4B hidden sizes by this (1 = real size)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="also rewrite the 15.7 GB E4B-shaped checkpoint")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--verify-scale", type=int, default=None,
                        help="also verify (once) a rewrite of the checkpoint built at this --scale, to compare "
                             "verify's peak RSS across sizes (default: --scale / 2, twice the bytes; 0: skip)")
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

        # verify reads IN and OUT; the baselines read the same two folders (cat) or IN once and write it (cp -r)
        verify_cmd = [vocabfix, "verify", str(src), str(out), "--json"]
        cat_cmd = ["sh", "-c", 'find "$1" "$2" -type f -exec cat {} + > /dev/null', "cat", str(src), str(out)]
        run([vocabfix, "rewrite", str(src), str(out)])
        cat_s, _ = median_of(args.repeat, cat_cmd)
        warm = verify_runs(args.repeat, verify_cmd)
        results.update(verify_bytes_read=warm["bytes_read"], cat_bytes=folder_bytes(src) + folder_bytes(out),
                       verify_median_s=warm["median_s"], verify_report_median_s=warm["report_median_s"],
                       verify_MB_per_s=warm["bytes_read"] / warm["median_s"] / 1e6,
                       verify_peak_rss_MiB=warm["peak_rss_MiB"], cat_median_s=cat_s,
                       cat_MB_per_s=(folder_bytes(src) + folder_bytes(out)) / cat_s / 1e6,
                       verify_over_cat=warm["median_s"] / cat_s, verify_over_copy=warm["median_s"] / copy_s)
        cannot = can_drop_caches()
        if cannot is None:
            cold_cat_s, _ = median_of(args.repeat, cat_cmd, before=drop_caches)
            cold = verify_runs(args.repeat, verify_cmd, before=drop_caches)
            results.update(verify_cold_median_s=cold["median_s"], verify_cold_report_median_s=cold["report_median_s"],
                           verify_cold_MB_per_s=cold["bytes_read"] / cold["median_s"] / 1e6,
                           verify_cold_peak_rss_MiB=cold["peak_rss_MiB"], cat_cold_median_s=cold_cat_s,
                           cat_cold_MB_per_s=results["cat_bytes"] / cold_cat_s / 1e6,
                           verify_cold_over_cat_cold=cold["median_s"] / cold_cat_s)
        else:
            results["verify_cold"] = cannot
        shutil.rmtree(out)
        shutil.rmtree(src)
        verify_scale = args.scale // 2 if args.verify_scale is None else args.verify_scale
        if verify_scale:
            big = build(root / "in-verify", scale=verify_scale)
            run([vocabfix, "rewrite", str(big), str(out)])
            other = verify_runs(1, [vocabfix, "verify", str(big), str(out), "--json"])
            results.update(verify_other_scale=verify_scale, verify_other_bytes_read=other["bytes_read"],
                           verify_other_s=other["median_s"], verify_other_peak_rss_MiB=other["peak_rss_MiB"])
            shutil.rmtree(out)
            shutil.rmtree(big)
        if args.full:
            wall, rss = run([vocabfix, "rewrite", str(e4b), str(root / "e4b-out")])
            results.update(rewrite_e4b_full_s=wall, rewrite_e4b_full_peak_rss_MiB=rss,
                           rewrite_e4b_full_bytes=folder_bytes(root / "e4b-out"))
            full = verify_runs(1, [vocabfix, "verify", str(e4b), str(root / "e4b-out"), "--json"])
            results.update(verify_e4b_full_s=full["median_s"], verify_e4b_full_bytes_read=full["bytes_read"],
                           verify_e4b_full_peak_rss_MiB=full["peak_rss_MiB"])
        results["python"] = sys.version.split()[0]
        results["self_peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
