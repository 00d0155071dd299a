"""`rewrite --link` and cloning (gemma3n_vocabfix/writer.py): shards whose bytes do not change become hard links to
IN's; across file systems --link is refused with one line and nothing written; verify proves a linked shard
without reading it. In the default mode an unchanged shard is cloned (shared extents) on a file system that can
(XFS, in a loop-mounted image inside a private mount namespace), and copied elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.helpers import NEW, ROOT, SHARD1, SHARD2, A, T, V, assert_one_line_error, hash_tree, invoke
from fixtures.synthetic import UNCHANGED_SHARD, add_unchanged_shard, build

from gemma3n_vocabfix import rewrite_checkpoint

SHARD3 = UNCHANGED_SHARD


def with_unchanged_shard(path: Path) -> Path:
    """The synthetic extended checkpoint plus a third shard that holds no vocabulary table."""
    return add_unchanged_shard(build(path, text=T, vision=V, audio=A, new_tokens=NEW))


def test_link_makes_unchanged_shards_hard_links(tmp_path: Path) -> None:
    src = with_unchanged_shard(tmp_path / "in")
    before = hash_tree(src)
    out = tmp_path / "out"
    result = invoke("rewrite", src, out, "--link", "--verify")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert os.path.samefile(src / SHARD3, out / SHARD3)  # the unchanged shard is IN's own file
    for changed in (SHARD1, SHARD2):  # the shards with vocabulary tables are new files
        assert not os.path.samefile(src / changed, out / changed)
    for small in ("config.json", "README.md", "tokenizer.model"):
        assert (out / small).stat().st_nlink == 1  # only shards are linked
    assert hash_tree(src) == before
    data = json.loads(invoke("verify", src, out, "--json").stdout)
    assert data["ok"] and data["checked"]["linked"] == 1


def test_link_across_file_systems_is_refused(tmp_path: Path) -> None:
    """OUT on a tmpfs mounted in a private mount namespace: one line, exit 2, nothing written on either side."""
    if shutil.which("unshare") is None:
        pytest.fail("the test needs util-linux's unshare (a private mount namespace for a tmpfs)")
    src = with_unchanged_shard(tmp_path / "in")
    before = hash_tree(src)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o size=8m tmpfs {mnt} && exec {sys.executable} -m gemma3n_vocabfix.cli rewrite "
              f"{src} {mnt}/out --link")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, cwd=ROOT, env={"PATH": os.environ["PATH"], "COLUMNS": "200"}, timeout=120)
    assert_one_line_error(proc, "--link needs OUT on the same file system as IN", code=2)
    assert hash_tree(src) == before


XFS_SCRIPT = """
set -e
truncate -s 300M {img}
mkfs.xfs -q {img}
mount -o loop {img} {mnt}
cp -r {src} {mnt}/in
{python} -m gemma3n_vocabfix.cli rewrite {mnt}/in {mnt}/out >/dev/null
filefrag -v {mnt}/out/{shard} | grep -c shared || true
filefrag -v {mnt}/out/config.json | grep -c shared || true
cmp {mnt}/in/{shard} {mnt}/out/{shard} && echo same-bytes
"""


def test_default_mode_clones_unchanged_shards_where_the_file_system_can(tmp_path: Path) -> None:
    """On XFS (reflink) the unchanged shard shares its extents with IN's: written without copying a byte."""
    for tool in ("unshare", "mkfs.xfs", "filefrag"):
        if shutil.which(tool) is None:
            pytest.fail(f"the test needs {tool} (xfsprogs / e2fsprogs / util-linux: the Makefile's setup installs "
                        "xfsprogs)")
    src = with_unchanged_shard(tmp_path / "in")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = XFS_SCRIPT.format(img=tmp_path / "xfs.img", mnt=mnt, src=src, python=sys.executable, shard=SHARD3)
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": os.environ["PATH"]}, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shard_shared, config_shared, same = proc.stdout.split()
    assert int(shard_shared) >= 1, proc.stdout  # the unchanged shard's extents are IN's
    assert same == "same-bytes"


def test_default_mode_copies_where_cloning_is_impossible(tmp_path: Path) -> None:
    """ext4 / tmpfs: no clone, a plain copy with the same bytes and its own inode."""
    src = with_unchanged_shard(tmp_path / "in")
    out = tmp_path / "out"
    rewrite_checkpoint(src, out)
    assert (out / SHARD3).read_bytes() == (src / SHARD3).read_bytes()
    assert not os.path.samefile(src / SHARD3, out / SHARD3)
