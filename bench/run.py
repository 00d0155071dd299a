"""`make bench`: how fast and how lean `vocabfix` is, measured in one run; writes bench/RESULTS.md and prints it.

One run measures (every command in a fresh process; medians of repetitions; peak RSS of each, ru_maxrss of the
process tree):

- `vocabfix --help`, and `vocabfix inspect` and `vocabfix rewrite --dry-run` on an E4B-shaped checkpoint (the real
  tensor names and shapes in 4 shards, a 34 MB tokenizer.json with the real structure and 490k merges, a 262k-piece
  tokenizer.model; tests/fixtures/e4b_shaped.py), with the interpreter's and the imports' floor and a cProfile of
  inspect and of the dry run (where the fixed costs go);
- that E4B-shaped checkpoint with its 15.1 GB of tensor bytes written out (the fixture's shards are sparse holes,
  which `cp` copies without writing a byte): `vocabfix rewrite` against `cp -r` and against `cp -r` plus an fsync
  of what it wrote (vocabfix fsyncs every file it writes; `cp -r` leaves its data in the page cache), and
  `vocabfix rewrite --link` against `cp` of only the files that change (the shards with vocabulary tables and the
  small files), with and without fsync; `vocabfix verify` of the --link output;
- a rewrite of an extended E4B-id-space checkpoint with real bytes (hidden sizes / --scale: 1.45 GB at 4) against
  `cp -r` and `cp -r` + fsync; `vocabfix verify IN OUT` on that rewrite (it reads IN and OUT: bytes_read is ~2x the
  checkpoint) against reading the same bytes with `cat` of both folders and against the `cp -r` above. Warm, the
  page cache holds both folders: these are reads from memory. Cold (only as root): `sync; echo 3 >
  /proc/sys/vm/drop_caches` before each run of verify and of cat (verify's imports start cold too). Verify's peak
  RSS also on a checkpoint of --verify-scale (2x the bytes by default, same tokenizer files): it must not grow with
  the tensor bytes;
- the transformers baseline (bench/baseline_transformers.py): what users do today, `from_pretrained` +
  `resize_token_embeddings` (mean_resizing=False, and the default True) + `save_pretrained`, on a real Gemma 3n
  checkpoint built by transformers with E4B-sized vocabulary tables (6.5 GB, bfloat16), each in a fresh process
  watched by a memory limit (killed when its RSS passes --memory-limit-gib, 20 by default, or what the machine has
  available minus 2 GiB); against `vocabfix rewrite` of the checkpoint the mean_resizing=False run saved (the same
  job: 3 tokens added, done the other way). `--no-baseline` skips it (about 9 minutes).

Before every timed run of a command that writes, `sync` (untimed), so that no run pays for the previous run's dirty
pages; each run's output is deleted after it; the commands compared with each other run interleaved, in an order
rotated per repetition. The machine may be shared and noisy: compare the ratios of one run, not absolute times
across runs. The whole run takes about 25 minutes on 2 cores and needs about 32 GB free in --workdir.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the checkpoint builders are test fixtures
from fixtures.e4b_shaped import build_e4b_shaped  # noqa: E402
from fixtures.make_checkpoint import build, folder_bytes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS_MD = Path(__file__).resolve().with_name("RESULTS.md")
BASELINE = Path(__file__).resolve().with_name("baseline_transformers.py")
GiB, MiB = 1 << 30, 1 << 20


def run(cmd: list[str], ok=(0,)) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command in a fresh process."""
    wall, rss, _ = run_with_stdout(cmd, ok)
    return wall, rss


def run_with_stdout(cmd: list[str], ok=(0,)) -> tuple[float, float, str]:
    """run(), and the command's stdout."""
    r = run_measured(cmd, ok)
    return r["wall_s"], r["peak_rss_MiB"], r["stdout"]


def run_measured(cmd: list[str], ok=(0,)) -> dict:
    """Wall seconds, CPU seconds (user + system, of the process tree: what a busy machine stretches least), peak
    RSS (MiB) and stdout of one command in a fresh process."""
    probe = ("import resource, subprocess, sys, time\n"
             "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True)\n"
             "w = time.perf_counter() - t\n"
             "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
             "print(p.returncode, w, u.ru_maxrss, u.ru_utime + u.ru_stime)\n"
             "sys.stdout.write(p.stdout.decode(errors='replace'))\n"
             "sys.stderr.write(p.stderr.decode()[-400:])")
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True)
    head, _, stdout = proc.stdout.partition("\n")
    code, wall, rss, cpu = head.split()
    if int(code) not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {proc.stderr}")
    return {"wall_s": float(wall), "cpu_s": float(cpu), "peak_rss_MiB": int(rss) / 1024, "stdout": stdout}


def measure(repeat: int, cmd: list[str], ok=(0,), after=None, before=None) -> dict:
    """`repeat` runs of `cmd`: the median wall and CPU seconds, every run's wall seconds, the peak RSS."""
    walls, cpus, peaks = [], [], []
    for _ in range(repeat):
        if before:
            before()
        r = run_measured(cmd, ok)
        walls.append(r["wall_s"])
        cpus.append(r["cpu_s"])
        peaks.append(r["peak_rss_MiB"])
        if after:
            after()
    return {"median_s": statistics.median(walls), "cpu_median_s": statistics.median(cpus),
            "runs_s": [round(w, 3) for w in walls], "peak_rss_MiB": max(peaks)}


