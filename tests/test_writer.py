"""Output-folder rules (gemma3n_vocabfix/writer.py, and rewrite.check_output_path, which checks OUT first): OUT must
not exist (--force replaces only a folder vocabfix wrote, as its vocabfix.json lists it, or a folder of checkpoint
files, and keeps the old one when the new one cannot take its place), must not overlap IN,
is built in a hidden folder beside it and renamed into place, so a failure leaves nothing; a dry run writes nothing;
the written shards, index and single-file checkpoints are consistent; other files (also in symlinked subfolders)
are copied; OUT's mode follows the umask. On synthetic checkpoints (tests/fixtures/synthetic.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import EMBED, NEW, PER_LAYER, A, K, T, V, numpy_tensors, snapshot
from fixtures.oracle import DocLayout
from fixtures.synthetic import build, row_values
from safetensors.numpy import load_file

from gemma3n_vocabfix import rewrite_checkpoint
from gemma3n_vocabfix.errors import OutputError, VocabfixError

IDS = DocLayout(T, V, A, K)


def test_dry_run_writes_nothing(extended: Path, tmp_path: Path) -> None:
    """A dry run writes nothing, and reports what the real run then does."""
    report = rewrite_checkpoint(extended, tmp_path / "out", dry_run=True)
    assert report.changed and not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == [extended]
    dry = report.to_dict()
    real = rewrite_checkpoint(extended, tmp_path / "out").to_dict()
    assert (dry.pop("dry_run"), real.pop("dry_run")) == (True, False)
    assert dry == real


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_output_may_not_overlap_the_input(extended: Path, where: str) -> None:
    dst = {"same": extended, "inside": extended / "fixed", "parent": extended.parent}[where]
    with pytest.raises(VocabfixError):
        rewrite_checkpoint(extended, dst, force=True)


def test_existing_output_needs_force(extended: Path, tmp_path: Path) -> None:
    """A folder of checkpoint files only (no vocabfix.json): kept without --force, replaced with it."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("config.json", "model-00001-of-00009.safetensors", "tokenizer.json", "README.md", ".gitattributes"):
        (out / name).write_text("old")
    before = snapshot(out)
    with pytest.raises(VocabfixError, match="already exists"):
        rewrite_checkpoint(extended, out)
    assert snapshot(out) == before  # left as it was
    rewrite_checkpoint(extended, out, force=True)
    assert not (out / "model-00001-of-00009.safetensors").exists()
    assert (out / "vocabfix.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "out"]


def test_force_replaces_an_earlier_vocabfix_output(extended: Path, tmp_path: Path) -> None:
    """The same rewrite twice to the same OUT: the record lists every file of the first output, so --force replaces
    it (also with a file in a subfolder, which the record lists by its path)."""
    (extended / "assets").mkdir()
    (extended / "assets" / "notes.txt").write_text("copied\n")
    out = tmp_path / "out"
    rewrite_checkpoint(extended, out)
    record = json.loads((out / "vocabfix.json").read_text())
    assert record["files"] == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    (out / "config.json").write_text("{}")  # the contents do not matter, only what is there
    rewrite_checkpoint(extended, out, force=True)
    assert json.loads((out / "config.json").read_text()) != {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "out"]


@pytest.mark.parametrize("extra", ["notes.txt", "sub/", "assets/extra.bin", "empty/"])
def test_force_refuses_an_output_holding_what_its_record_does_not_list(extended: Path, tmp_path: Path,
                                                                       extra: str) -> None:
    """An earlier output that someone added a file or folder to: the record does not list it, so nothing is
    deleted, and the one line names it."""
    (extended / "assets").mkdir()
    (extended / "assets" / "notes.txt").write_text("copied\n")
    out = tmp_path / "out"
    rewrite_checkpoint(extended, out)
    if extra == "sub/":
        (out / "sub" / "deep").mkdir(parents=True)
        (out / "sub" / "deep" / "x.txt").write_text("mine")
    elif extra == "empty/":
        (out / "empty").mkdir()
    else:
        (out / extra).write_text("mine")
    before = snapshot(out)
    with pytest.raises(OutputError, match=f"holds {extra} that vocabfix did not write") as e:
        rewrite_checkpoint(extended, out, force=True)
    assert e.value.hint == "name a new folder for OUT, or move those files away"
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "out"]


