"""Faults during `vocabfix rewrite IN OUT`, run as a user runs it (a fresh `python -m gemma3n_vocabfix` process)
unless a case says otherwise. After every fault: IN's bytes are unchanged, the command says so in one line on
stderr with its exit code (no traceback), and neither OUT nor a hidden stage folder (`.OUT.*.vocabfix-partial`) is
left, unless the case says otherwise. What each case simulates:

- SIGINT (Ctrl-C) and SIGTERM (a cancelled CI job) from another process while the writer is inside a shard: exit
  130 / 143, the stage removed.
- SIGKILL (`kill -9`, an OOM kill, a lost machine's process) at the same point: nothing can run, so the stage (with
  its marker) stays and no OUT appears; the next `vocabfix rewrite` to the same OUT says it removes that stage and
  writes an OUT identical to an uninterrupted run's.
- A full disk: (a) OUT's parent on a real size-limited file system (a small tmpfs mounted in a private mount
  namespace with `unshare`, gone with the process), filling up in the small files or in a shard: a real ENOSPC from
  the kernel; (b) in process, a disk that fills in the middle of a large shard (the copy fails with ENOSPC), or
  that reports it only when the shard is flushed (fsync, as on NFS or with delayed allocation): exit 2, "No space
  left on device", naming the file.
- OUT's parent read-only (a read-only bind mount in a private mount namespace when running as root, for whom
  chmod 0555 stops nothing; chmod 0555 otherwise): a new OUT, a missing parent under it, and --force over an
  earlier output (kept as it was): exit 2, one line.

The processes that are signalled stop at a fixed point (the first bytes copied into a shard, with the small files
already in the stage) and wait there, so the signal always lands mid-rewrite; it is sent from this process.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.helpers import COLUMNS, NEW, ROOT, A, V, assert_one_line_error, hash_tree, invoke, lines, snapshot
from fixtures.synthetic import build

from gemma3n_vocabfix import rewrite_checkpoint

STAGE_GLOB = ".out.*.vocabfix-partial"

# The real entry point (`vocabfix` = gemma3n_vocabfix.__main__:main), stopping when it first copies tensor bytes into
# a shard: it says so by creating the file named by $VOCABFIX_TEST_READY, then sleeps until a signal arrives.
PAUSED_IN_A_SHARD = """
import os, sys, time
import gemma3n_vocabfix.writer as writer
copy_range = writer._copy_range
def paused(src, out, *args, **kwargs):
    ready = os.environ["VOCABFIX_TEST_READY"]
    if out.name.endswith(".safetensors") and not os.path.exists(ready):
        open(ready, "w").close()
        time.sleep(60)
    return copy_range(src, out, *args, **kwargs)