def median_of(repeat: int, cmd: list[str], ok=(0,), after=None, before=None) -> tuple[float, float]:
    r = measure(repeat, cmd, ok, after, before)
    return r["median_s"], r["peak_rss_MiB"]


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
    sync_all()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def can_drop_caches() -> str | None:
    """None when this process may drop the page cache, else why not."""
    try:
        drop_caches()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"cannot drop the page cache ({type(e).__name__}: {e}); run as root for cold numbers"
    return None


def store(results: dict, key: str, r: dict) -> None:
    """results[key_median_s], key_cpu_median_s, key_runs_s, key_peak_rss_MiB from a measure() or interleaved()."""
    for field in ("median_s", "cpu_median_s", "runs_s", "peak_rss_MiB"):
        results[f"{key}_{field}"] = r[field]


def sync_all() -> None:
    subprocess.run(["sync"], check=True)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def interleaved(repeat: int, commands: dict[str, list[str]], outs: dict[str, Path],
                keep_last: tuple[str, ...] = ()) -> dict[str, dict]:
    """Each repetition runs every command once, in an order rotated by one per repetition, each after an untimed
    `sync`; the command's output (outs[name]) is deleted after each run, except after the last run of `keep_last`.
    Per command: the median wall seconds, every run's seconds, and the peak RSS (max over runs)."""
    names = list(commands)
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    peaks = {n: 0.0 for n in names}
    for rep in range(repeat):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            remove(outs[name])
            sync_all()
            r = run_measured(commands[name])
            walls[name].append(r["wall_s"])
            cpus[name].append(r["cpu_s"])
            peaks[name] = max(peaks[name], r["peak_rss_MiB"])
            if not (rep == repeat - 1 and name in keep_last):
                remove(outs[name])
    return {n: {"median_s": statistics.median(walls[n]), "cpu_median_s": statistics.median(cpus[n]),
                "runs_s": [round(w, 3) for w in walls[n]], "peak_rss_MiB": peaks[n]} for n in names}


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def run_limited(cmd: list[str], limit: int, poll: float = 0.01) -> dict:
    """Run `cmd` in a fresh process whose resident memory is watched: SIGKILL as soon as its RSS passes `limit`
    bytes (and oom_score_adj 1000, so that the kernel picks it first should memory run out anyway). Wall seconds,
    peak RSS (ru_maxrss), whether it was killed at the limit, exit code, stdout and the tail of stderr."""
    def lowest_priority() -> None:
        try:
            Path("/proc/self/oom_score_adj").write_text("1000\n")
        except OSError:
            pass

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=lowest_priority)
        killed, status_path = False, Path(f"/proc/{proc.pid}/status")
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                rss = next(int(line.split()[1]) * 1024 for line in status_path.read_text().splitlines()
                           if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                rss = 0
            if rss > limit and not killed:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(poll)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "peak_rss_MiB": usage.ru_maxrss / 1024, "killed": killed, "code": proc.returncode,
                "stdout": out.read().decode(errors="replace"), "stderr": err.read().decode(errors="replace")[-600:]}


def fill_shards(folder: Path) -> int:
    """Write bytes into the holes of the E4B-shaped fixture's shards (finite bfloat16 values, as
    fixtures/make_checkpoint.py writes), so that copies and rewrites move real bytes; the bytes written."""
    import numpy as np

    block = memoryview(np.random.default_rng(0).integers(0x3C00, 0x3F80, size=8 * MiB, dtype=np.uint16).tobytes())
    written = 0
    for shard in sorted(folder.glob("*.safetensors")):
        size = shard.stat().st_size
        with open(shard, "r+b") as f:
            pos = 8 + int.from_bytes(f.read(8), "little")
            while pos < size:
                n = os.pwrite(f.fileno(), block[: size - pos], pos)
                pos += n
                written += n
    return written


def profile(vocabfix: str, args: list[str], where: Path, top: int = 8) -> dict:
    """One cProfile'd run of `vocabfix ARGS`: the profiled seconds, the time spent importing modules, and the `top`
    functions by own time (cProfile slows Python code down: read these as shares, not as times)."""
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(where), vocabfix, *args], capture_output=True)
    stats = pstats.Stats(str(where))
    entries = stats.stats  # (file, line, function) -> (primitive calls, calls, own time, cumulative time, callers)
    imports = max((v[3] for k, v in entries.items() if k[2] == "_find_and_load"), default=0.0)

    def name(key: tuple) -> str:
        file, line, func = key
        for prefix in (str(REPO) + "/", str(Path(sys.prefix)) + "/"):
            file = file.removeprefix(prefix)
        if "site-packages/" in file:
            file = file.split("site-packages/", 1)[1]
        elif "/lib/python3" in file:
            file = "stdlib/" + file.split("/lib/python3", 1)[1].split("/", 1)[-1]
        return f"{file}:{line}({func})" if file != "~" else func
    ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    where.unlink()
    return {"total_s": stats.total_tt, "imports_s": imports,
            "top": [{"function": name(k), "own_s": round(v[2], 3), "cumulative_s": round(v[3], 3), "calls": v[1]}
                    for k, v in ranked]}