def test_a_record_without_files_falls_back_to_the_checkpoint_files_rule(extended: Path, tmp_path: Path) -> None:
    """vocabfix.json of an older vocabfix (no "files"), or one that is not JSON: the folder is replaced only if it
    holds nothing but checkpoint files."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "vocabfix.json").write_text(json.dumps({"vocabfix_version": "0.1.0"}))
    (out / "config.json").write_text("{}")
    (out / "old.txt").write_text("x")
    with pytest.raises(OutputError, match="holds old.txt that vocabfix did not write"):
        rewrite_checkpoint(extended, out, force=True)
    assert (out / "old.txt").read_text() == "x"
    (out / "old.txt").unlink()
    (out / "vocabfix.json").write_text("{ not json")
    rewrite_checkpoint(extended, out, force=True)
    assert "files" in json.loads((out / "vocabfix.json").read_text())


def test_failure_leaves_no_output(extended: Path, tmp_path: Path, monkeypatch) -> None:
    from gemma3n_vocabfix import writer

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writer, "_write_table", boom)
    with pytest.raises(VocabfixError, match="disk full"):
        rewrite_checkpoint(extended, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext"]


def test_force_keeps_the_old_output_when_the_final_rename_fails(extended: Path, tmp_path: Path, monkeypatch) -> None:
    """--force moves the old OUT aside; if the new one cannot take its place, the old one is put back."""
    from gemma3n_vocabfix import writer

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "README.md").write_text("keep me")
    (tmp_path / "out" / "vocabfix.json").write_text("{}")  # an earlier output: --force may replace it
    real_rename = writer.os.rename

    def rename(src, dst):
        if str(src).endswith(".vocabfix-partial"):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", rename)
    with pytest.raises(VocabfixError, match="left as it was"):
        rewrite_checkpoint(extended, tmp_path / "out", force=True)
    assert (tmp_path / "out" / "README.md").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "out"]  # no hidden stage or aside folder


def test_index_matches_the_written_shards(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    sizes, where = 0, {}
    for f in sorted(out.glob("*.safetensors")):
        for name, array in load_file(str(f)).items():
            sizes += array.nbytes
            where[name] = f.name
    assert index["metadata"]["total_size"] == sizes
    assert index["weight_map"] == where


def test_single_file_checkpoint(tmp_path: Path) -> None:
    """`model.safetensors` without an index: rewritten in place of the single file, no index invented."""
    from safetensors.numpy import save_file

    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    merged = numpy_tensors(src)
    for f in list(src.glob("model*")):
        f.unlink()
    save_file(merged, str(src / "model.safetensors"), metadata={"format": "pt"})
    rewrite_checkpoint(src, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]
    got = load_file(str(out / "model.safetensors"))
    np.testing.assert_array_equal(got[EMBED], row_values(IDS.old_ids_in_new_order()))
    assert got[PER_LAYER].shape == (T + K, 8)


def test_output_under_a_file_is_an_output_error(tmp_path: Path) -> None:
    """OUT whose parent is a file: one clear OutputError (exit 2), not an unexpected FileExistsError."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<a>"])
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match="a_file"):
        rewrite_checkpoint(src, tmp_path / "a_file" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "ext"]