writer._copy_range = paused
from gemma3n_vocabfix.__main__ import main
sys.argv = ["vocabfix", *sys.argv[1:]]
main()
"""


def _env(**extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "COLUMNS": str(COLUMNS), "HF_HUB_OFFLINE": "1", **extra}
    return env


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.fixture
def work(extended: Path, tmp_path: Path):
    """(IN, OUT's parent, IN's hashes before): OUT's parent is a folder of its own, so that 'nothing left beside
    OUT' is that folder's listing."""
    parent = tmp_path / "work"
    parent.mkdir()
    return extended, parent, hash_tree(extended)


# --- signals ------------------------------------------------------------------------------------------------------


def _start_paused(src: Path, dst: Path, ready: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_IN_A_SHARD, "rewrite", str(src), str(dst)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=_env(VOCABFIX_TEST_READY=str(ready)))
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"the rewrite ended (exit {proc.returncode}) before it wrote a shard:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the rewrite did not reach a shard within 60 s")
        time.sleep(0.01)
    return proc


def _the_stage(parent: Path) -> Path:
    stages = list(parent.glob(STAGE_GLOB))
    assert len(stages) == 1, _leftovers(parent)
    return stages[0]


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "Interrupted"),
                                                    (signal.SIGTERM, 143, "Terminated")],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_rewrite_removes_the_stage(work, tmp_path: Path, sig, code: int, word: str) -> None:
    """Ctrl-C / a cancelled CI job while a shard is half written: one line, the stage gone, no OUT."""
    src, parent, before = work
    proc = _start_paused(src, parent / "out", tmp_path / "ready")
    stage = _the_stage(parent)
    assert (stage / "config.json").is_file() and list(stage.glob("*.safetensors"))  # mid-rewrite, for real
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stdout == "" and "Traceback" not in stderr
    assert lines(stderr) == [f"{word}; nothing was written (the staged output was removed)."], stderr
    assert _leftovers(parent) == []
    assert hash_tree(src) == before


def test_sigkill_mid_rewrite_leaves_a_stage_the_next_run_removes(work, tmp_path: Path) -> None:
    """kill -9 while a shard is half written: no OUT; the marked stage stays; the next run for the same OUT reports
    and removes it, and its OUT is the one an uninterrupted run writes."""
    src, parent, before = work
    proc = _start_paused(src, parent / "out", tmp_path / "ready")
    stage = _the_stage(parent)
    assert list(stage.glob("*.safetensors"))
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _leftovers(parent) == [stage.name]  # no OUT
    assert (stage / ".vocabfix-stage").read_text().strip() == str(proc.pid)

    again = subprocess.run([sys.executable, "-m", "gemma3n_vocabfix", "rewrite", str(src), str(parent / "out")],
                           capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=120)
    assert again.returncode == 0, again.stderr
    assert lines(again.stderr) == [f"Removed {stage}, the partial output of an earlier run that was killed."]
    assert _leftovers(parent) == ["out"]
    reference = rewrite_checkpoint(src, tmp_path / "reference").destination
    assert hash_tree(parent / "out") == hash_tree(reference)  # complete: byte for byte an uninterrupted run's
    assert hash_tree(src) == before


# --- a private mount namespace (tmpfs, read-only mounts) -----------------------------------------------------------


def _in_mount_namespace(script: str, *args: object) -> subprocess.CompletedProcess:
    """`sh -c script args...` in a private mount namespace (its mounts vanish with it): `unshare -m` as root,
    `unshare -rm` (a user namespace) otherwise. The script exits 99 when it cannot set up its mounts."""
    unshare = shutil.which("unshare", path=_env()["PATH"])
    if unshare is None:
        pytest.fail("unshare (util-linux) is missing: the disk-full and read-only cases need a private mount namespace")
    flags = "-m" if os.geteuid() == 0 else "-rm"
    proc = subprocess.run([unshare, flags, "sh", "-c", script, "sh", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=_env(PYTHON=sys.executable), timeout=120)
    if proc.returncode == 99:
        pytest.fail(f"cannot set up the mounts in a private mount namespace (unshare {flags}): {proc.stderr}")
    return proc


# $1: the folder to mount a tmpfs of $2 on (OUT's parent); $3 IN; $4 a file for what is left in $1 afterwards.
ON_A_SMALL_TMPFS = """
mount -t tmpfs -o size="$2" vocabfix-test "$1" || { echo "mount failed" >&2; exit 99; }
"$PYTHON" -m gemma3n_vocabfix rewrite "$3" "$1/out"
rc=$?
ls -A "$1" > "$4"
exit $rc
"""


@pytest.fixture(scope="module")
def mid_sized(tmp_path_factory) -> Path:
    """An extended checkpoint of about 600 kB (tokenizer files about 300 kB, shards about 300 kB)."""
    return build(tmp_path_factory.mktemp("faults") / "ext", text=6000, vision=V, audio=A, new_tokens=NEW)


@pytest.mark.parametrize(("size", "filled_in"), [("128k", ".safetensors"), ("400k", "tokenizer")],
                         ids=["full-in-a-shard", "full-in-the-tokenizer-files"])
def test_a_real_full_disk(mid_sized: Path, tmp_path: Path, size: str, filled_in: str) -> None:
    """OUT's parent is a tmpfs too small for OUT: the kernel's ENOSPC becomes one line (exit 2), the stage is
    removed from the full file system, and nothing is left on it. The writer writes the small files but the
    tokenizer files, then the shards, then the tokenizer files (renumbered meanwhile), so the disk fills in the
    first shard at 128k and in the tokenizer files at 400k."""
    before = hash_tree(mid_sized)
    mountpoint, left = tmp_path / "small", tmp_path / "left-on-the-tmpfs"
    mountpoint.mkdir()
    proc = _in_mount_namespace(ON_A_SMALL_TMPFS, mountpoint, size, mid_sized, left)
    line = assert_one_line_error(proc, "No space left on device", "nothing was written")
    assert filled_in in line, line
    assert left.read_text() == "", left.read_text()  # neither OUT nor the stage
    assert _leftovers(mountpoint) == []  # the tmpfs went with the namespace; the folder below it is untouched
    assert hash_tree(mid_sized) == before


@pytest.mark.parametrize("when", ["copy", "fsync", "copy-with-force"])
def test_a_disk_that_fills_in_a_large_shard(mid_sized: Path, tmp_path: Path, monkeypatch, when: str) -> None:
    """In process: the disk fills 64 kB into the first shard (the copy fails with ENOSPC), or the file system
    reports it only when the shard is flushed (fsync). Exit 2, one line naming the shard, nothing left; with
    --force over an earlier output, that output stays as it was."""
    from gemma3n_vocabfix import writer

    before = hash_tree(mid_sized)
    parent = tmp_path / "work"
    parent.mkdir()
    args = ["rewrite", mid_sized, parent / "out"]
    if when == "copy-with-force":
        rewrite_checkpoint(mid_sized, parent / "out")
        args.append("--force")
    parent_before = snapshot(parent)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as the kernel raises it: no file name
    if when.startswith("copy"):
        real, budget = writer._copy_range, [64 * 1024]

        def copy_range(src, out, offset, length, progress):
            if out.name.endswith(".safetensors"):
                if length > budget[0]:
                    real(src, out, offset, budget[0], progress)
                    raise full
                budget[0] -= length
            return real(src, out, offset, length, progress)

        monkeypatch.setattr(writer, "_copy_range", copy_range)
    else:
        real_fsync = writer.os.fsync

        def fsync(fd):
            if os.readlink(f"/proc/self/fd/{fd}").endswith(".safetensors"):
                raise full
            return real_fsync(fd)

        monkeypatch.setattr(writer.os, "fsync", fsync)
    result = invoke(*args)
    line = assert_one_line_error(result, "No space left on device", "nothing was written",
                                 "model-00001-of-00002.safetensors")
    assert "free space" in line
    assert ("the existing OUT was left as it was" in line) == (when == "copy-with-force")
    assert snapshot(parent) == parent_before  # no OUT and no stage; an earlier OUT byte for byte as it was
    assert hash_tree(mid_sized) == before


# $1: OUT's parent, bind-mounted read-only onto itself; then the command line from $2 on.
READ_ONLY = """
dir="$1"; shift
mount --bind "$dir" "$dir" && mount -o remount,bind,ro "$dir" || { echo "read-only bind mount failed" >&2; exit 99; }
touch "$dir/.probe" 2>/dev/null && { echo "$dir is still writable" >&2; exit 99; }
exec "$PYTHON" -m gemma3n_vocabfix "$@"
"""


@pytest.mark.parametrize("case", ["new", "missing-parent", "force-over-an-earlier-output"])
def test_a_read_only_parent(work, case: str) -> None:
    """OUT's parent cannot be written: exit 2 and one line naming the reason, nothing written, and with --force an
    earlier output stays as it was."""
    src, parent, before = work
    out = parent / "missing" / "out" if case == "missing-parent" else parent / "out"
    args = ["rewrite", src, out]
    if case == "force-over-an-earlier-output":
        rewrite_checkpoint(src, out)
        args.append("--force")
    parent_before = snapshot(parent)
    if os.geteuid() == 0:  # root writes through chmod 0555: a read-only mount stops it
        proc = _in_mount_namespace(READ_ONLY, parent, *args)
        reason = "Read-only file system"
    else:
        parent.chmod(0o555)
        try:
            proc = subprocess.run([sys.executable, "-m", "gemma3n_vocabfix", *map(str, args)], capture_output=True,
                                  text=True, cwd=ROOT, env=_env(), timeout=120)
        finally:
            parent.chmod(0o755)
        reason = "Permission denied"
    assert_one_line_error(proc, reason, "cannot create the output folder")
    assert snapshot(parent) == parent_before  # nothing new, an earlier OUT byte for byte as it was
    assert hash_tree(src) == before