def machine(workdir: Path) -> dict:
    info: dict[str, object] = {}
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    info["cpu"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                        if line.startswith("model name")), platform.processor() or platform.machine())
    info["cores"] = os.cpu_count()
    meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024
               for line in Path("/proc/meminfo").read_text().splitlines() if line.split()[-1] == "kB"}
    info["ram_GiB"] = round(meminfo.get("MemTotal", 0) / GiB, 1)
    info["swap_GiB"] = round(meminfo.get("SwapTotal", 0) / GiB, 1)
    info["mem_available_GiB_at_start"] = round(meminfo.get("MemAvailable", 0) / GiB, 1)
    df = subprocess.run(["df", "-PT", "-B1", str(workdir)], capture_output=True, text=True).stdout.splitlines()
    if len(df) > 1:
        device, fstype, size, _, avail, _, mount = df[1].split(None, 6)
        options = next((line.split()[3] for line in Path("/proc/mounts").read_text().splitlines()
                        if line.split()[1] == mount), "")
        info.update(disk_device=device, file_system=fstype, mount_point=mount, mount_options=options,
                    disk_size_GB=round(int(size) / 1e9), disk_free_GB_at_start=round(int(avail) / 1e9, 1))
    info["kernel"] = platform.release()
    cp = subprocess.run(["cp", "--version"], capture_output=True, text=True).stdout.splitlines()
    info["cp"] = cp[0] if cp else "cp"
    info["load_average_at_start"] = round(os.getloadavg()[0], 2)
    info["cpu_pressure_at_start"] = cpu_pressure()
    return info