def test_files_in_a_symlinked_subfolder_are_copied(tmp_path: Path) -> None:
    """A subfolder that is a symlink (its files, not only HF-cache file symlinks) must not be silently dropped."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<a>"])
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "notes.txt").write_text("keep me\n")
    os.symlink(assets, src / "assets")
    os.symlink("..", assets / "loop")  # a link back up must not recurse forever
    rewrite_checkpoint(src, tmp_path / "out")
    assert (tmp_path / "out" / "assets" / "notes.txt").read_text() == "keep me\n"
    vision_offset = json.loads((tmp_path / "out" / "config.json").read_text())["vision_config"]["vocab_offset"]
    assert vision_offset == DocLayout(T, V, A, 1).vision_new[0]  # and the rest was rewritten


def test_output_folder_mode_follows_the_umask(tmp_path: Path) -> None:
    """OUT is made like save_pretrained's folders (0777 & ~umask), not 0700 like a tempfile.mkdtemp folder that
    other users and serving containers cannot read."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<a>"])
    old = os.umask(0o022)
    try:
        rewrite_checkpoint(src, tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_force_never_replaces_a_folder_that_is_not_a_checkpoint(extended: Path, tmp_path: Path) -> None:
    """--force into a folder of other things (say ~/models by mistake) deletes nothing, not even beside a
    config.json; the line names what is there (at most three entries)."""
    home = tmp_path / "models"
    (home / "other-model").mkdir(parents=True)
    (home / "other-model" / "config.json").write_text("{}")
    (home / "notes.txt").write_text("mine")
    (home / "config.json").write_text("{}")
    before = snapshot(home)
    with pytest.raises(OutputError, match=r"holds notes.txt, other-model/ that vocabfix did not write: --force only "
                                          r"replaces"):
        rewrite_checkpoint(extended, home, force=True)
    assert snapshot(home) == before
    for name in ("a.txt", "b.txt", "c.txt"):
        (home / name).write_text("mine")
    with pytest.raises(OutputError, match=r"holds a.txt, b.txt, c.txt and 2 more that"):
        rewrite_checkpoint(extended, home, force=True)
    link = tmp_path / "link"
    link.symlink_to(home)
    with pytest.raises(OutputError, match="is a symbolic link"):
        rewrite_checkpoint(extended, link, force=True)
    assert sorted(p.name for p in home.iterdir()) == ["a.txt", "b.txt", "c.txt", "config.json", "notes.txt",
                                                      "other-model"]
    empty = tmp_path / "empty"
    empty.mkdir()
    rewrite_checkpoint(extended, empty, force=True)
    assert (empty / "vocabfix.json").is_file()


def test_partial_output_of_a_killed_run_is_removed_by_the_next(extended: Path, tmp_path: Path) -> None:
    """SIGKILL leaves the stage folder; the next run for the same OUT removes it (only folders with vocabfix's marker
    whose process is gone), and says so."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / ".out.deadbeef.vocabfix-partial"
    (stale / "sub").mkdir(parents=True)
    (stale / ".vocabfix-stage").write_text(dead.stdout)
    (stale / "model-00001-of-00002.safetensors").write_bytes(b"half")
    foreign = tmp_path / ".out.cafecafe.vocabfix-partial"  # no marker: not vocabfix's, kept
    foreign.mkdir()
    live = tmp_path / ".out.0badf00d.vocabfix-partial"  # a run still going (this process): kept
    live.mkdir()
    (live / ".vocabfix-stage").write_text(f"{os.getpid()}\n")
    report = rewrite_checkpoint(extended, tmp_path / "out")
    assert report.stale_removed == [stale] and not stale.exists()
    assert foreign.is_dir() and live.is_dir()
    assert not (tmp_path / "out" / ".vocabfix-stage").exists()


def test_the_tokenizer_files_are_written_however_often_the_plan_was_settled(extended: Path, tmp_path: Path) -> None:
    """The tokenizer files join plan.files when the background renumbering is awaited (Plan.settle); the writer
    writes them even when someone (here a progress callback asking for the report's file list) settled the plan
    while the shards were being written."""
    from gemma3n_vocabfix.checkpoint import read_checkpoint
    from gemma3n_vocabfix.layout import analyse
    from gemma3n_vocabfix.plan import make_plan
    from gemma3n_vocabfix.writer import write_plan

    ckpt = read_checkpoint(extended, merges=False)
    plan = make_plan(ckpt, analyse(ckpt), background=True)
    repr(plan)
    assert plan.later is not None  # repr never waits for (nor settles) the background work
    asked = []

    def progress(n: int) -> None:
        if not asked:
            asked.append(plan.rewritten_files)  # waits: settled

    write_plan(plan, tmp_path / "out", progress=progress)
    assert "tokenizer.json" in asked[0]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "out" / name).read_bytes() != (extended / name).read_bytes(), name  # renumbered
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        {p.name for p in extended.iterdir()} | {"vocabfix.json"})


def test_a_run_killed_before_its_marker_was_written_is_cleaned_up(extended: Path, tmp_path: Path) -> None:
    """SIGKILL between the stage's mkdir and the marker's write (a window that grows while another thread holds the
    GIL) leaves an empty folder or an empty marker: the pid in the stage's name says whether its run is gone. Only
    an empty folder is removed without a marker; a live run's stage and anything with content but no marker stay."""
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    empty_folder = tmp_path / f".out.{dead}-deadbeef.vocabfix-partial"
    empty_marker = tmp_path / f".out.{dead}-feedface.vocabfix-partial"
    with_content = tmp_path / f".out.{dead}-cafecafe.vocabfix-partial"  # no marker but content: not provably ours
    live = tmp_path / f".out.{os.getpid()}-0badf00d.vocabfix-partial"
    no_pid = tmp_path / ".out.99999999999999999999-x.vocabfix-partial"  # no pid of this system: kept, no error
    for folder in (empty_folder, empty_marker, with_content, live, no_pid):
        folder.mkdir()
    (empty_marker / ".vocabfix-stage").write_text("")
    (live / ".vocabfix-stage").write_text("")
    (with_content / "notes.txt").write_text("mine")
    report = rewrite_checkpoint(extended, tmp_path / "out")
    assert sorted(report.stale_removed) == sorted([empty_folder, empty_marker])
    assert not empty_folder.exists() and not empty_marker.exists()
    assert (with_content / "notes.txt").read_text() == "mine" and live.is_dir() and no_pid.is_dir()


def test_every_output_file_and_folder_is_flushed_before_the_rename(extended: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    from gemma3n_vocabfix import writer

    synced, real_fsync = [], os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(writer.os, "fsync", fsync)
    rewrite_checkpoint(extended, tmp_path / "out")
    out_files = {p.name for p in (tmp_path / "out").rglob("*") if p.is_file()}
    stage_names = {Path(p).name for p in synced}
    assert out_files <= stage_names  # each file, flushed while it was staged
    assert any(p.endswith(".vocabfix-partial") for p in synced)  # the stage folder's entries
    assert synced[-1] == str(tmp_path)  # the parent, after the rename


def test_force_checks_the_output_again_before_replacing_it(extended: Path, tmp_path: Path, monkeypatch) -> None:
    """A file put into OUT while the run writes (after the first check) is not deleted: the rule is checked again
    right before the old OUT is moved aside; the stage goes, the old OUT stays."""
    from gemma3n_vocabfix import writer

    out = tmp_path / "out"
    rewrite_checkpoint(extended, out)
    real = writer._fsync_folders

    def meanwhile(root):
        (out / "notes.txt").write_text("written during the run")
        return real(root)

    monkeypatch.setattr(writer, "_fsync_folders", meanwhile)
    with pytest.raises(OutputError, match="holds notes.txt that vocabfix did not write"):
        rewrite_checkpoint(extended, out, force=True)
    assert (out / "notes.txt").read_text() == "written during the run" and (out / "vocabfix.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "out"]


def test_without_copy_file_range_the_writer_reads_and_writes(extended: Path, tmp_path: Path, monkeypatch) -> None:
    """macOS and other systems have no os.copy_file_range: the same output, by plain reads and writes."""
    from gemma3n_vocabfix import writer

    rewrite_checkpoint(extended, tmp_path / "linux")
    monkeypatch.delattr(writer.os, "copy_file_range")
    rewrite_checkpoint(extended, tmp_path / "elsewhere")
    for f in (tmp_path / "linux").iterdir():
        assert (tmp_path / "elsewhere" / f.name).read_bytes() == f.read_bytes(), f.name


def test_a_second_interrupt_while_flushes_are_awaited_leaves_no_stage(extended: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    """Ctrl-C mid-write, then a second Ctrl-C (or a CI runner's SIGTERM) while the queued flushes are awaited: the
    stage is already gone, so nothing is left beside OUT."""
    from gemma3n_vocabfix import writer

    def interrupted_shard(*args, **kwargs):
        raise KeyboardInterrupt  # the first Ctrl-C, while a shard is written

    real_close = writer.FlushBehind.close

    def interrupted_close(self, cancel: bool = False) -> None:
        real_close(self, cancel)
        if cancel:
            raise KeyboardInterrupt  # the second, while the flushes of the files before it are awaited

    monkeypatch.setattr(writer, "_write_shard", interrupted_shard)
    monkeypatch.setattr(writer.FlushBehind, "close", interrupted_close)
    parent = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        rewrite_checkpoint(extended, parent / "out")
    assert list(parent.iterdir()) == []