def cpu_pressure() -> float | None:
    """/proc/pressure/cpu "some" avg60: the share of the last minute in which some task waited for a CPU (%)."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return float(dict(f.split("=") for f in some.split()[1:])["avg60"])


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist, key in (("gemma3n-vocabfix", "vocabfix"), ("torch", "torch"), ("transformers", "transformers"),
                      ("safetensors", "safetensors"), ("tokenizers", "tokenizers"), ("numpy", "numpy")):
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = "not installed"
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if git.returncode == 0:
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.splitlines()
        out["commit"] = git.stdout.strip() + (f" + uncommitted changes in {len(dirty)} files" if dirty else "")
    return out


def _s(x) -> str:
    """Seconds, to three significant figures."""
    if x is None:
        return "n/a"
    return f"{x:.3f} s" if x < 1 else f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def _runs(xs) -> str:
    return " / ".join(f"{x:.3g}" for x in xs) if xs else ""


def _mib(x) -> str:
    return "" if x is None else f"{x:,.0f} MiB" if x < 10240 else f"{x / 1024:,.1f} GiB"


def _gb(n) -> str:
    return f"{n / 1e9:.2f} GB"


def _x(r) -> str:
    return "n/a" if r is None else f"{r:.2f}×"


def render(res: dict) -> str:
    """bench/RESULTS.md: header, targets of issue 10 with met / not met, every measurement, how it was measured."""
    g = res.get
    m, v = res["machine"], res["versions"]
    e4b = "e4b_bytes" in res
    base = "baseline_nomean" in res
    lines = [
        "# Benchmark results", "",
        f"Written by `make bench` (`{res['command']}`, {res['date']}); this run took "
        f"{res['bench_total_s'] / 60:.1f} minutes. Every number comes from this one run: the median of "
        f"{res['repeat']} runs in fresh processes ({res['e4b_repeat']} for the multi-GB runs, "
        f"{res['baseline_repeat']} for the transformers flow); peak RSS is the largest over those runs (ru_maxrss of "
        "the process tree). Against copies, a ratio is vocabfix's time over the copy's (lower is better); against "
        "transformers, it is transformers' time or memory over vocabfix's (higher is better).", "",
        "| machine | |", "|---|---|",
        f"| CPU | {m['cpu']}, {m['cores']} cores |",
        f"| memory | {m['ram_GiB']} GiB RAM, {m['swap_GiB']} GiB swap "
        f"({m['mem_available_GiB_at_start']} GiB available at the start) |",
        f"| disk | {m.get('disk_device', '?')}, {m.get('file_system', '?')} ({m.get('mount_options', '')}), "
        f"{m.get('disk_size_GB', '?')} GB, {m.get('disk_free_GB_at_start', '?')} GB free at the start |",
        f"| system | Linux {m['kernel']}, {m['cp']} |",
        f"| load | 1-minute load average {m['load_average_at_start']} at the start, {res['load_average_at_end']} at "
        f"the end; CPU pressure (share of the last minute some task waited for a CPU) "
        f"{m.get('cpu_pressure_at_start')} % at the start, {res.get('cpu_pressure_at_end')} % at the end |",
        f"| versions | python {v['python']}, vocabfix {v['vocabfix']} (commit {v.get('commit', '?')}), torch "
        f"{v['torch']}, transformers {v['transformers']}, safetensors {v['safetensors']}, tokenizers "
        f"{v['tokenizers']}, numpy {v['numpy']} |", "",
    ]

    def target(name: str, value, bound: float, text: str, lower_is_better: bool = True) -> str:
        if value is None:
            return f"| {name} | not measured | — |"
        met = value <= bound if lower_is_better else value >= bound
        return f"| {name} | {text} | {'met' if met else '**not met**'} |"

    def ratio(name: str, key: str, bound: float, ours: str, theirs: str, more: str = "") -> str:
        """A target on the ratio `key`: shown with the two medians it divides."""
        return target(name, g(key), bound, f"{_x(g(key))} ({_s(g(ours))} vs {_s(g(theirs))}{more})")

    lines += ["## Targets (issue 10)", "", "| target | measured in this run | |", "|---|---|---|"]
    if e4b:
        lines += [
            ratio("copy mode ≤ 1.05 × `cp -r`, E4B shape", "rewrite_e4b_over_copy", 1.05, "rewrite_e4b_median_s",
                  "e4b_copy_median_s"),
            ratio("… against `cp -r` + fsync (the same durability)", "rewrite_e4b_over_copy_sync", 1.05,
                  "rewrite_e4b_median_s", "e4b_copy_sync_median_s")]
    else:
        lines.append(f"| copy mode ≤ 1.05 × `cp -r`, E4B shape | {g('e4b_copies', 'not measured')} | — |")
    lines += [
        ratio("copy mode ≤ 1.3 × `cp -r`, 1.45 GB checkpoint", "rewrite_over_copy", 1.3, "rewrite_median_s",
              "copy_median_s"),
        ratio("… against `cp -r` + fsync", "rewrite_over_copy_sync", 1.3, "rewrite_median_s", "copy_sync_median_s")]
    if e4b:
        lines += [
            ratio("`--link` ≤ 1.1 × copying only the files that change, E4B shape", "link_over_changed_copy", 1.1,
                  "rewrite_e4b_link_median_s", "e4b_changed_copy_median_s",
                  f"; {_x(g('link_over_e4b_copy'))} of `cp -r` of it all"),
            ratio("… against that copy + fsync", "link_over_changed_copy_sync", 1.1, "rewrite_e4b_link_median_s",
                  "e4b_changed_copy_sync_median_s")]
    peaks = {"`inspect`": g("inspect_e4b_peak_rss_MiB"), "`--help`": g("help_peak_rss_MiB"),
             "`rewrite --dry-run`": g("rewrite_e4b_dry_run_peak_rss_MiB"), "`rewrite`": g("rewrite_e4b_peak_rss_MiB"),
             "`rewrite --link`": g("rewrite_e4b_link_peak_rss_MiB"), "`verify`": g("verify_e4b_link_peak_rss_MiB")}
    peaks = {k: p for k, p in peaks.items() if p is not None}
    worst = max(peaks, key=peaks.get)
    lines += [
        target("peak RSS ≤ 200 MiB for every command on the E4B shape", peaks[worst], 200,
               f"at most {_mib(peaks[worst])} ({worst}); " + ", ".join(f"{k} {_mib(p)}" for k, p in peaks.items())),
        target("`inspect` < 0.4 s on the E4B shape", g("inspect_e4b_median_s"), 0.4, _s(g("inspect_e4b_median_s"))),
        target("`--help` < 0.25 s", g("help_median_s"), 0.25, _s(g("help_median_s")))]
    if base:
        nm, d = res["baseline_nomean"], res["baseline_default"]
        killed = " (killed at the limit)" if d["killed"] else ""
        lines += [
            target("≥ 10 × faster than the transformers baseline (mean_resizing=False)", g("baseline_time_ratio"), 10,
                   f"{_x(g('baseline_time_ratio'))} ({_s(nm['median_s'])} vs vocabfix "
                   f"{_s(g('baseline_rewrite_median_s'))}; the disk's bound, `cp -r` + fsync of the same checkpoint: "
                   f"{_x(g('baseline_copy_sync_time_ratio'))}); default mean_resizing: "
                   f"{'≥ ' if d['killed'] else ''}{_x(g('baseline_default_time_ratio'))}{killed}",
                   lower_is_better=False),
            target("≥ 50 × less peak memory than the transformers baseline (mean_resizing=False)",
                   g("baseline_memory_ratio"), 50,
                   f"{_x(g('baseline_memory_ratio'))} ({_mib(nm['peak_rss_MiB'])} vs vocabfix "
                   f"{_mib(g('baseline_rewrite_peak_rss_MiB'))}); default mean_resizing: "
                   f"{'≥ ' if d['killed'] else ''}{_x(g('baseline_default_memory_ratio'))}{killed}",
                   lower_is_better=False)]
    else:
        lines.append(f"| ≥ 10 × faster, ≥ 50 × less peak memory than the transformers baseline | "
                     f"{g('baseline', 'not measured')} | — |")

    lines += ["", "## Measurements", "",
              "CPU is user + system seconds of the command's process tree (median): a machine busy with other work "
              "stretches wall time more than it.", "",
              "| what | median | CPU | runs (s) | peak RSS |", "|---|---|---|---|---|"]

    def row(what: str, key: str | None = None, median=None, rss=None) -> str:
        """A measurement row: from key_median_s / key_cpu_median_s / key_runs_s / key_peak_rss_MiB where given."""
        med = g(f"{key}_median_s") if key else median
        cpu = _s(g(f"{key}_cpu_median_s")) if key and g(f"{key}_cpu_median_s") is not None else ""
        runs = _runs(g(f"{key}_runs_s")) if key and len(g(f"{key}_runs_s") or ()) > 1 else ""
        peak = g(f"{key}_peak_rss_MiB") if key else rss
        return f"| {what} | {_s(med)} | {cpu} | {runs} | {_mib(peak)} |"

    tok = (f"{g('e4b_tokenizer_json_bytes') / 1e6:.1f} MB tokenizer.json, "
           f"{g('e4b_tokenizer_model_bytes') / 1e6:.1f} MB tokenizer.model")
    lines += [
        f"| **E4B shape, fixed costs** ({tok}) | | | | |",
        row("`python -c pass` (the interpreter's start)", "python_startup"),
        row("`python -c 'import gemma3n_vocabfix.cli'` (the imports' floor)", "import_cli"),
        row("Python's `json.loads` of the whole tokenizer.json, nothing else (the parsing floor)", "json_parse"),
        row("`vocabfix --help`", "help"),
        row("`vocabfix inspect`", "inspect_e4b"),
        row("`vocabfix rewrite --dry-run`", "rewrite_e4b_dry_run")]
    if e4b:
        lines += [
            f"| **E4B shape with its bytes, copy mode** ({_gb(res['e4b_bytes'])}) | | | | |",
            row("`cp -r IN OUT`", "e4b_copy"),
            row("`cp -r IN OUT && sync OUT/* OUT` (+ fsync)", "e4b_copy_sync"),
            row(f"`vocabfix rewrite IN OUT` ({g('rewrite_e4b_MB_per_s'):.0f} MB/s)", "rewrite_e4b"),
            f"| **E4B shape, only what changes** ({len(res['e4b_changed_files'])} files, "
            f"{_gb(res['e4b_changed_bytes'])}; linked: {', '.join(res['e4b_linked_shards']) or 'none'}) | | | | |",
            row("`cp` of the changed files", "e4b_changed_copy"),
            row("`cp` of the changed files + fsync", "e4b_changed_copy_sync"),
            row("`vocabfix rewrite --link IN OUT`", "rewrite_e4b_link"),
            row(f"`vocabfix verify IN OUT` of the --link output (read {_gb(res['verify_e4b_link_bytes_read'])}; its "
                f"report: {_s(g('verify_e4b_link_report_s'))}), once", median=g("verify_e4b_link_s"),
                rss=g("verify_e4b_link_peak_rss_MiB"))]
    lines += [
        f"| **1.45 GB checkpoint** (E4B ids, hidden sizes / {res.get('scale', 4)}: "
        f"{_gb(res['rewrite_checkpoint_bytes'])}) | | | | |",
        row("`cp -r IN OUT`", "copy"),
        row("`cp -r IN OUT && sync OUT/* OUT` (+ fsync)", "copy_sync"),
        row(f"`vocabfix rewrite IN OUT` ({g('rewrite_MB_per_s'):.0f} MB/s)", "rewrite"),
        row(f"`vocabfix verify IN OUT`, warm ({g('verify_MB_per_s'):.0f} MB/s; {_x(g('verify_over_cat'))} `cat`)",
            median=g("verify_median_s"), rss=g("verify_peak_rss_MiB")),
        row(f"`cat` of IN and OUT, warm ({g('cat_MB_per_s'):.0f} MB/s)", median=g("cat_median_s"))]
    if "verify_cold_median_s" in res:
        lines += [
            row(f"`vocabfix verify IN OUT`, cold ({g('verify_cold_MB_per_s'):.0f} MB/s; "
                f"{_x(g('verify_cold_over_cat_cold'))} `cat`)", median=g("verify_cold_median_s"),
                rss=g("verify_cold_peak_rss_MiB")),
            row(f"`cat` of IN and OUT, cold ({g('cat_cold_MB_per_s'):.0f} MB/s)", median=g("cat_cold_median_s"))]
    if "verify_other_s" in res:
        lines.append(row(f"`vocabfix verify` at --scale {g('verify_other_scale')} (read "
                         f"{_gb(res['verify_other_bytes_read'])}, once)", median=g("verify_other_s"),
                         rss=g("verify_other_peak_rss_MiB")))
    if base:
        nm, d = res["baseline_nomean"], res["baseline_default"]
        steps = lambda st: ("" if not st else  # noqa: E731
                            f" (imports {st['import_s']:.0f} s, load {st['load_s']:.0f} s, "
                            f"resize {st['resize_s']:.0f} s, save {st['save_s']:.0f} s; {st['dtype']})")
        lines += [
            f"| **transformers baseline** (a real Gemma 3n checkpoint with E4B-sized tables, "
            f"{_gb(res['baseline_checkpoint_bytes'])}; built in {_s(g('baseline_build_s'))}) | | | | |",
            f"| `from_pretrained` + `resize_token_embeddings(262403, mean_resizing=False)` + `save_pretrained`"
            f"{steps(nm['steps'])}{' — killed at the memory limit' if nm['killed'] else ''} | {_s(nm['median_s'])} "
            f"| | {_runs(nm['runs_s']) if len(nm['runs_s']) > 1 else ''} | {_mib(nm['peak_rss_MiB'])} |",
            row("the same with the default `mean_resizing=True`" + steps(d.get("steps"))
                + (f" — **killed at the {d['limit_GiB']} GiB limit** after this long" if d["killed"] else "")
                + (f" — exit {d['code']}: {d.get('stderr', '')[-200:]!r}" if d["code"] and not d["killed"] else ""),
                median=d["s"], rss=d["peak_rss_MiB"])]
        if "baseline_rewrite_median_s" in res:
            lines.append(row(f"`vocabfix rewrite` of the checkpoint the mean_resizing=False run saved "
                             f"({_gb(res['baseline_extended_bytes'])})", "baseline_rewrite"))
        if "baseline_copy_sync_median_s" in res:
            lines.append(row("`cp -r` + fsync of that checkpoint (the disk's floor for any tool that writes it)",
                             "baseline_copy_sync"))

    lines += ["", "## Where the fixed costs go", "",
              "One cProfile'd run each (cProfile slows Python code down, so read shares, not seconds); the floor of "
              f"any command is the interpreter's start ({_s(g('python_startup_median_s'))}) plus importing the CLI "
              f"({_s(g('import_cli_median_s'))} with the start).", ""]
    for key, title in (("profile_inspect_e4b", "`vocabfix inspect` on the E4B shape"),
                       ("profile_dry_run_e4b", "`vocabfix rewrite --dry-run` on the E4B shape")):
        p = res[key]
        lines += [f"{title}: {_s(p['total_s'])} profiled, of which imports {_s(p['imports_s'])}.", "",
                  "| function | own time | cumulative | calls |", "|---|---|---|---|"]
        lines += [f"| `{t['function']}` | {_s(t['own_s'])} | {_s(t['cumulative_s'])} | {t['calls']} |"
                  for t in p["top"]]
        lines.append("")

    lines += [
        "## How this was measured", "",
        "- E4B shape: tests/fixtures/e4b_shaped.py — the published E4B-it tensor names, shards and shapes (3 tokens "
        "appended, tables resized as transformers 5 does), the real-size tokenizer files. Its shards are sparse holes, "
        "which `cp` copies without writing a byte, so before the copy-mode runs the bench writes bytes into every hole "
        f"(finite bfloat16 values; {_s(g('e4b_fill_s'))}): every command below moves the full checkpoint.",
        "- `vocabfix rewrite` flushes every file it writes to disk (fsync) before renaming OUT into place; `cp -r` "
        "does not, so its data may still be in the page cache when it exits. `+ fsync` is "
        "`cp -r IN OUT && sync OUT/* OUT` (coreutils `sync` with file arguments fsyncs exactly those files, like "
        "vocabfix; a bare `sync` would also flush other processes' data). The issue's target is against `cp -r`; the "
        "`+ fsync` ratio compares the same durability.",
        "- Only what changes: `mkdir OUT && cp FILES OUT/` with FILES every file of IN but the shards `rewrite --link` "
        "links (the shards it rewrites, the tokenizer and config files, the small files).",
        "- Before every timed run of a command that writes: `sync` (untimed), so that no run pays for the previous "
        "run's dirty pages; the output is deleted after each run. The commands compared with each other run "
        "interleaved, in an order rotated per repetition. The page cache is warm for the 1.45 GB checkpoint; the "
        "15 GB E4B input does not stay cached beside a 15 GB output on this machine, so those runs read part of IN "
        "from disk.",
        "- Transformers baseline (bench/baseline_transformers.py): a real `Gemma3nForConditionalGeneration` built by "
        "transformers from the published E4B-it config with the real vocabulary tables (`embed_tokens` 262,400 × "
        "2048, `embed_tokens_per_layer` 262,144 × 8,960) and smaller layers (35 layers with 2 heads and an MLP of "
        "512, one audio conformer block, timm `test_efficientnet` as vision tower), random bfloat16 weights, the "
        "real 262,400-id tokenizer files. The user flow `AutoTokenizer.from_pretrained`, `add_tokens` (3), "
        "`Gemma3nForConditionalGeneration.from_pretrained`, `resize_token_embeddings(len(tokenizer))`, "
        "`save_pretrained` of model and tokenizer runs in a fresh process whose RSS is polled every 10 ms and which "
        "is killed (SIGKILL) when it passes the limit. What that run saved (plus tokenizer.model and the processor "
        "files, as users copy them) is what `vocabfix rewrite` is timed on: both add the same 3 tokens to the same "
        "checkpoint, transformers by resizing in memory, vocabfix by rewriting the files; transformers' save does "
        "not fsync.", "",
        "## The raw numbers", "", "<details><summary>JSON printed by bench/run.py</summary>", "", "```json",
        json.dumps(res, indent=2), "```", "", "</details>", ""]
    return "\n".join(lines)


# A reference for inspect and the rewrite's fixed cost: tokenizer.json read by Python's json, whole (vocabfix
# leaves the 26 MB of merges out, so its own parse is shorter than this)
PARSE_TOKENIZER_JSON = """
import json, sys
raw = open(sys.argv[1], "rb").read()
json.loads(raw)
"""
CP_SYNC = 'cp -r "$1" "$2" && sync "$2"/* "$2"'  # coreutils sync with file arguments: fsync of those files only
CP_FILES = 'out=$1; shift; mkdir "$out" && cp "$@" "$out"/'
CP_FILES_SYNC = CP_FILES + ' && sync "$out"/* "$out"'


def copy_mode(repeat: int, vocabfix: str, src: Path, out: Path) -> dict[str, dict]:
    """`cp -r`, `cp -r` + fsync and `vocabfix rewrite` of `src`, interleaved."""
    return interleaved(repeat, {"cp": ["cp", "-r", str(src), str(out)],
                                "cp_sync": ["sh", "-c", CP_SYNC, "sh", str(src), str(out)],
                                "rewrite": [vocabfix, "rewrite", str(src), str(out)]},
                       {"cp": out, "cp_sync": out, "rewrite": out})


def e4b_with_bytes(root: Path, e4b: Path, args, vocabfix: str, results: dict) -> None:
    """Rewrite and --link on the E4B shape with its tensor bytes written out, against copies."""
    need = 2 * folder_bytes(e4b) + 2 * 10**9
    free = shutil.disk_usage(root).free
    if free < need:
        results["e4b_copies"] = f"skipped: {free / 1e9:.1f} GB free in {root}, the E4B runs need {need / 1e9:.1f} GB"
        return
    began = time.perf_counter()
    fill_shards(e4b)
    sync_all()
    size = folder_bytes(e4b)
    results.update(e4b_bytes=size, e4b_fill_s=time.perf_counter() - began)
    out = root / "e4b-out"
    r = copy_mode(args.e4b_repeat, vocabfix, e4b, out)
    store(results, "e4b_copy", r["cp"])
    store(results, "e4b_copy_sync", r["cp_sync"])
    store(results, "rewrite_e4b", r["rewrite"])
    results.update(rewrite_e4b_MB_per_s=size / r["rewrite"]["median_s"] / 1e6,
                   rewrite_e4b_over_copy=r["rewrite"]["median_s"] / r["cp"]["median_s"],
                   rewrite_e4b_over_copy_sync=r["rewrite"]["median_s"] / r["cp_sync"]["median_s"])

    # --link against a copy of only what changes: the files the plan rewrites (the shards with vocabulary tables,
    # the tokenizer and config files) and the other small files; the shards it links are left out
    plan = json.loads(run_with_stdout([vocabfix, "rewrite", "--dry-run", "--link", "--json", str(e4b),
                                       str(root / "unused")])[2])
    rewritten = set(plan["files_rewritten"])
    unchanged_shards = sorted(p.name for p in e4b.glob("*.safetensors") if p.name not in rewritten)
    changed = sorted(p for p in e4b.iterdir() if p.name not in unchanged_shards)
    link_out, cp_out = root / "e4b-link", root / "e4b-changed"
    r = interleaved(args.e4b_repeat,
                    {"link": [vocabfix, "rewrite", "--link", str(e4b), str(link_out)],
                     "cp": ["sh", "-c", CP_FILES, "sh", str(cp_out), *map(str, changed)],
                     "cp_sync": ["sh", "-c", CP_FILES_SYNC, "sh", str(cp_out), *map(str, changed)]},
                    {"link": link_out, "cp": cp_out, "cp_sync": cp_out}, keep_last=("link",))
    store(results, "e4b_changed_copy", r["cp"])
    store(results, "e4b_changed_copy_sync", r["cp_sync"])
    store(results, "rewrite_e4b_link", r["link"])
    linked = [n for n in unchanged_shards if (link_out / n).exists() and os.path.samefile(link_out / n, e4b / n)]
    results.update(e4b_changed_files=[p.name for p in changed],
                   e4b_changed_bytes=sum(p.stat().st_size for p in changed),
                   e4b_linked_shards=linked,
                   link_over_changed_copy=r["link"]["median_s"] / r["cp"]["median_s"],
                   link_over_changed_copy_sync=r["link"]["median_s"] / r["cp_sync"]["median_s"],
                   link_over_e4b_copy=r["link"]["median_s"] / results["e4b_copy_median_s"])
    sync_all()
    v = verify_runs(1, [vocabfix, "verify", str(e4b), str(link_out), "--json"])
    results.update(verify_e4b_link_s=v["median_s"], verify_e4b_link_report_s=v["report_median_s"],
                   verify_e4b_link_bytes_read=v["bytes_read"], verify_e4b_link_peak_rss_MiB=v["peak_rss_MiB"])
    remove(link_out)


def transformers_baseline(root: Path, args, vocabfix: str, results: dict) -> None:
    """bench/baseline_transformers.py: build a real checkpoint with E4B-sized tables, run the user flow with
    mean_resizing=False (its output is the extended checkpoint) and with the default, each under the memory limit;
    then `vocabfix rewrite` of that extended checkpoint."""
    from baseline_transformers import complete

    base, ext, out = root / "tf-base", root / "tf-extended", root / "tf-out"
    need = 4 * 6.6e9 + 2e9
    free = shutil.disk_usage(root).free
    if free < need:
        results["baseline"] = f"skipped: {free / 1e9:.1f} GB free in {root}, the baseline needs {need / 1e9:.1f} GB"
        return
    wall, rss = run([sys.executable, str(BASELINE), "build", str(base)])
    results.update(baseline_build_s=wall, baseline_build_peak_rss_MiB=rss, baseline_checkpoint_bytes=folder_bytes(base))

    def user_flow(target: Path, *flags: str) -> dict:
        remove(target)
        sync_all()
        limit = int(min(args.memory_limit_gib * GiB, mem_available() - 2 * GiB))
        r = run_limited([sys.executable, str(BASELINE), "extend", str(base), str(target), *flags], limit)
        r["limit_GiB"] = round(limit / GiB, 1)
        if r["code"] == 0:
            r["steps"] = json.loads(r["stdout"].strip().splitlines()[-1])
        r.pop("stdout")
        if r["code"] == 0 or r["killed"]:
            r.pop("stderr")
        return r

    runs = []
    for i in range(max(1, args.baseline_repeat)):
        runs.append(user_flow(ext if i == 0 else out))
        remove(out)
        if runs[-1]["code"]:
            break
    ok = [r for r in runs if r["code"] == 0]
    results["baseline_nomean"] = {
        "median_s": statistics.median(r["wall_s"] for r in ok) if ok else None,
        "runs_s": [round(r["wall_s"], 2) for r in runs], "peak_rss_MiB": max(r["peak_rss_MiB"] for r in runs),
        "killed": any(r["killed"] for r in runs), "limit_GiB": runs[0]["limit_GiB"],
        "steps": ok[0]["steps"] if ok else None, **({"stderr": runs[-1]["stderr"]} if "stderr" in runs[-1] else {})}
    d = user_flow(out, "--mean-resizing")
    remove(out)
    results["baseline_default"] = {"s": d["wall_s"], **{k: v for k, v in d.items() if k != "wall_s"}}
    if ok:
        complete(base, ext)
        results["baseline_extended_bytes"] = folder_bytes(ext)
        copy_out = root / "tf-copy"
        both = interleaved(max(1, args.e4b_repeat),
                           {"rewrite": [vocabfix, "rewrite", str(ext), str(out)],
                            "cp_sync": ["sh", "-c", CP_SYNC, "sh", str(ext), str(copy_out)]},
                           {"rewrite": out, "cp_sync": copy_out})
        r = both["rewrite"]
        nomean = results["baseline_nomean"]
        store(results, "baseline_rewrite", r)
        store(results, "baseline_copy_sync", both["cp_sync"])
        # the disk's bound on the time ratio: transformers' time over a durable copy of the same checkpoint
        results["baseline_copy_sync_time_ratio"] = nomean["median_s"] / both["cp_sync"]["median_s"]
        results.update(baseline_time_ratio=nomean["median_s"] / r["median_s"],
                       baseline_memory_ratio=nomean["peak_rss_MiB"] / r["peak_rss_MiB"],
                       baseline_default_time_ratio=d["wall_s"] / r["median_s"],
                       baseline_default_memory_ratio=d["peak_rss_MiB"] / r["peak_rss_MiB"])
    for path in (base, ext, out):
        remove(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, help="divide the E4B hidden sizes by this (1 = real size)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of the quick measurements (default 5)")
    parser.add_argument("--e4b-repeat", type=int, default=3,
                        help="repetitions of the multi-GB runs: the E4B shape with its 15 GB of bytes (0: skip "
                             "them), and vocabfix on the transformers baseline's checkpoint (default 3)")
    parser.add_argument("--baseline-repeat", type=int, default=1,
                        help="runs of the transformers flow with mean_resizing=False (about 3 minutes each; default 1)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the transformers baseline (about 9 minutes)")
    parser.add_argument("--memory-limit-gib", type=float, default=20.0,
                        help="kill a transformers run when its RSS passes this (or the memory available minus 2 GiB)")
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)  # old command lines: now always
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--verify-scale", type=int, default=None,
                        help="also verify (once) a rewrite of the checkpoint built at this --scale, to compare "
                             "verify's peak RSS across sizes (default: --scale / 2, twice the bytes; 0: skip)")
    parser.add_argument("--results", type=Path, default=RESULTS_MD, help="the Markdown report (bench/RESULTS.md)")
    args = parser.parse_args()
    began = time.perf_counter()
    vocabfix = str(Path(sys.executable).with_name("vocabfix"))
    root = Path(tempfile.mkdtemp(prefix="vocabfix-bench-", dir=args.workdir))
    results: dict[str, object] = {
        "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(root), "versions": versions(),
        "repeat": args.repeat, "e4b_repeat": args.e4b_repeat, "baseline_repeat": args.baseline_repeat,
        "scale": args.scale}
    try:
        e4b = build_e4b_shaped(root / "e4b", extended_tokens=3)
        results.update(e4b_tokenizer_json_bytes=(e4b / "tokenizer.json").stat().st_size,
                       e4b_tokenizer_model_bytes=(e4b / "tokenizer.model").stat().st_size)
        for key, cmd, ok in (("inspect_e4b", [vocabfix, "inspect", str(e4b)], (1,)),
                             ("help", [vocabfix, "--help"], (0,)),
                             ("rewrite_e4b_dry_run", [vocabfix, "rewrite", "--dry-run", str(e4b), str(root / "unused")],
                              (0,)),
                             ("python_startup", [sys.executable, "-c", "pass"], (0,)),
                             ("json_parse", [sys.executable, "-c", PARSE_TOKENIZER_JSON, str(e4b / "tokenizer.json")],
                              (0,)),
                             ("import_cli", [sys.executable, "-c", "import gemma3n_vocabfix.cli"], (0,))):
            store(results, key, measure(args.repeat, cmd, ok))
        results["profile_inspect_e4b"] = profile(vocabfix, ["inspect", str(e4b)], root / "inspect.prof")
        results["profile_dry_run_e4b"] = profile(vocabfix, ["rewrite", "--dry-run", str(e4b), str(root / "unused")],
                                                 root / "dry-run.prof")

        src = build(root / "in", scale=args.scale)
        out = root / "out"
        results["rewrite_checkpoint_bytes"] = folder_bytes(src)
        r = copy_mode(args.repeat, vocabfix, src, out)
        copy_s, rewrite_s = r["cp"]["median_s"], r["rewrite"]["median_s"]
        store(results, "copy", r["cp"])
        store(results, "copy_sync", r["cp_sync"])
        store(results, "rewrite", r["rewrite"])
        results.update(rewrite_over_copy=rewrite_s / copy_s,
                       rewrite_over_copy_sync=rewrite_s / r["cp_sync"]["median_s"],
                       rewrite_MB_per_s=folder_bytes(src) / rewrite_s / 1e6)

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

        if args.e4b_repeat:
            e4b_with_bytes(root, e4b, args, vocabfix, results)
        else:
            results["e4b_copies"] = "skipped: --e4b-repeat 0"
        remove(e4b)
        if args.no_baseline:
            results["baseline"] = "skipped: --no-baseline"
        else:
            transformers_baseline(root, args, vocabfix, results)
        results["bench_total_s"] = time.perf_counter() - began
        results["load_average_at_end"] = round(os.getloadavg()[0], 2)
        results["cpu_pressure_at_end"] = cpu_pressure()
        results["self_peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results["python"] = sys.version.split()[0]
        print(json.dumps(results, indent=2))
        report = render(results)
        args.results.write_text(report)
        print(report)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
